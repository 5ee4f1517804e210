"""A tiny, meaningful ONNX classifier for the serve tests: it tells red, green and blue images apart.

A 3x3 identity convolution, ReLU, global average pooling and a scaled identity linear layer, exported with
torch.onnx to the drsynth ONNX contract (docs/design.md): input `input` [N,3,S,S] (dynamic N), output
`logits`, metadata_props drsynth.classes / drsynth.preprocess / drsynth.backbone / drsynth.version. After
ImageNet normalisation a saturated colour is the only positive channel, so the answer is known.
"""

from __future__ import annotations

import io
import json
import warnings
from pathlib import Path

import numpy as np
from PIL import Image

from drsynth.onnx_model import META_BACKBONE, META_CLASSES, META_PREPROCESS, META_VERSION
from drsynth.preprocess import Preprocess

CLASSES = ["red", "green", "blue"]
COLORS = {"red": (230, 20, 20), "green": (20, 200, 30), "blue": (25, 30, 220)}
IMAGE_SIZE = 32


def make_color_classifier(path: Path, *, image_size: int = IMAGE_SIZE) -> Path:
    import onnx
    import torch

    net = torch.nn.Sequential(
        torch.nn.Conv2d(3, 3, 3, padding=1, bias=False),
        torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(),
        torch.nn.Linear(3, 3),
    ).eval()
    with torch.no_grad():
        net[0].weight.zero_()
        for c in range(3):
            net[0].weight[c, c, 1, 1] = 1.0
        net[4].weight.copy_(torch.eye(3) * 4.0)
        net[4].bias.zero_()
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            net,
            (torch.zeros(1, 3, image_size, image_size),),
            buf,
            input_names=["input"],
            output_names=["logits"],
            dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
            dynamo=False,
        )
    model = onnx.load_from_string(buf.getvalue())
    meta = {
        META_CLASSES: json.dumps(CLASSES),
        META_PREPROCESS: Preprocess.for_size(image_size).to_json(),
        META_BACKBONE: "tiny-color-cnn",
        META_VERSION: "test",
    }
    for key, value in meta.items():
        model.metadata_props.add(key=key, value=value)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


def color_image(name: str, *, size: tuple[int, int] = (48, 40), fmt: str = "JPEG", seed: int = 0) -> bytes:
    """An encoded image of one colour with a little seeded noise, so JPEG has something to compress."""
    rng = np.random.default_rng(seed)
    base = np.asarray(COLORS[name], np.int16)
    arr = np.clip(base + rng.integers(-15, 16, (size[1], size[0], 3)), 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format=fmt)
    return buf.getvalue()
