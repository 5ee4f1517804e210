"""Packaging and reading throughput: MB/s and images/s to a local S3 server (SeaweedFS) and to a folder.

    .venv/bin/python benchmarks/package_throughput.py [--images 2000] [--size 256] [--shard-size 500]

Writes a synthetic render folder (JPEGs of render-like content and size, records like the renderer's), then
times `drsynth.package.package` into (1) a folder and (2) a SeaweedFS server started on free loopback ports
(stopped at the end), and reads each dataset back with `open_dataset` (cold cache = download + verify +
decode; warm cache = decode only). The dataset card is left out of the packaging figures (it is a fixed
few seconds of plotting per dataset) and timed once separately. The one-off import of webdataset/torch is
paid before any clock starts. Figures depend on load: the script prints the load average next to them.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter


def write_render_dir(path: Path, n: int, size: int, seed: int = 0) -> float:
    """A render folder with `n` samples; returns its image bytes in MB."""
    rng = np.random.default_rng(seed)
    classes = ["cat", "dog", "car", "bicycle"]
    samples = path / "samples"
    samples.mkdir(parents=True)
    (path / "render.json").write_text(
        json.dumps(
            {
                "scenario": {"name": "bench", "image_size": size},
                "scenario_name": "bench",
                "seed": seed,
                "image_size": size,
                "classes": classes,
                "disabled": [],
                "drsynth_version": "bench",
            }
        )
    )
    total = 0
    for i in range(n):
        # smooth sky-like gradient + a few shapes + mild noise: JPEG sizes like real 256 px renders
        top, bottom = rng.integers(0, 255, 3), rng.integers(0, 255, 3)
        t = np.linspace(0, 1, size)[:, None, None]
        img = (top * (1 - t) + bottom * t).repeat(size, axis=1).astype(np.uint8)
        image = Image.fromarray(img)
        draw = ImageDraw.Draw(image)
        for _ in range(int(rng.integers(3, 8))):
            x0, y0 = rng.integers(0, size, 2)
            w, h = rng.integers(size // 10, size // 2, 2)
            colour = tuple(int(c) for c in rng.integers(0, 255, 3))
            (draw.ellipse if rng.random() < 0.5 else draw.rectangle)((x0, y0, x0 + w, y0 + h), fill=colour)
        image = image.filter(ImageFilter.GaussianBlur(1))
        noisy = np.asarray(image, dtype=np.int16) + rng.integers(-6, 7, (size, size, 3))
        buf = io.BytesIO()
        Image.fromarray(noisy.clip(0, 255).astype(np.uint8)).save(buf, format="JPEG", quality=90)
        key = f"{i:09d}"
        (samples / f"{key}.jpg").write_bytes(buf.getvalue())
        total += buf.tell()
        record = {
            "key": key,
            "index": i,
            "class": classes[i % 4],
            "label": i % 4,
            "camera": {"distance_m": float(rng.uniform(1, 5)), "elevation_deg": float(rng.uniform(0, 60))},
            "lights": [{"intensity": float(rng.uniform(1, 5))} for _ in range(int(rng.integers(1, 4)))],
            "visible_fraction": float(rng.uniform(0.2, 1)),
        }
        (samples / f"{key}.json").write_text(json.dumps(record))
    return total / 1e6


def timed_read(uri: str, cache: Path) -> tuple[int, float]:
    from drsynth.data import open_dataset

    start = time.monotonic()
    n = sum(1 for _ in open_dataset(uri, cache_dir=cache))
    return n, time.monotonic() - start


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--images", type=int, default=2000)
    p.add_argument("--size", type=int, default=256, help="image side, pixels")
    p.add_argument("--shard-size", type=int, default=500)
    p.add_argument("--workers", type=int, default=4, help="package threads")
    p.add_argument("--work-dir", type=Path, default=None, help="scratch folder (default: a temp dir)")
    args = p.parse_args()

    import webdataset  # noqa: F401  (torch import, once, outside the clocks)

    from drsynth.local_store import free_ports, start_local_store, stop_local_store
    from drsynth.package import package

    work = Path(tempfile.mkdtemp(prefix="drsynth-bench-", dir=args.work_dir))
    store_dir = work / "store"
    try:
        t0 = time.monotonic()
        mb = write_render_dir(work / "render", args.images, args.size)
        print(
            f"synthetic render folder: {args.images} images of {args.size} px, {mb:.1f} MB of JPEG "
            f"({mb * 1e3 / args.images:.1f} kB each), written in {time.monotonic() - t0:.1f} s"
        )
        server = start_local_store(store_dir, port=free_ports(1)[0])
        os.environ.update(server.env())
        rows = []
        for label, dest in (("folder", str(work / "ds")), ("S3 (SeaweedFS, loopback)", "s3://bench/ds")):
            load = os.getloadavg()[0]
            res = package(
                work / "render",
                dest,
                shard_size=args.shard_size,
                workers=args.workers,
                progress=False,
                card=False,
            )
            shard_mb = sum(s.size for s in res.manifest.shards) / 1e6
            rows.append((f"package -> {label}", res.manifest.num_samples, shard_mb, res.seconds, load))
            for cache_state in ("cold", "warm"):
                load = os.getloadavg()[0]
                n, secs = timed_read(res.uri, work / f"cache-{label[:2]}")
                rows.append((f"read {cache_state} cache <- {label}", n, shard_mb, secs, load))
        t0 = time.monotonic()
        package(
            work / "render",
            "s3://bench/with-card",
            shard_size=args.shard_size,
            workers=args.workers,
            progress=False,
            card=True,
        )
        with_card = time.monotonic() - t0

        print(f"\n{'step':<44} {'images':>7} {'MB':>7} {'s':>7} {'images/s':>9} {'MB/s':>7} {'load1':>6}")
        for name, n, size_mb, secs, load in rows:
            print(
                f"{name:<44} {n:>7} {size_mb:>7.1f} {secs:>7.2f} {n / secs:>9.0f} {size_mb / secs:>7.1f} "
                f"{load:>6.2f}"
            )
        print(
            f"\npackage -> S3 including the dataset card: {with_card:.2f} s "
            f"({args.images / with_card:.0f} images/s)"
        )
        print(f"cores: {os.cpu_count()}, load average now: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    finally:
        stop_local_store(store_dir)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
