"""GPU training throughput (the prepared device check of the training issue): images/s on one CUDA device.

    python benchmarks/gpu_train.py --out "$OUT"            # on the GPU machine, ~3-5 minutes
    python benchmarks/gpu_train.py --smoke --out /tmp/g    # anywhere (CPU), ~1 minute: checks the script runs

Needs drsynth importable (`pip install -e .` or PYTHONPATH=src) with a CUDA build of torch/torchvision.
ImageNet weights are not needed: the machine may be offline and speed does not depend on weight values, so
the backbones use random weights (`weights=none`), with the frozen/unfrozen setting of the real runs.

Runs (bf16 autocast where supported, else fp16 + GradScaler; channels_last; batch `--batch-size`):
1. model-only steps on batches already on the GPU (no data loading; the upper bound), through the same
   `drsynth.train.train_one_epoch` the trainer uses:
   - VGG-16 frozen at 224 px with the paper's head (backbone forward without gradients + head step),
   - ResNet-50 unfrozen at 224 px (full forward/backward/Adam step);
2. end to end with `drsynth.train.main` on a generated dataset (`--images` 256 px JPEGs, imported with
   drsynth.import_images; DataLoader workers = `--workers`): VGG-16 frozen without and with the feature cache
   (3 epochs, cache_views=1: epochs 2-3 train the head on cached features), ResNet-50 unfrozen (2 epochs).
Writes `gpu_train.json` (all figures, device, versions) under --out and prints a table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # for train_throughput's dataset generator


def device_info() -> dict:
    import torch
    import torchvision

    info = {
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "cuda": torch.cuda.is_available(),
    }
    if torch.cuda.is_available():
        p = torch.cuda.get_device_properties(0)
        info |= {
            "device": p.name,
            "memory_gib": round(p.total_memory / 2**30, 1),
            "bf16": torch.cuda.is_bf16_supported(),
            "cuda_version": torch.version.cuda,
            "cudnn": torch.backends.cudnn.version(),
        }
    return info


def model_only(backbone: str, *, frozen: bool, batch: int, size: int, steps: int, device, precision) -> dict:
    """images/s of train_one_epoch over `steps` identical batches already on the device."""
    import torch

    from drsynth.models import build_model
    from drsynth.train import train_one_epoch

    model = build_model(backbone, 2, weights="none", frozen=frozen).to(device)
    channels_last = device.type == "cuda"
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    scaler = torch.amp.GradScaler(device.type) if precision.dtype == torch.float16 else None
    x = torch.randn(batch, 3, size, size, device=device)
    y = torch.randint(0, 2, (batch,), device=device)
    common = {"device": device, "precision": precision, "scaler": scaler, "channels_last": channels_last}
    crit = torch.nn.CrossEntropyLoss()
    train_one_epoch(model, crit, opt, [(x, y)] * 3, **common)  # warm-up (cudnn autotune, allocator)
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    train_one_epoch(model, crit, opt, [(x, y)] * steps, **common)
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    peak = torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else 0.0
    return {
        "run": f"{backbone} {'frozen' if frozen else 'unfrozen'} model-only",
        "batch": batch,
        "image_size": size,
        "images_per_s": round(steps * batch / seconds, 1),
        "peak_memory_gib": round(peak, 2),
    }


def end_to_end(data: str, work: Path, name: str, **overrides) -> dict:
    from drsynth.train import TrainConfig, main

    cfg = TrainConfig(
        data=data, out=str(work / name.replace(" ", "_")), overwrite=True, progress=False, **overrides
    )
    start = time.perf_counter()
    result = main(cfg)
    wall = time.perf_counter() - start
    return {
        "run": name,
        "batch": cfg.batch_size,
        "image_size": cfg.image_size,
        "workers": cfg.workers,
        "images_per_s_per_epoch": [round(r["train"]["images_per_s"], 1) for r in result.history],
        "cached": [r["train"]["cached"] for r in result.history],
        "wall_s": round(wall, 1),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument(
        "--out", type=Path, default=Path(os.environ.get("OUT", ".")), help="folder for gpu_train.json"
    )
    ap.add_argument("--images", type=int, default=4096, help="generated dataset size for the end-to-end runs")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--steps", type=int, default=30, help="timed steps of the model-only runs")
    ap.add_argument("--workers", type=int, default=max(1, min(14, (os.cpu_count() or 2) - 2)))
    ap.add_argument("--smoke", action="store_true", help="tiny sizes on any device, to check the script")
    args = ap.parse_args()

    import torch
    from train_throughput import make_dataset

    from drsynth.train import choose_device, choose_precision

    if args.smoke:
        args.images, args.batch_size, args.steps, args.workers = 24, 4, 1, 1
        torch.set_num_threads(1)  # CPU smoke runs share small machines; spare threads only spin
    size = 32 if args.smoke else 224
    device = choose_device("auto")
    precision = choose_precision("auto", device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    info = device_info() | {"precision": str(precision.dtype), "smoke": args.smoke}
    print(json.dumps(info), flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    rows: list[dict] = []

    def record(row: dict) -> None:
        rows.append(row)
        print(json.dumps(row), flush=True)
        (args.out / "gpu_train.json").write_text(json.dumps({"info": info, "runs": rows}, indent=2))

    # 1. model-only upper bounds
    record(
        model_only(
            "vgg16",
            frozen=True,
            batch=args.batch_size,
            size=size,
            steps=args.steps,
            device=device,
            precision=precision,
        )
    )
    record(
        model_only(
            "resnet50",
            frozen=False,
            batch=args.batch_size,
            size=size,
            steps=args.steps,
            device=device,
            precision=precision,
        )
    )

    # 2. end to end through drsynth.train.main
    with tempfile.TemporaryDirectory(prefix="drsynth-gpu-bench-") as tmp:
        work = Path(tmp)
        start = time.perf_counter()
        data = make_dataset(work, args.images)
        print(f"dataset of {args.images} images ready in {time.perf_counter() - start:.1f} s", flush=True)
        common = {
            "batch_size": args.batch_size,
            "workers": args.workers,
            "image_size": size,
            "weights": "none",
            "dataset_cache": str(work / "cache"),
        }
        record(
            end_to_end(
                data,
                work,
                "vgg16 frozen, no cache",
                backbone="vgg16",
                frozen=True,
                cache_views=0,
                epochs=2,
                **common,
            )
        )
        record(
            end_to_end(
                data,
                work,
                "vgg16 frozen, cache_views=1",
                backbone="vgg16",
                frozen=True,
                cache_views=1,
                epochs=3,
                **common,
            )
        )
        record(
            end_to_end(data, work, "resnet50 unfrozen", backbone="resnet50", frozen=False, epochs=2, **common)
        )

    print("\nrun                                   batch  images/s")
    for r in rows:
        ips = r.get("images_per_s", r.get("images_per_s_per_epoch"))
        print(f"{r['run']:38} {r['batch']:5d}  {ips}")
    print(f"wrote {args.out / 'gpu_train.json'}")


if __name__ == "__main__":
    main()
