"""Render throughput: images/s for a scenario at 256x256, including JPEG encoding and metadata writes.

    .venv/bin/python benchmarks/render_throughput.py                      # cats_dogs, 1 worker and all cores
    .venv/bin/python benchmarks/render_throughput.py --workers 2 --count 400 --pool small

Each worker process builds its renderer, warms up (bakes every subject of the pool once, renders a few
images so shaders, meshes and textures are on the GPU), waits at a barrier, then renders its share of the
timed indices and writes them to a render folder exactly as `drsynth render` does. Throughput = timed
images / (last worker's end - first worker's start). Start-up is reported separately: it is paid once per
worker, not per image. Prints the load average: the CPU is shared while developing, so figures taken on a
busy machine are pessimistic.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _worker(k, n_workers, scenario_json, indices, out_dir, warm, lp_threads, barrier, results):
    os.environ["LP_NUM_THREADS"] = lp_threads
    from drsynth.config import parse_scenario
    from drsynth.render_job import SampleRenderer, prepare_output, write_sample

    t_start = time.perf_counter()
    sc = parse_scenario(scenario_json)
    worker = SampleRenderer(sc)
    worker.prebake()  # bake every subject once (or load it from the subject cache)
    for i in range(warm):
        worker.render(10**7 + k * warm + i)
    samples = prepare_output(Path(out_dir), sc)
    # Time the subjects' own work (pose sampling, posed parts) separately from the renderer's.
    stages = {"subject pose+parts": 0.0, "describe+render": 0.0, "jpeg+write": 0.0}

    def timed(fn):
        def wrapper(*a, **kw):
            t = time.perf_counter()
            try:
                return fn(*a, **kw)
            finally:
                stages["subject pose+parts"] += time.perf_counter() - t

        return wrapper

    for pool in worker.ctx.pools.values():
        for s in pool:
            s.sample_pose, s.parts = timed(s.sample_pose), timed(s.parts)
    t_ready = time.perf_counter()
    barrier.wait()
    t0 = time.perf_counter()
    c0 = time.process_time()
    for i in indices:
        a = time.perf_counter()
        sample = worker.render(i)
        b = time.perf_counter()
        write_sample(samples, sample, sc.render.jpeg_quality)
        stages["describe+render"] += b - a  # includes the subject's share, subtracted below
        stages["jpeg+write"] += time.perf_counter() - b
    stages["describe+render"] -= stages["subject pose+parts"]
    t1 = time.perf_counter()
    results.put(
        {"k": k, "n": len(indices), "t0": t0, "t1": t1, "cpu": time.process_time() - c0, "startup": t_ready - t_start,
         "stages": stages}
    )


def run(scenario, count: int, workers: int, warm: int) -> dict:
    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(workers)
    results = ctx.Queue()
    cores = len(os.sched_getaffinity(0))
    lp = "0" if workers >= cores else str(max(1, cores // workers))
    out = Path(tempfile.mkdtemp(prefix="drsynth-bench-"))
    try:
        procs = [
            ctx.Process(
                target=_worker,
                args=(k, workers, scenario.to_json(), list(range(k, count, workers)), str(out), warm, lp, barrier, results),
            )
            for k in range(workers)
        ]
        for p in procs:
            p.start()
        rows = [results.get(timeout=3600) for _ in procs]
        for p in procs:
            p.join()
        n_files = len(list((out / "samples").glob("*.json")))
    finally:
        shutil.rmtree(out, ignore_errors=True)
    assert n_files == count, f"expected {count} records, found {n_files}"
    span = max(r["t1"] for r in rows) - min(r["t0"] for r in rows)
    n = sum(r["n"] for r in rows)
    per = {s: sum(r["stages"][s] for r in rows) / n * 1000 for s in rows[0]["stages"]}
    return {
        "workers": workers,
        "images": n,
        "seconds": span,
        "images_per_s": n / span,
        "cpu_ms_per_image": sum(r["cpu"] for r in rows) / n * 1000,
        "startup_s": max(r["startup"] for r in rows),
        "stage_ms": per,
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--scenario", default=str(REPO / "assets/scenarios/cats_dogs.yaml"))
    ap.add_argument("--count", type=int, default=300, help="timed images per configuration")
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--workers", type=int, nargs="*", help="worker counts to measure (default: 1 and all cores)")
    ap.add_argument(
        "--warm",
        type=int,
        default=300,
        help="warm-up images per worker (not timed): enough that every subject's meshes and coat textures have"
        " reached the GPU once, as they have after the first minutes of a long render",
    )
    ap.add_argument(
        "--pool", choices=["full", "small"], default="full",
        help="full: the scenario's subject pools; small: 4 breeds per class, no blends (faster warm-up)",
    )
    ap.add_argument("--disable", nargs="*", default=[], help="randomizers to switch off")
    args = ap.parse_args(argv)

    from drsynth.config import load_scenario
    from drsynth.render import select_platform

    sc = load_scenario(args.scenario, image_size=args.size, disable=args.disable)
    if args.pool == "small":
        from drsynth.subjects.registry import generator_module

        data = sc.model_dump()
        for c in data["classes"].values():
            if c["procedural"]:
                c["breeds"] = generator_module(c["procedural"]).preset_names()[:4]
                c["blends"] = 0
        sc = type(sc).model_validate(data)
    select_platform()
    cores = len(os.sched_getaffinity(0))
    worker_counts = args.workers or sorted({1, cores})
    print(f"scenario {sc.name} ({', '.join(sc.class_names)}), {sc.image_size}x{sc.image_size}, pool {args.pool}, "
          f"disabled: {', '.join(sc.disabled) or 'none'}; {cores} cores ({platform.processor() or platform.machine()}), "
          f"GL {os.environ.get('PYOPENGL_PLATFORM')}, python {sys.version.split()[0]}")
    for w in worker_counts:
        load_before = os.getloadavg()[0]
        r = run(sc, args.count, w, args.warm)
        load_after = os.getloadavg()[0]
        stages = ", ".join(f"{k} {v:.1f} ms" for k, v in r["stage_ms"].items())
        print(
            f"workers={w}: {r['images_per_s']:.1f} images/s ({r['images']} images in {r['seconds']:.1f} s; "
            f"CPU {r['cpu_ms_per_image']:.1f} ms/image; per image: {stages}; start-up {r['startup_s']:.0f} s per "
            f"worker, not included) [load avg {load_before:.1f} -> {load_after:.1f}]",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
