"""What the baked-subject cache saves: preparing every procedural subject of a scenario built from scratch
(cache off), built and written (cold cache) and loaded (warm cache), in one process.

    .venv/bin/python benchmarks/subject_cache.py                       # assets/scenarios/cats_dogs.yaml
    .venv/bin/python benchmarks/subject_cache.py --scenario assets/scenarios/four_class.yaml

Prints wall and CPU seconds per pass (CPU time is the steadier figure on a shared machine), per subject, and
the cache's size on disk. Uses a temporary cache folder, never ~/.cache.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _prepare_all(scenario) -> tuple[int, float, float]:
    from drsynth.describe import build_context
    from drsynth.subjects.bake_cache import prebake

    ctx = build_context(scenario)  # fresh subject objects: nothing baked in memory yet
    subjects = [s for pool in ctx.pools.values() for s in pool]
    w, c = time.perf_counter(), time.process_time()
    n = prebake(subjects)
    return n, time.perf_counter() - w, time.process_time() - c


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scenario", default=str(REPO / "assets" / "scenarios" / "cats_dogs.yaml"))
    args = ap.parse_args()

    from drsynth.config import load_scenario

    scenario = load_scenario(args.scenario)
    print(f"scenario {args.scenario}; load average {os.getloadavg()[0]:.1f}")
    with tempfile.TemporaryDirectory(prefix="drsynth-subject-cache-") as root:
        rows = []
        for label, env in (("cache off", "off"), ("cold cache", root), ("warm cache", root)):
            os.environ["DRSYNTH_SUBJECT_CACHE"] = env
            n, wall, cpu = _prepare_all(scenario)
            rows.append((label, n, wall, cpu))
        size = sum(p.stat().st_size for p in Path(root).rglob("*.npz"))
        entries = len(list(Path(root).rglob("*.npz")))
    print(f"{'pass':<11} {'subjects':>8} {'wall s':>8} {'CPU s':>8} {'CPU ms/subject':>15}")
    for label, n, wall, cpu in rows:
        print(f"{label:<11} {n:>8} {wall:>8.1f} {cpu:>8.1f} {1000 * cpu / max(n, 1):>15.0f}")
    print(f"cache: {entries} entries, {size / 1e6:.0f} MB ({size / max(entries, 1) / 1e6:.2f} MB per entry)")
    print(f"load average now {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
