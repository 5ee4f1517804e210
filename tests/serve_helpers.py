"""A tiny, meaningful classifier for the serve tests: it tells red, green and blue images apart.

It is a real drsynth model: `small-cnn` with the paper's head (drsynth.models), saved as a checkpoint
(drsynth.checkpoint) and exported by `drsynth.export` (parity-checked, drsynth metadata, optional Triton
repository). Its weights are set rather than trained so the right answer is known: every convolution passes
channels 0-2 through (centre tap 1, batch norm identity), the head maps feature c to class c. After ImageNet
normalisation a saturated colour is the only positive channel, so a red image is "red".
The export (several seconds) runs once per test process; each caller gets its own copy of the file.
"""

from __future__ import annotations

import atexit
import functools
import io
import shutil
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

CLASSES = ["red", "green", "blue"]
COLORS = {"red": (230, 20, 20), "green": (20, 200, 30), "blue": (25, 30, 220)}
IMAGE_SIZE = 32


@functools.cache
def _exported() -> Path:
    import torch

    from drsynth.checkpoint import CheckpointInfo, HeadInfo, save_checkpoint
    from drsynth.export import export_checkpoint
    from drsynth.models import build_model
    from drsynth.preprocess import Preprocess

    net = build_model("small-cnn", len(CLASSES), weights="none", dropout=0.0, frozen=False)
    with torch.no_grad():
        for p in net.parameters():
            p.zero_()
        for layer in net.backbone.modules():
            if isinstance(layer, torch.nn.Conv2d):
                for c in range(3):
                    layer.weight[c, c, 1, 1] = 1.0
            elif isinstance(layer, torch.nn.BatchNorm2d):
                layer.weight.fill_(1.0)
                layer.running_mean.zero_()
                layer.running_var.fill_(1.0)
        for c in range(3):
            net.head[0].weight[c, c] = 1.0
            net.head[3].weight[c, c] = 4.0
    info = CheckpointInfo(
        classes=CLASSES,
        backbone="small-cnn",
        weights="none",
        head=HeadInfo(hidden=128, dropout=0.0),
        frozen=False,
        preprocess=Preprocess.for_size(IMAGE_SIZE),
    )
    work = Path(tempfile.mkdtemp(prefix="drsynth-serve-test-"))
    atexit.register(shutil.rmtree, work, ignore_errors=True)
    save_checkpoint(work / "checkpoint", net.eval(), info)
    export_checkpoint(work / "checkpoint", work / "model.onnx", triton_repo=work / "triton")
    return work


def make_color_classifier(path: Path) -> Path:
    """The exported model.onnx, copied to `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(_exported() / "model.onnx", path)
    return path


def triton_repository() -> Path:
    """The Triton repository `drsynth export --triton-repo` wrote for the same model (read-only use)."""
    return _exported() / "triton"


def color_image(name: str, *, size: tuple[int, int] = (48, 40), fmt: str = "JPEG", seed: int = 0) -> bytes:
    """An encoded image of one colour with a little seeded noise, so JPEG has something to compress."""
    rng = np.random.default_rng(seed)
    base = np.asarray(COLORS[name], np.int16)
    arr = np.clip(base + rng.integers(-15, 16, (size[1], size[0], 3)), 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format=fmt)
    return buf.getvalue()
