"""How long the README's first command takes: `drsynth run --preset quick` (or another preset) end to end.

Runs the local pipeline (kfp.local, every task its own process) in a fresh folder and prints the wall time,
the CPU time of the whole process tree, the machine's load average before and after (the development machine
is shared: wall time at load L on 2 cores is roughly CPU-time x L/2), and the wall time per kind of task from
the task log. A second run with the same folder measures the cached re-run (`--cached`).

    .venv/bin/python benchmarks/pipeline_quick_run.py [--preset quick] [--out /tmp/drsynth-bench] [--cached]
"""

from __future__ import annotations

import argparse
import collections
import datetime as dt
import os
import re
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

ANSI = re.compile(r"\x1b\[[0-9;]*m")


def task_times(log: Path) -> dict[str, list[float]]:
    """Wall seconds per task kind (render-shard, train-model, ...) of the last run in the task log."""
    text = ANSI.sub("", log.read_text(errors="replace"))
    text = text[max(0, text.rfind("drsynth run: paper_study")):]
    started: dict[str, list[dt.datetime]] = {}
    out: dict[str, list[float]] = collections.defaultdict(list)
    for line in text.splitlines():
        m = re.match(r"(\d+:\d+:\d+\.\d+) - INFO - (.*)", line.strip())
        if not m:
            continue
        t = dt.datetime.strptime(m.group(1), "%H:%M:%S.%f")
        if a := re.search(r"Executing task '(\S+)'", m.group(2)):
            started.setdefault(a.group(1), []).append(t)
        elif (b := re.search(r"Task '(\S+)' finished", m.group(2))) and started.get(b.group(1)):
            s = started[b.group(1)].pop(0)
            out[re.sub(r"-\d+$", "", b.group(1))].append((t - s).total_seconds() % 86400)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="quick")
    p.add_argument("--out", type=Path, default=Path("/tmp/drsynth-bench-run"))
    p.add_argument("--cached", action="store_true", help="keep --out: measure a re-run with cached tasks")
    args = p.parse_args()
    if args.out.exists() and not args.cached:
        shutil.rmtree(args.out)
    drsynth = Path(sys.executable).with_name("drsynth")
    load0 = os.getloadavg()
    t0 = time.monotonic()
    r = subprocess.run([str(drsynth), "run", "--preset", args.preset, "--out", str(args.out)],
                       capture_output=True, text=True)
    wall = time.monotonic() - t0
    load1 = os.getloadavg()
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    if r.returncode != 0:
        print(r.stdout[-3000:], r.stderr[-3000:], sep="\n")
        sys.exit(f"drsynth run failed with exit code {r.returncode}")
    cpu = ru.ru_utime + ru.ru_stime
    print(f"drsynth run --preset {args.preset}{' (cached re-run)' if args.cached else ''}")
    print(f"  wall      {wall / 60:6.1f} min")
    print(f"  CPU       {cpu / 60:6.1f} min (all processes; two cores give at most 2 CPU-min per minute)")
    print(f"  load avg  {load0[0]:.1f} before, {load1[0]:.1f} after (1-min); cores {os.cpu_count()}")
    print(f"  report    {args.out / 'report.html'} ({(args.out / 'report.html').stat().st_size / 1e6:.1f} MB)")
    times = task_times(args.out / "kfp" / "tasks.log")
    if times:
        print("  wall per task kind (two loop iterations run at a time):")
        for kind, ts in sorted(times.items(), key=lambda kv: -sum(kv[1])):
            print(f"    {kind:18s} n={len(ts):3d}  total {sum(ts):7.1f} s  mean {sum(ts) / len(ts):5.1f} s")


if __name__ == "__main__":
    main()
