"""What subjects cost the renderer: one-off build time per subject, and the per-image cost of a new pose.

    .venv/bin/python benchmarks/subject_cost.py                       # vehicles + imported models
    .venv/bin/python benchmarks/subject_cost.py --poses 200 --models ../shared/assets/meshes

Procedural vehicles build their geometry once (first `parts()` call) and afterwards a pose only computes
one 4x4 transform per rigid group. Skinned imported models re-skin their mesh for each new (clip, frame)
and cache it. Figures: build ms per subject (median / max), per-pose ms (mean of `sample_pose` + `parts`
over fresh poses), triangles per subject. Prints the load average: on a shared machine the figures are
pessimistic.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def _pose_cost(subject, poses: int, seed: int = 0) -> float:
    rng = np.random.default_rng(seed)
    t = time.perf_counter()
    for _ in range(poses):
        subject.parts(subject.sample_pose(rng))
    return (time.perf_counter() - t) / poses * 1000


def bench_generator(name: str, poses: int) -> list[tuple]:
    import importlib

    gen = importlib.import_module(f"drsynth.subjects.{name}")
    cls = {"bicycles": "bicycle", "cars": "car"}[name]
    subjects = gen.make_subjects(cls, breeds=None, blends=0, seed=0)
    builds, per_pose, tris = [], [], []
    for s in subjects:
        t = time.perf_counter()
        parts = s.parts(s.default_pose())
        builds.append((time.perf_counter() - t) * 1000)
        tris.append(sum(len(p.mesh.faces) for p in parts))
        per_pose.append(_pose_cost(s, poses))
    return [
        (
            f"{cls} (procedural, {len(subjects)} presets)",
            statistics.median(builds),
            max(builds),
            statistics.mean(per_pose),
            max(per_pose),
            int(statistics.median(tris)),
            max(tris),
        )
    ]


def bench_models(folder: Path, poses: int) -> list[tuple]:
    from drsynth.subjects.imported import load_models

    rows = []
    for class_dir in sorted(p for p in folder.iterdir() if p.is_dir()):
        t = time.perf_counter()
        subjects = load_models(class_dir, class_dir.name, on_error=lambda p, r: print(f"  skipped {p}: {r}"))
        load_ms = (time.perf_counter() - t) * 1000 / max(len(subjects), 1)
        for s in subjects:
            clips = s.describe().get("clips") or []
            if not clips:
                continue
            parts = s.parts(s.default_pose())
            rows.append(
                (
                    f"{class_dir.name}/{s.breed} (skinned, {len(clips)} clips)",
                    load_ms,
                    load_ms,
                    _pose_cost(s, poses),
                    float("nan"),
                    sum(len(p.mesh.faces) for p in parts),
                    sum(len(p.mesh.vertices) for p in parts),
                )
            )
        static = [s for s in subjects if not (s.describe().get("clips") or [])]
        if static:
            rows.append(
                (
                    f"{class_dir.name} ({len(static)} static models)",
                    load_ms,
                    load_ms,
                    _pose_cost(static[0], poses),
                    float("nan"),
                    0,
                    0,
                )
            )
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--poses", type=int, default=100, help="fresh poses per subject")
    ap.add_argument(
        "--models",
        type=Path,
        default=REPO.parent / "shared" / "assets" / "meshes",
        help="folder of <class>/ model folders (skipped when absent)",
    )
    args = ap.parse_args()
    rows = bench_generator("bicycles", args.poses) + bench_generator("cars", args.poses)
    if args.models.is_dir():
        rows += bench_models(args.models, args.poses)
    else:
        print(f"({args.models} not present: imported models not measured)")
    print(f"load average (1 min): {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    print(
        f"{'subjects':54s} {'build ms med/max':>17s} {'pose ms mean/max':>17s} {'tris med/max (verts)':>21s}"
    )
    for name, b_med, b_max, p_mean, p_max, t_med, t_max in rows:
        print(f"{name:54s} {b_med:8.0f} /{b_max:6.0f} {p_mean:8.2f} /{p_max:6.2f} {t_med:9d} /{t_max:7d}")


if __name__ == "__main__":
    main()
