"""Where does the model look? GradCAM on the PyTorch checkpoint, occlusion sensitivity on the ONNX model.

For the first K images of each class in each domain it draws a grid like the paper's Fig. 5: one column per
image; rows = the network's input crop, the GradCAM heatmap, the occlusion-sensitivity heatmap.

- GradCAM (Selvaraju et al. 2017) through pytorch-grad-cam, on the last spatial feature map of the backbone
  (found by running the model once, so every backbone works without a per-architecture table).
- Occlusion sensitivity (Zeiler & Fergus 2014) needs only inputs and outputs, so it runs on the exported ONNX
  model: a grey (mean-colour) square slides over the input and the heat at a pixel is the mean drop of the
  target class probability over the squares covering it. Positive = the evidence is there.

The target class is the image's true class by default (the paper used "cat" for every image: `target="cat"`),
or the predicted one (`target="pred"`).
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from drsynth.errors import ConfigError, DatasetError, ModelError
from drsynth.fsutil import atomic_write_bytes, atomic_write_json
from drsynth.onnx_model import OnnxClassifier, softmax
from drsynth.preprocess import Preprocess, normalize, resize_and_crop


def first_per_class(ds, k: int) -> list[tuple[Image.Image, str, str]]:
    """The first `k` images of each class of a domain, in the domain's own order: (image, class, key)."""
    if k < 1:
        raise ConfigError(f"k (images per class) must be >= 1, got {k}")
    classes = list(ds.classes)
    picked: dict[str, list[tuple[Image.Image, str, str]]] = {c: [] for c in classes}
    for s in ds:
        c = s["class"]
        if len(picked[c]) < k:
            picked[c].append((s["image"], c, str(s["__key__"])))
        if all(len(v) >= k for v in picked.values()):
            break
    out = [x for c in classes for x in picked[c]]
    if not out:
        raise DatasetError(f"domain {getattr(ds, 'uri', getattr(ds, 'root', ''))} has no images to explain")
    return out


# --- GradCAM -----------------------------------------------------------------------------------------------


def find_target_layer(model: Any, image_size: int) -> Any:
    """The module producing the backbone's last feature map with spatial size > 1 (GradCAM's usual choice)."""
    import torch

    seen: list[Any] = []
    hooks = [m.register_forward_hook(lambda mod, _i, out: seen.append((mod, out)))
             for m in model.backbone.modules()]
    try:
        with torch.no_grad():
            model(torch.zeros(1, 3, image_size, image_size))
    finally:
        for h in hooks:
            h.remove()
    for mod, out in reversed(seen):  # hooks fire when a module finishes: containers after their children
        if isinstance(out, torch.Tensor) and out.ndim == 4 and out.shape[-1] > 1 and out.shape[-2] > 1:
            return mod
    raise ModelError(f"no spatial feature map in backbone {type(model.backbone).__name__}; GradCAM needs one")


def gradcam_maps(model: Any, batch: np.ndarray, targets: Sequence[int], *, target_layer: Any = None) -> np.ndarray:
    """[N,3,H,W] preprocessed batch -> [N,H,W] GradCAM maps in [0,1] for the given target classes."""
    import torch
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    layer = target_layer if target_layer is not None else find_target_layer(model, batch.shape[-1])
    # A frozen backbone has no parameter gradients, so the feature map would not be part of any graph:
    # asking for the input's gradient makes every activation require one.
    x = torch.from_numpy(np.ascontiguousarray(batch, np.float32)).requires_grad_(True)
    with GradCAM(model=model, target_layers=[layer]) as cam:
        maps = cam(input_tensor=x, targets=[ClassifierOutputTarget(int(t)) for t in targets])
    return np.nan_to_num(np.asarray(maps, np.float32))


# --- occlusion sensitivity ---------------------------------------------------------------------------------


def occlusion_maps(clf: OnnxClassifier, batch: np.ndarray, targets: Sequence[int], *, patch: int | None = None,
                   stride: int | None = None, chunk: int = 64) -> np.ndarray:
    """[N,3,H,W] preprocessed batch -> [N,H,W] mean drop of the target probability when a patch is greyed out.

    The grey is 0 in normalised space, i.e. the dataset mean colour. Defaults: patch = H/7, stride = patch/2.
    """
    n, _, h, w = batch.shape
    patch = patch or max(2, round(h / 7))
    stride = stride or max(1, patch // 2)
    if not 1 <= stride <= patch <= min(h, w):
        raise ConfigError(f"occlusion needs 1 <= stride <= patch <= image side, got stride {stride}, patch {patch}, "
                          f"image {h}x{w}")
    ys = list(range(0, h - patch + 1, stride))
    xs = list(range(0, w - patch + 1, stride))
    if ys[-1] != h - patch:
        ys.append(h - patch)
    if xs[-1] != w - patch:
        xs.append(w - patch)
    boxes = [(y, x) for y in ys for x in xs]
    out = np.zeros((n, h, w), np.float32)
    base = softmax(clf.logits(batch))
    for i in range(n):
        t = int(targets[i])
        heat = np.zeros((h, w), np.float32)
        count = np.zeros((h, w), np.float32)
        for start in range(0, len(boxes), chunk):
            part = boxes[start:start + chunk]
            occluded = np.repeat(batch[i:i + 1], len(part), axis=0)
            for j, (y, x) in enumerate(part):
                occluded[j, :, y:y + patch, x:x + patch] = 0.0
            probs = softmax(clf.logits(occluded))[:, t]
            for j, (y, x) in enumerate(part):
                heat[y:y + patch, x:x + patch] += base[i, t] - probs[j]
                count[y:y + patch, x:x + patch] += 1
        out[i] = heat / np.maximum(count, 1)
    return out


# --- grids -------------------------------------------------------------------------------------------------


def overlay(rgb: np.ndarray, heat: np.ndarray, *, alpha: float = 0.5) -> np.ndarray:
    """uint8 HxWx3 image + HxW heat in [0,1] -> uint8 jet overlay."""
    from matplotlib import colormaps

    colored = colormaps["jet"](np.clip(heat, 0, 1))[..., :3]
    return (255 * ((1 - alpha) * rgb / 255.0 + alpha * colored)).clip(0, 255).astype(np.uint8)


def _scale(maps: np.ndarray) -> np.ndarray:
    """Per-image scaling to [0,1] of the positive part (negative evidence shows as no heat)."""
    pos = np.clip(maps, 0, None)
    top = pos.reshape(len(pos), -1).max(axis=1)
    return pos / np.where(top > 0, top, 1.0)[:, None, None]


def draw_grid(crops: Sequence[np.ndarray], rows: dict[str, np.ndarray], titles: Sequence[str], *,
              title: str) -> bytes:
    """PNG bytes: first row the crops, then one overlay row per heatmap kind."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(crops)
    nrows = 1 + len(rows)
    fig, axes = plt.subplots(nrows, n, figsize=(1.9 * n + 0.9, 2.05 * nrows + 0.5), squeeze=False)
    for j in range(n):
        axes[0, j].imshow(crops[j])
        axes[0, j].set_title(titles[j], fontsize=7)
        for r, maps in enumerate(rows.values(), start=1):
            axes[r, j].imshow(overlay(crops[j], maps[j]))
        for r in range(nrows):
            axes[r, j].set_xticks([])
            axes[r, j].set_yticks([])
    for r, name in enumerate(["input", *rows], start=0):
        axes[r, 0].set_ylabel(name, fontsize=9)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    return buf.getvalue()


def _targets(target: str, classes: Sequence[str], true: Sequence[str], pred: np.ndarray) -> list[int]:
    if target == "true":
        return [classes.index(c) for c in true]
    if target == "pred":
        return [int(p) for p in pred]
    if target in classes:
        return [classes.index(target)] * len(true)
    raise ConfigError(f"target must be 'true', 'pred' or one of the model's classes {list(classes)}, got {target!r}")


def explain(
    domains: dict[str, str],
    out_dir: str | Path,
    *,
    onnx_model: str | Path | None = None,
    checkpoint: str | Path | None = None,
    k: int = 4,
    target: str = "true",
    patch: int | None = None,
    stride: int | None = None,
    only_model_classes: bool = True,
    name: str | None = None,
) -> dict[str, Any]:
    """Write `out_dir/<domain>.png` (GradCAM and/or occlusion grids) and `out_dir/index.json`.

    GradCAM needs the checkpoint, occlusion the ONNX model; give both for the paper's three rows.
    """
    from drsynth.evaluate import load_model, open_eval_domain

    if onnx_model is None and checkpoint is None:
        raise ConfigError("explain needs --model (ONNX, for occlusion) and/or --checkpoint (for GradCAM)")
    clf = load_model(onnx_model, device="cpu") if onnx_model is not None else None
    torch_model, info = None, None
    if checkpoint is not None:
        from drsynth.checkpoint import load_checkpoint

        torch_model, info = load_checkpoint(checkpoint)
    classes = list(clf.classes if clf is not None else info.classes)
    pp: Preprocess = clf.preprocess if clf is not None else info.preprocess
    if clf is not None and info is not None and (list(info.classes) != classes or info.preprocess != pp):
        raise ModelError(f"{onnx_model} and {checkpoint} are different models (classes {classes} vs "
                         f"{list(info.classes)}, or different preprocessing); export the checkpoint again")
    layer = find_target_layer(torch_model, pp.image_size) if torch_model is not None else None
    out_dir = Path(out_dir)
    index: dict[str, Any] = {"model": str(onnx_model or checkpoint), "classes": classes, "target": target, "k": k,
                             "methods": (["gradcam"] if torch_model is not None else [])
                             + (["occlusion"] if clf is not None else []), "domains": {}}
    model_name = name or Path(str(onnx_model or checkpoint)).stem
    for dom, uri in domains.items():
        ds, _skipped = open_eval_domain(uri, classes, only_model_classes=only_model_classes)
        items = first_per_class(ds, k)
        crops = [np.asarray(resize_and_crop(im, pp)) for im, _, _ in items]
        batch = np.stack([normalize(c, pp) for c in crops])
        if clf is not None:
            probs = softmax(clf.logits(batch))
        else:
            import torch

            with torch.no_grad():
                probs = torch.softmax(torch_model(torch.from_numpy(batch)), dim=1).numpy()
        pred = probs.argmax(axis=1)
        true = [c for _, c, _ in items]
        tgt = _targets(target, classes, true, pred)
        rows: dict[str, np.ndarray] = {}
        if torch_model is not None:
            rows["GradCAM"] = gradcam_maps(torch_model, batch, tgt, target_layer=layer)
        if clf is not None:
            rows["occlusion"] = _scale(occlusion_maps(clf, batch, tgt, patch=patch, stride=stride))
        titles = [f"{t} -> {classes[p]} {probs[i, p]:.0%}" for i, (t, p) in enumerate(zip(true, pred, strict=True))]
        what = "true class" if target == "true" else ("predicted class" if target == "pred" else f"class '{target}'")
        png = draw_grid(crops, rows, titles, title=f"{model_name} on {dom}: heat for the {what} "
                        f"(first {k} per class; title: true -> predicted)")
        atomic_write_bytes(out_dir / f"{dom}.png", png)
        index["domains"][dom] = {"uri": uri, "png": f"{dom}.png", "images": [key for _, _, key in items],
                                 "true": true, "pred": [classes[p] for p in pred],
                                 "correct": int(sum(classes[p] == t for t, p in zip(true, pred, strict=True)))}
    atomic_write_json(out_dir / "index.json", index)
    return index
