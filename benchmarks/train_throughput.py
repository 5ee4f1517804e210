"""Training throughput (images/s) on CPU: the small CNN, and a frozen ResNet-18 with and without the feature cache.

    .venv/bin/python benchmarks/train_throughput.py [--images 512] [--epochs 4] [--threads N] [--workers N]
    .venv/bin/python benchmarks/train_throughput.py --only resnet18 --images 256 --epochs 10

What it measures, through `drsynth.train.main` exactly as `drsynth train` runs it (dataset reader, decode,
augmentation, DataLoader, model, optimizer, per-epoch validation):
1. A generated dataset: `--images` 256 px JPEGs of four classes (render-like content), imported with
   `drsynth import-images` into a temporary folder dataset; 10% is the validation split.
2. `small-cnn` trained from scratch at 64 px and at 128 px: train images/s per epoch.
3. `resnet18`, frozen, at 224 px (random weights: speed does not depend on their values), `--epochs` epochs
   with the feature cache off (`cache_views=0`) and on (`--views`, default 0,1): images/s per epoch and wall time of
   the whole run (validation included). The speed-up of the whole run is the cache's real gain; it grows
   with the epoch count because only the first epoch pays for the backbone.

Figures depend on the machine's load; the load average is printed next to them. Add `--json PATH` to save.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

CLASSES = ("cat", "dog", "car", "bicycle")


def write_image_folder(root: Path, n: int, *, size: int = 256, seed: int = 0) -> Path:
    """`root/<class>/*.jpg`: a sky-like gradient, a few shapes and mild blur, like 256 px renders."""
    rng = np.random.default_rng(seed)
    yy = np.linspace(0, 1, size)[:, None, None]
    for i in range(n):
        cls = CLASSES[i % len(CLASSES)]
        top, bottom = rng.integers(0, 255, 3), rng.integers(0, 255, 3)
        arr = (top * (1 - yy) + bottom * yy).repeat(size, axis=1).astype(np.uint8)
        img = Image.fromarray(arr)
        draw = ImageDraw.Draw(img)
        for _ in range(int(rng.integers(2, 6))):
            x0, y0 = rng.integers(0, size - 40, 2)
            w, h = rng.integers(20, size // 2, 2)
            fill = tuple(int(v) for v in rng.integers(0, 255, 3))
            (draw.ellipse if rng.random() < 0.5 else draw.rectangle)([x0, y0, x0 + w, y0 + h], fill=fill)
        img = img.filter(ImageFilter.GaussianBlur(0.8))
        (root / cls).mkdir(parents=True, exist_ok=True)
        img.save(root / cls / f"{i:06d}.jpg", quality=90)
    return root


def make_dataset(work: Path, n: int, *, seed: int = 0) -> str:
    from drsynth.import_images import import_images

    src = write_image_folder(work / "src", n, seed=seed)
    dest = work / "dataset"
    import_images(src, dest, progress=False, shard_size=256, workers=2)
    return str(dest)


def run(data: str, work: Path, name: str, **overrides) -> dict:
    """One training run; returns per-epoch train images/s, wall time and the cache size."""
    from drsynth.train import TrainConfig, main

    out = work / f"out-{name}"
    cfg = TrainConfig(
        data=data,
        out=str(out),
        overwrite=True,
        progress=False,
        dataset_cache=str(work / "cache"),
        **overrides,
    )
    start = time.perf_counter()
    result = main(cfg)
    wall = time.perf_counter() - start
    hist = json.loads((out / "history.json").read_text())
    epochs = [r["train"] for r in result.history]
    return {
        "name": name,
        "backbone": cfg.backbone,
        "image_size": cfg.image_size,
        "frozen": cfg.frozen,
        "cache_views": cfg.cache_views if cfg.frozen else 0,
        "epochs": cfg.epochs,
        "train_images_per_epoch": epochs[0]["n"],
        "images_per_s": [round(e["images_per_s"], 1) for e in epochs],
        "cached": [e["cached"] for e in epochs],
        "wall_s": round(wall, 2),
        "feature_cache_mb": round(hist["feature_cache_bytes"] / 2**20, 2),
        "val_accuracy": round(result.best_val_accuracy, 3),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--images", type=int, default=512, help="dataset size (4 classes)")
    ap.add_argument("--epochs", type=int, default=4, help="epochs of the resnet18 runs")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--workers", type=int, default=None, help="DataLoader workers (default: drsynth's)")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    ap.add_argument("--only", choices=["small-cnn", "resnet18"], default=None)
    ap.add_argument("--views", default="0,1", help="cache_views settings of the resnet18 runs (0 = no cache)")
    ap.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = ap.parse_args()

    import torch

    work = Path(tempfile.mkdtemp(prefix="drsynth-train-bench-"))
    try:
        data = make_dataset(work, args.images)
        common = {"batch_size": args.batch_size, "workers": args.workers, "threads": args.threads}
        rows = []
        if args.only in (None, "small-cnn"):
            for size in (64, 128):
                rows.append(
                    run(
                        data,
                        work,
                        f"small-cnn@{size}",
                        backbone="small-cnn",
                        image_size=size,
                        epochs=2,
                        **common,
                    )
                )
        if args.only in (None, "resnet18"):
            for views in (int(v) for v in args.views.split(",")):
                rows.append(
                    run(
                        data,
                        work,
                        f"resnet18 frozen, cache_views={views}",
                        backbone="resnet18",
                        weights="none",
                        frozen=True,
                        image_size=224,
                        epochs=args.epochs,
                        cache_views=views,
                        **common,
                    )
                )
    finally:
        shutil.rmtree(work, ignore_errors=True)

    load = os.getloadavg()
    print(
        f"\ntorch {torch.__version__}, {os.cpu_count()} CPUs, torch threads {args.threads or torch.get_num_threads()}, "
        f"load average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}"
    )
    print(f"{'run':34} {'train img/s per epoch':38} {'wall s':>7} {'cache MB':>9}")
    for r in rows:
        per_epoch = " ".join(
            f"{v:.0f}{'*' if c else ''}" for v, c in zip(r["images_per_s"], r["cached"], strict=True)
        )
        print(f"{r['name']:34} {per_epoch:38} {r['wall_s']:7.1f} {r['feature_cache_mb']:9.1f}")
    print("(* = epoch trained from cached backbone features)")
    by_name = {r["name"]: r for r in rows}
    off = by_name.get("resnet18 frozen, cache_views=0")
    for on in [r for r in rows if r["name"].startswith("resnet18") and r["cache_views"] > 0] if off else []:
        n_ep, k = on["epochs"], on["cache_views"]
        first, later = on["images_per_s"][0], on["images_per_s"][k:]
        print(
            f"feature cache, cache_views={k}: {n_ep}-epoch run {off['wall_s']:.1f} s -> {on['wall_s']:.1f} s "
            f"({off['wall_s'] / on['wall_s']:.1f}x faster); cached epochs train at "
            f"{np.median(later):.0f} img/s vs {np.median(off['images_per_s']):.0f} img/s uncached "
            f"({np.median(later) / np.median(off['images_per_s']):.0f}x); first epoch {first:.0f} img/s"
        )
    if args.json:
        args.json.write_text(json.dumps({"load_average": load, "runs": rows}, indent=2))


if __name__ == "__main__":
    main()
