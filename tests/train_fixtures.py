"""Helpers for the training/export/model tests: tiny generated image sets and a saved small checkpoint.

`shapes_folder` draws one coloured shape per image (circle, square, triangle) at a random position and size
on a random background; each class also has its own dominant colour channel, so a small CNN learns it in a
few epochs on CPU and "clearly above chance" is a meaningful bar (chance is 1/3).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

SHAPES = {"circle": 0, "square": 1, "triangle": 2}  # class -> dominant colour channel


def draw_shape(shape: str, rng: np.random.Generator, size: int = 40) -> Image.Image:
    bg = tuple(int(v) for v in rng.integers(60, 140, 3))
    img = Image.new("RGB", (size, size), bg)
    draw = ImageDraw.Draw(img)
    fg = [int(v) for v in rng.integers(0, 90, 3)]
    fg[SHAPES[shape]] = int(rng.integers(170, 256))
    r = rng.uniform(0.25, 0.4) * size
    cx, cy = rng.uniform(r, size - r, 2)
    if shape == "circle":
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=tuple(fg))
    elif shape == "square":
        draw.rectangle([cx - r, cy - r, cx + r, cy + r], fill=tuple(fg))
    else:
        draw.polygon([(cx, cy - r), (cx - r, cy + r), (cx + r, cy + r)], fill=tuple(fg))
    return img


def shapes_folder(root: Path, n_per_class: int, *, seed: int, size: int = 40, classes=tuple(SHAPES)) -> Path:
    """Write `root/<class>/<class>_NNNN.jpg` images; deterministic in `seed`."""
    rng = np.random.default_rng(seed)
    for c in classes:
        (root / c).mkdir(parents=True, exist_ok=True)
        for i in range(n_per_class):
            draw_shape(c, rng, size).save(root / c / f"{c}_{i:04d}.jpg", quality=92)
    return root


def shapes_dataset(tmp: Path, n_per_class: int, *, seed: int, size: int = 40) -> str:
    """A committed drsynth dataset (import-images) of generated shapes; returns its URI (a folder)."""
    from drsynth.import_images import import_images

    src = shapes_folder(tmp / f"shapes-src-{seed}", n_per_class, seed=seed, size=size)
    dest = tmp / f"shapes-ds-{seed}"
    import_images(src, dest, progress=False, shard_size=64, workers=1)
    return str(dest)


def small_checkpoint(
    directory: Path, classes=("cat", "dog", "car"), *, image_size: int = 32, seed: int = 0
) -> Path:
    """A saved small-cnn checkpoint with seeded random weights (and non-trivial batch-norm statistics)."""
    import torch

    from drsynth.checkpoint import CheckpointInfo, save_checkpoint
    from drsynth.models import build_model
    from drsynth.preprocess import Preprocess

    torch.manual_seed(seed)
    model = build_model("small-cnn", len(classes), weights="none", frozen=False)
    model.train()
    with torch.no_grad():  # move the batch-norm running statistics away from (0, 1)
        for _ in range(3):
            model(torch.randn(8, 3, image_size, image_size) * 2 + 0.5)
    info = CheckpointInfo(
        classes=list(classes),
        backbone="small-cnn",
        weights="none",
        frozen=False,
        preprocess=Preprocess.for_size(image_size),
    )
    return save_checkpoint(directory, model.eval(), info)
