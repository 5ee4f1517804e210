"""Synthetic -> real transfer: train only on renders, test on real photos (issue 10 item 4).

    .venv/bin/python benchmarks/synthetic_to_real.py                         # cats vs dogs, 2,000 renders/class
    .venv/bin/python benchmarks/synthetic_to_real.py --classes cat dog bicycle car --per-class 2000
    .venv/bin/python benchmarks/synthetic_to_real.py --per-class 300 --epochs 5 --work /tmp/s2r  # quick look

The product path end to end: `render_job.render_range` (the scenario, `drsynth render`) -> `package.package`
into a local dataset (`drsynth package`) -> `train.main` (`drsynth train`: frozen ImageNet mobilenet_v2 with
the paper's head, Linear(1280,128)-ReLU-Dropout-Linear, Adam, augmentation, feature cache) evaluated every
epoch on the real photos of ../shared/data/real. The reported figure is the real-photo accuracy of the
checkpoint that training keeps (best accuracy on held-out *renders*): the real photos never choose anything.
AAR = accuracy - 1/number of classes (the paper's measure). `--work` keeps renders, dataset and checkpoint;
re-running resumes the render and reuses the dataset.

Needs the shared ImageNet weights (`--weights`, default ../shared/weights/mobilenet_v2_imagenet.pth) and the
real photos (`--real`); exits with a message when they are missing.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("DRSYNTH_SHARED", REPO.parent / "shared"))


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--scenario",
        default=str(REPO / "assets/scenarios/cats_dogs.yaml"),
        help="scenario YAML (default: cats_dogs)",
    )
    p.add_argument("--classes", nargs="+", default=["cat", "dog"], help="classes (default: cat dog)")
    p.add_argument("--per-class", type=int, default=2000, help="renders per class (default 2000)")
    p.add_argument("--real", default=str(SHARED / "data/real"), help="real photos DIR/<class>/*.jpg")
    p.add_argument(
        "--weights", default=str(SHARED / "weights/mobilenet_v2_imagenet.pth"), help="mobilenet_v2 state dict"
    )
    p.add_argument(
        "--work", default=None, help="folder for renders, dataset and checkpoint (default: a temp dir)"
    )
    p.add_argument("--workers", type=int, default=None, help="render worker processes (default: all cores)")
    p.add_argument("--epochs", type=int, default=10, help="training epochs (paper: 10)")
    p.add_argument("--seed", type=int, default=None, help="scenario seed (default: the scenario's)")
    p.add_argument("--threads", type=int, default=None, help="torch threads while training")
    p.add_argument(
        "--keep",
        type=float,
        default=None,
        help="curate before packaging: keep this fraction of each class's renders, best ImageNet group "
        "probability first (`drsynth curate`); default: package every render",
    )
    p.add_argument("--json", default=None, help="also write the result here")
    return p


def main(args: argparse.Namespace) -> dict:
    from drsynth.config import load_scenario
    from drsynth.curate import curate
    from drsynth.package import package
    from drsynth.render_job import render_range
    from drsynth.train import TrainConfig
    from drsynth.train import main as train_main

    real = Path(args.real)
    weights = Path(args.weights)
    for path, what in ((real, "real photos"), (weights, "ImageNet weights")):
        if not path.exists():
            sys.exit(f"{what} not found at {path}: this benchmark needs ../shared (or --real / --weights)")
    missing = [c for c in args.classes if not (real / c).is_dir()]
    if missing:
        sys.exit(f"no real photos for classes {missing} under {real}")
    sc = load_scenario(args.scenario, seed=args.seed, classes=args.classes)
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="s2r-"))
    work.mkdir(parents=True, exist_ok=True)
    renders, dataset, ckpt = work / "renders", work / "dataset", work / "checkpoint"
    count = args.per_class * len(sc.class_names)
    timings: dict[str, float] = {}

    t = time.perf_counter()
    print(f"render {count} images of '{sc.name}' ({', '.join(sc.class_names)}) -> {renders}", flush=True)
    last = [0.0]

    def progress(done: int, total: int) -> None:
        now = time.perf_counter()
        if now - last[0] > 30 or done == total:
            last[0] = now
            print(f"  rendered {done}/{total}", flush=True)

    render_range(sc, renders, count=count, workers=args.workers, on_progress=progress)
    timings["render_s"] = time.perf_counter() - t

    curation = None
    if args.keep is not None:
        t = time.perf_counter()
        curation = work / f"curation-{args.keep:g}"
        if (curation / "curation.json").exists():
            print(f"reuse curation {curation}", flush=True)
        else:
            print(f"curate: keep {args.keep:.0%} of each class by ImageNet group probability", flush=True)
            curate(renders, curation, keep_fraction=args.keep, weights=weights)
        timings["curate_s"] = time.perf_counter() - t
    kept = len(json.loads((curation / "curation.json").read_text())["kept"]) if curation else count

    t = time.perf_counter()
    manifest_path = dataset / "dataset.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else {}
    if manifest.get("num_samples") == kept and ("curation" in manifest.get("source", {})) == (
        curation is not None
    ):
        print(f"reuse dataset {dataset}", flush=True)
    else:
        if dataset.exists():
            shutil.rmtree(dataset)
        package(
            renders,
            str(dataset),
            shard_size=1000,
            name=f"s2r-{sc.name}",
            progress=False,
            card=False,
            curation=curation,
        )
    timings["package_s"] = time.perf_counter() - t

    t = time.perf_counter()
    cfg = TrainConfig(
        data=str(dataset),
        out=str(ckpt),
        backbone="mobilenet_v2",
        weights=str(weights),
        frozen=True,
        classes=list(sc.class_names),
        evals={"real": str(real)},
        epochs=args.epochs,
        threads=args.threads,
        seed=0,
        overwrite=True,
        progress=False,
    )
    result = train_main(cfg)
    timings["train_s"] = time.perf_counter() - t

    best = result.history[result.best_epoch - 1] if result.best_epoch >= 1 else result.history[-1]
    real_eval = _find_eval(best, "real")
    last_real = _find_eval(result.history[-1], "real")
    n_classes = len(sc.class_names)
    out = {
        "scenario": sc.name,
        "scenario_file": str(args.scenario),
        "seed": sc.seed,
        "classes": sc.class_names,
        "renders_per_class": args.per_class,
        "keep_fraction": args.keep,
        "trained_on": kept,
        "epochs": args.epochs,
        "best_epoch (by val on renders)": result.best_epoch,
        "val_accuracy_renders": result.best_val_accuracy,
        "real_accuracy": real_eval["accuracy"],
        "real_aar": real_eval["accuracy"] - 1.0 / n_classes,
        "real_per_class": real_eval.get("per_class_accuracy"),
        "real_n": real_eval.get("n"),
        "real_accuracy_last_epoch": last_real["accuracy"],
        "real_accuracy_per_epoch": [round(_find_eval(r, "real")["accuracy"], 4) for r in result.history],
        "timings_s": {k: round(v, 1) for k, v in timings.items()},
        "load_average": os.getloadavg(),
        "work": str(work),
    }
    print(json.dumps(out, indent=2))
    print(
        f"\nsynthetic -> real ({', '.join(sc.class_names)}): {real_eval['accuracy']:.1%} on {real_eval.get('n')} real "
        f"photos (AAR {out['real_aar']:+.1%}), trained on {kept} of {count} renders of '{sc.name}' "
        f"(seed {sc.seed}), mobilenet_v2 frozen + paper head, epoch {result.best_epoch}/{args.epochs}"
    )
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2))
    return out


def _find_eval(row: dict, name: str) -> dict:
    """The metrics of evaluation domain `name` in one history row (layout: row['evals'][name] or row[name])."""
    for key in ("evals", "eval", "domains"):
        if isinstance(row.get(key), dict) and name in row[key]:
            return row[key][name]
    if isinstance(row.get(name), dict):
        return row[name]
    raise KeyError(f"no '{name}' evaluation in the training history row: keys {sorted(row)}")


if __name__ == "__main__":
    main(get_args_parser().parse_args())
