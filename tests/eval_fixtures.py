"""Helpers for the evaluation/explain/report tests: a tiny ONNX model with known behaviour and image folders.

The "colour model" follows the ONNX contract (input `input`, output `logits`, drsynth metadata) and predicts
class i when colour channel i % 3 dominates the image, so every expected number in the tests is exact.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from drsynth.preprocess import Preprocess

CHANNEL_RGB = {0: (230, 30, 30), 1: (30, 230, 30), 2: (30, 30, 230)}


def color_onnx(path: Path, classes: Sequence[str] = ("cat", "dog"), *, size: int = 32, out_width: int | None = None,
               backbone: str = "color-test") -> Path:
    """Export the colour model to `path` with drsynth metadata; `out_width` != len(classes) makes a broken one."""
    import onnx
    import torch

    width = out_width or len(classes)
    w = torch.zeros(width, 3)
    for i in range(width):
        w[i, i % 3] = 4.0

    class ColorNet(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(w)

        def forward(self, x):
            return x.mean((2, 3)) @ self.w.T

    path.parent.mkdir(parents=True, exist_ok=True)
    model = ColorNet().eval()
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (torch.zeros(2, 3, size, size),), str(path), input_names=["input"],
                          output_names=["logits"], dynamic_axes={"input": {0: "N"}, "logits": {0: "N"}},
                          dynamo=False)
    m = onnx.load(str(path))
    pp = Preprocess.for_size(size)
    meta = {"drsynth.classes": json.dumps(list(classes)), "drsynth.preprocess": pp.to_json(),
            "drsynth.backbone": backbone, "drsynth.version": "test"}
    for k, v in meta.items():
        p = m.metadata_props.add()
        p.key, p.value = k, v
    onnx.save(m, str(path))
    return path


def color_image(rgb: tuple[int, int, int], *, size: int = 40, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    arr = np.clip(np.asarray(rgb, float)[None, None, :] + rng.normal(0, 20, (size, size, 3)), 0, 255)
    return Image.fromarray(arr.astype(np.uint8))


def color_folder(root: Path, plan: dict[str, Sequence[int]], *, size: int = 40) -> Path:
    """Write `root/<class>/<k>.jpg`; plan maps class -> list of channel indices (one image each)."""
    for cls, channels in plan.items():
        d = root / cls
        d.mkdir(parents=True, exist_ok=True)
        for k, ch in enumerate(channels):
            color_image(CHANNEL_RGB[ch], size=size, seed=k).save(d / f"{k:03d}.jpg", quality=95)
    return root


def write_eval(run_dir: Path, model: str, clf, domains: dict[str, list[tuple[int, str]]], *,
               train_domains: Sequence[str] = (), confusion_png: bool = True) -> Path:
    """Evaluate `clf` for real on in-memory colour images and write RUN/eval/<model>/metrics.json (+ PNGs).

    domains: name -> list of (colour channel, true class) pairs, so the accuracy is known by construction.
    """
    import numpy as np

    from drsynth.evaluate import EvalResults, evaluate_samples, write_results

    results = {}
    for name, items in domains.items():
        samples = [(color_image(CHANNEL_RGB[ch], seed=k), cls) for k, (ch, cls) in enumerate(items)]
        results[name] = evaluate_samples(clf, samples, uri=f"memory:{name}", domain=name)
    ood = [m.accuracy for n, m in results.items() if n not in train_domains]
    res = EvalResults(model=str(clf.path), classes=clf.classes, backbone=clf.backbone, providers=clf.providers,
                      train_domains=list(train_domains), domains=results,
                      mean_accuracy=float(np.mean([m.accuracy for m in results.values()])),
                      mean_out_of_domain_accuracy=float(np.mean(ood)) if ood else None)
    return write_results(res, run_dir / "eval" / model, confusion_png=confusion_png)


def mix(n_right: int, n_wrong: int, classes: Sequence[str] = ("cat", "dog")) -> list[tuple[int, str]]:
    """Images of alternating true classes; the first n_right are classified right, then n_wrong wrong."""
    out = []
    for k in range(n_right + n_wrong):
        ci = k % len(classes)
        ch = (ci if k < n_right else ci + 1) % min(3, len(classes))  # the colour model has 3 channels
        out.append((ch, classes[ci]))
    return out
