"""Tiny render folders and packaged datasets for tests (a pytest plugin, registered in conftest.py).

`make_render_dir(path, n)` writes a real render output folder following docs/design.md ("Render output
folder"): `render.json` plus `samples/<9-digit key>.jpg/.json`, with small JPEGs whose colour and shape
depend on the class (so a tiny model can learn them) and metadata records shaped like the renderer's.

Fixtures:
- `render_dir`: a 24-image, 2-class render folder (cat, dog), 32 px.
- `tiny_dataset`: that folder packaged into a file-store dataset (shard size 8); returns its URI.
"""

from __future__ import annotations

import io
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

CLASS_COLOURS = [(200, 60, 50), (50, 80, 200), (60, 170, 70), (200, 180, 40), (150, 60, 170)]


def make_image(cls: int, rng: np.random.Generator, size: int) -> Image.Image:
    """A noisy background with a class-coloured disc (class 0), square (1), triangle (2), ..."""
    noise = rng.integers(0, 90, size=(size, size, 3), dtype=np.uint8)
    image = Image.fromarray(noise + 80)
    draw = ImageDraw.Draw(image)
    c = CLASS_COLOURS[cls % len(CLASS_COLOURS)]
    r = size * float(rng.uniform(0.25, 0.4))
    cx, cy = size / 2 + float(rng.uniform(-0.1, 0.1)) * size, size / 2 + float(rng.uniform(-0.1, 0.1)) * size
    box = (cx - r, cy - r, cx + r, cy + r)
    if cls % 3 == 0:
        draw.ellipse(box, fill=c)
    elif cls % 3 == 1:
        draw.rectangle(box, fill=c)
    else:
        draw.polygon([(cx, cy - r), (cx - r, cy + r), (cx + r, cy + r)], fill=c)
    return image


def make_record(index: int, classes: Sequence[str], rng: np.random.Generator, size: int, seed: int) -> dict:
    """A metadata record with the fields and shapes docs/design.md lists for renders."""
    cls = classes[index % len(classes)]
    n_lights = int(rng.integers(1, 4))
    return {
        "key": f"{index:09d}",
        "index": index,
        "seed": seed,
        "class": cls,
        "label": index % len(classes),
        "subject": {
            "id": f"{cls}-{index % 3}",
            "class": cls,
            "breed": f"breed{index % 3}",
            "source": "procedural",
        },
        "pose": {"yaw_deg": float(rng.uniform(-180, 180))},
        "camera": {
            "distance_m": float(rng.uniform(1.5, 4.0)),
            "elevation_deg": float(rng.uniform(-5, 60)),
            "azimuth_deg": float(rng.uniform(0, 360)),
            "fov_deg": float(rng.uniform(30, 60)),
        },
        "lights": [
            {"type": str(rng.choice(["point", "directional"])), "intensity": float(rng.uniform(1, 10))}
            for _ in range(n_lights)
        ],
        "sky": {"kind": str(rng.choice(["hdr", "gradient", "solid"]))},
        "occluders": [],
        "materials": {"body": str(rng.choice(["fur", "plastic", "metal"]))},
        "style": str(rng.choice(["photo", "flat"])),
        "visible_fraction": float(rng.uniform(0.3, 1.0)),
        "bbox": [1, 1, size - 1, size - 1],
        "image_size": size,
        "scenario": "tiny",
        "drsynth_version": "0.1.0",
    }


def make_render_dir(
    path: Path,
    n: int,
    *,
    classes: Sequence[str] = ("cat", "dog"),
    size: int = 32,
    seed: int = 0,
    start: int = 0,
    unfinished: int = 0,
) -> Path:
    """Write a render folder with images start..start+n-1 (+ `unfinished` images without a record)."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, start]))
    samples = path / "samples"
    samples.mkdir(parents=True, exist_ok=True)
    info = {
        "scenario": {"name": "tiny", "image_size": size, "classes": list(classes), "seed": seed},
        "scenario_name": "tiny",
        "seed": seed,
        "image_size": size,
        "classes": list(classes),
        "disabled": [],
        "drsynth_version": "0.1.0",
    }
    (path / "render.json").write_text(json.dumps(info))
    for index in range(start, start + n + unfinished):
        image = make_image(index % len(classes), rng, size)
        buf = io.BytesIO()
        image.save(buf, format="JPEG", quality=90)
        (samples / f"{index:09d}.jpg").write_bytes(buf.getvalue())
        if index < start + n:
            record = make_record(index, classes, rng, size, seed)
            (samples / f"{index:09d}.json").write_text(json.dumps(record))
    return path


@pytest.fixture
def render_dir(tmp_path: Path) -> Path:
    return make_render_dir(tmp_path / "render", 24)


@pytest.fixture
def tiny_dataset(tmp_path: Path, render_dir: Path) -> str:
    """A committed 24-sample, 3-shard dataset in a folder; returns its file:// URI."""
    from drsynth.package import package

    result = package(render_dir, tmp_path / "dataset", shard_size=8, progress=False)
    return result.uri
