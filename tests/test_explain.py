"""Explainability: occlusion sensitivity on ONNX, GradCAM on a checkpoint, Fig. 5-style grids."""

from __future__ import annotations

import json

import numpy as np
import pytest
from eval_fixtures import color_folder, color_onnx

from drsynth.errors import ConfigError, ModelError
from drsynth.evaluate import load_model
from drsynth.explain import explain, find_target_layer, gradcam_maps, occlusion_maps
from drsynth.preprocess import Preprocess, normalize


def test_occlusion_finds_the_evidence(tmp_path):
    """The colour model says "cat" for red: with red only in the top-left quadrant, heat must be there."""
    clf = load_model(color_onnx(tmp_path / "m.onnx", ("cat", "dog"), size=32))
    img = np.full((32, 32, 3), 128, np.uint8)
    img[:16, :16] = (255, 0, 0)
    batch = normalize(img, clf.preprocess)[None]
    heat = occlusion_maps(clf, batch, [0], patch=8, stride=4)[0]
    assert heat.shape == (32, 32)
    assert heat[:16, :16].mean() > 0
    assert heat[:16, :16].mean() > 5 * max(heat[16:, 16:].mean(), 1e-6)
    with pytest.raises(ConfigError, match="stride"):
        occlusion_maps(clf, batch, [0], patch=8, stride=9)


@pytest.fixture(scope="module")
def small_model(tmp_path_factory):
    """An untrained small-cnn checkpoint and its real export (drsynth.checkpoint / drsynth.export)."""
    import torch

    from drsynth.checkpoint import CheckpointInfo, save_checkpoint
    from drsynth.export import export_checkpoint
    from drsynth.models import build_model

    d = tmp_path_factory.mktemp("ck")
    torch.manual_seed(0)
    model = build_model("small-cnn", 2, weights="none", frozen=True, dropout=0.0).eval()
    info = CheckpointInfo(classes=["cat", "dog"], backbone="small-cnn", weights="none", frozen=True,
                          preprocess=Preprocess.for_size(32))
    save_checkpoint(d / "ck", model, info)
    export_checkpoint(d / "ck", d / "model.onnx")
    return d / "ck", d / "model.onnx"


def test_gradcam_on_frozen_small_cnn(small_model):
    from drsynth.checkpoint import load_checkpoint

    model, info = load_checkpoint(small_model[0])
    layer = find_target_layer(model, 32)
    assert layer is model.backbone.features
    batch = np.random.default_rng(0).normal(size=(3, 3, 32, 32)).astype(np.float32)
    maps = gradcam_maps(model, batch, [0, 1, 0], target_layer=layer)
    assert maps.shape == (3, 32, 32)
    assert maps.min() >= 0 and maps.max() <= 1 and maps.max() > 0


def test_target_layer_of_torchvision_backbone():
    from drsynth.models import build_model

    model = build_model("mobilenet_v2", 2, weights="none").eval()
    assert find_target_layer(model, 64) is model.backbone.features


def test_explain_writes_fig5_grids(small_model, tmp_path):
    ck, onnx_path = small_model
    real = color_folder(tmp_path / "real", {"cat": [0, 0, 0], "dog": [1, 1, 1]})
    toon = color_folder(tmp_path / "toon", {"dog": [1, 2]})
    out = tmp_path / "explain"
    index = explain({"real": str(real), "toon": str(toon)}, out, onnx_model=onnx_path, checkpoint=ck, k=2)
    assert index["methods"] == ["gradcam", "occlusion"]
    assert index["domains"]["real"]["true"] == ["cat", "cat", "dog", "dog"]
    assert index["domains"]["toon"]["true"] == ["dog", "dog"]
    for name in ("real", "toon"):
        assert (out / f"{name}.png").read_bytes()[:4] == b"\x89PNG"
    assert json.loads((out / "index.json").read_text())["k"] == 2
    # occlusion alone from the ONNX model, the paper's fixed "cat" target
    only = explain({"real": str(real)}, tmp_path / "occ", onnx_model=onnx_path, k=1, target="cat")
    assert only["methods"] == ["occlusion"]
    with pytest.raises(ConfigError, match="target must be"):
        explain({"real": str(real)}, tmp_path / "x", onnx_model=onnx_path, k=1, target="horse")


def test_explain_model_mismatch(small_model, tmp_path):
    other = color_onnx(tmp_path / "other.onnx", ("cat", "dog", "car"), size=32)
    real = color_folder(tmp_path / "real", {"cat": [0]})
    with pytest.raises(ModelError, match="different models"):
        explain({"real": str(real)}, tmp_path / "o", onnx_model=other, checkpoint=small_model[0])
    with pytest.raises(ConfigError, match="needs --model"):
        explain({"real": str(real)}, tmp_path / "o")
