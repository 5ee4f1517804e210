"""Inference images/s on CPU: ONNX Runtime vs PyTorch eager, for exported drsynth classifiers, batch 1 and 32.

    .venv/bin/python benchmarks/onnx_vs_torch.py [--backbones mobilenet_v2,resnet18] [--seconds 3] [--threads N]

For each backbone: build the classifier (backbone + the paper's head, 2 classes; MobileNetV2 with the shared
ImageNet weights from ../shared/weights when present, else random weights: speed does not depend on them),
save it as a drsynth checkpoint and export it with `drsynth.export` (parity-checked). Then time, on the same
preprocessed float32 batches at 224 px:
- PyTorch eager: the reloaded checkpoint, eval mode, `torch.inference_mode()`, float32;
- ONNX Runtime: `OnnxClassifier` on the CPU execution provider (what `drsynth evaluate` and `serve` run).
Both use the same number of threads (`--threads`, default: all cores). Each cell runs for at least
`--seconds` after a warm-up. The load average is printed next to the figures; `--json PATH` saves them.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

SHARED_WEIGHTS = (
    Path(__file__).resolve().parents[1].parent / "shared" / "weights" / "mobilenet_v2_imagenet.pth"
)


def timed(fn, batch: int, seconds: float) -> float:
    """Images per second of `fn()` (one batch per call), after two warm-up calls."""
    fn()
    fn()
    calls, start = 0, time.perf_counter()
    while True:
        fn()
        calls += 1
        elapsed = time.perf_counter() - start
        if elapsed >= seconds and calls >= 3:
            return calls * batch / elapsed


def bench_backbone(
    name: str, work: Path, *, threads: int, seconds: float, batches: tuple[int, ...]
) -> list[dict]:
    import torch

    from drsynth.checkpoint import CheckpointInfo, load_checkpoint, save_checkpoint
    from drsynth.export import export_checkpoint, parity_inputs
    from drsynth.models import build_model
    from drsynth.onnx_model import OnnxClassifier
    from drsynth.preprocess import Preprocess

    weights = str(SHARED_WEIGHTS) if name == "mobilenet_v2" and SHARED_WEIGHTS.is_file() else "none"
    model = build_model(name, 2, weights=weights)
    pp = Preprocess()
    info = CheckpointInfo(classes=["cat", "dog"], backbone=name, weights=weights, frozen=True, preprocess=pp)
    save_checkpoint(work / name, model, info)
    export = export_checkpoint(work / name, work / f"{name}.onnx")
    torch_model, _ = load_checkpoint(work / name)
    clf = OnnxClassifier.load(export.path, providers=["CPUExecutionProvider"], threads=threads)
    rows = []
    for b in batches:
        x = parity_inputs(pp, b, seed=b)
        xt = torch.from_numpy(x)

        def run_torch(xt=xt):
            with torch.inference_mode():
                torch_model(xt)

        def run_onnx(x=x):
            clf.logits(x)

        t_ips = timed(run_torch, b, seconds)
        o_ips = timed(run_onnx, b, seconds)
        rows.append(
            {
                "backbone": name,
                "weights": "imagenet (shared file)" if weights != "none" else "random",
                "batch": b,
                "torch_images_per_s": round(t_ips, 1),
                "onnxruntime_images_per_s": round(o_ips, 1),
                "speedup": round(o_ips / t_ips, 2),
                "parity_max_abs_diff": export.max_abs_diff,
            }
        )
        print(f"  {name} batch {b}: torch {t_ips:.1f} img/s, onnxruntime {o_ips:.1f} img/s", flush=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--backbones", default="mobilenet_v2,resnet18", help="comma-separated drsynth backbones")
    ap.add_argument("--batches", default="1,32", help="comma-separated batch sizes")
    ap.add_argument("--seconds", type=float, default=3.0, help="minimum timed seconds per cell")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="threads for both runtimes")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()

    import onnxruntime
    import torch

    torch.set_num_threads(args.threads)
    batches = tuple(int(b) for b in args.batches.split(","))
    work = Path(tempfile.mkdtemp(prefix="drsynth-onnx-bench-"))
    rows: list[dict] = []
    try:
        for name in args.backbones.split(","):
            rows += bench_backbone(
                name.strip(), work, threads=args.threads, seconds=args.seconds, batches=batches
            )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    load = os.getloadavg()
    print(
        f"\ntorch {torch.__version__}, onnxruntime {onnxruntime.__version__}, {os.cpu_count()} CPUs, "
        f"{args.threads} threads each, 224 px float32, load average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}"
    )
    print(
        f"{'backbone':14} {'weights':24} {'batch':>5} {'torch img/s':>12} {'ORT img/s':>10} {'ORT/torch':>9}"
    )
    for r in rows:
        print(
            f"{r['backbone']:14} {r['weights']:24} {r['batch']:5d} {r['torch_images_per_s']:12.1f} "
            f"{r['onnxruntime_images_per_s']:10.1f} {r['speedup']:9.2f}"
        )
    if args.json:
        args.json.write_text(
            json.dumps({"load_average": load, "threads": args.threads, "rows": rows}, indent=2)
        )


if __name__ == "__main__":
    main()
