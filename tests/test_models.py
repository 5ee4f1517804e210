"""drsynth.models: backbones, the paper's head, freezing, and the three kinds of weights."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch
from torch import nn

from drsynth.errors import ConfigError, ModelError
from drsynth.models import BACKBONES, SmallCNN, build_model, default_weights, read_state_dict

FEATURE_DIMS = {
    "vgg16": 4096,
    "resnet18": 512,
    "resnet50": 2048,
    "mobilenet_v2": 1280,
    "mobilenet_v3_large": 1280,
    "efficientnet_b0": 1280,
    "convnext_tiny": 768,
    "small-cnn": 128,
}
HEAVY = {"vgg16", "resnet50", "convnext_tiny"}  # a few seconds each just to initialise


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """Tiny models on shared CI cores: extra torch threads only spin; restore the setting afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_table_lists_every_backbone_of_the_issue():
    assert set(BACKBONES) == set(FEATURE_DIMS)


@pytest.mark.parametrize(
    "name", [pytest.param(n, marks=pytest.mark.slow) if n in HEAVY else n for n in FEATURE_DIMS]
)
def test_backbone_features_and_paper_head(name):
    model = build_model(name, 5, weights="none", dropout=0.3, frozen=True)
    assert model.feature_dim == FEATURE_DIMS[name]
    head = list(model.head)
    assert [type(m) for m in head] == [nn.Linear, nn.ReLU, nn.Dropout, nn.Linear]
    assert (head[0].in_features, head[0].out_features) == (FEATURE_DIMS[name], 128)
    assert head[2].p == 0.3
    assert (head[3].in_features, head[3].out_features) == (128, 5)
    # the ImageNet classification layer is gone: the backbone ends in features
    assert not any(isinstance(m, nn.Linear) and m.out_features == 1000 for m in model.backbone.modules())
    with torch.no_grad():
        feats = model.eval().backbone(torch.randn(1, 3, 32, 32))
        assert feats.shape == (1, FEATURE_DIMS[name])
        assert model(torch.randn(2, 3, 32, 32)).shape == (2, 5)


def test_frozen_backbone_has_no_gradients_and_stays_in_eval_mode():
    model = build_model("small-cnn", 3, weights="none", frozen=True)
    assert not any(p.requires_grad for p in model.backbone.parameters())
    assert all(p.requires_grad for p in model.head.parameters())
    model.train()
    assert model.head.training and not model.backbone.training  # batch-norm statistics stay fixed
    stats_before = model.backbone.features[1].running_mean.clone()
    model(torch.randn(4, 3, 32, 32) + 3)
    assert torch.equal(model.backbone.features[1].running_mean, stats_before)

    model.freeze_backbone(False)
    model.train()
    assert model.backbone.training and all(p.requires_grad for p in model.parameters())


def test_unknown_backbone_and_too_few_classes():
    with pytest.raises(ConfigError, match="unknown backbone 'alexnet'.*resnet18"):
        build_model("alexnet", 2, weights="none")
    with pytest.raises(ConfigError, match="at least 2 classes"):
        build_model("small-cnn", 1, weights="none")


def test_small_cnn_has_no_imagenet_weights():
    assert default_weights("small-cnn") == "none"
    assert default_weights("vgg16") == "imagenet"
    with pytest.raises(ConfigError, match="no ImageNet weights.*--weights none"):
        build_model("small-cnn", 2, weights="imagenet")


def test_imagenet_weights_unreachable_gives_actionable_error(tmp_path):
    """A real failed fetch: an empty torch hub cache and no route out (a proxy on a closed local port)."""
    env = {
        **os.environ,
        "TORCH_HOME": str(tmp_path / "torch"),
        "https_proxy": "http://127.0.0.1:9",
        "HTTPS_PROXY": "http://127.0.0.1:9",
        "no_proxy": "",
        "NO_PROXY": "",
        "OMP_NUM_THREADS": "1",
    }
    code = (
        "from drsynth.models import build_model\n"
        "from drsynth.errors import ModelError\n"
        "try:\n"
        "    build_model('resnet18', 2, weights='imagenet')\n"
        "except ModelError as e:\n"
        "    print('MODELERROR', e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    msg = out.stdout
    assert "MODELERROR" in msg, out.stderr[-2000:]
    assert "cannot fetch torchvision's ImageNet weights for resnet18" in msg
    assert "--weights /path/to/resnet18-" in msg  # how to pass a local file
    assert str(tmp_path / "torch" / "hub" / "checkpoints") in msg  # where the cache would be
    assert "container image" in msg  # the air-gapped recipe
    assert not (tmp_path / "torch" / "hub" / "checkpoints" / "resnet18-f37072fd.pth").exists()


def test_weights_from_file_safetensors_and_torch_save(tmp_path):
    from safetensors.torch import save_file

    torch.manual_seed(1)
    src = SmallCNN()
    state = src.state_dict()
    save_file({k: v.contiguous() for k, v in state.items()}, tmp_path / "w.safetensors")
    torch.save({"model": state}, tmp_path / "w.pth")  # torchvision-references checkpoint layout
    x = torch.randn(2, 3, 32, 32)
    src.eval().fc = nn.Identity()
    with torch.no_grad():
        expected = src(x)
    for f in ("w.safetensors", "w.pth"):
        model = build_model("small-cnn", 3, weights=str(tmp_path / f)).eval()
        with torch.no_grad():
            assert torch.equal(model.backbone(x), expected)
        assert model.frozen


def test_weights_file_problems_are_model_errors(tmp_path):
    with pytest.raises(ModelError, match="weights file not found.*imagenet.*none"):
        build_model("small-cnn", 2, weights=str(tmp_path / "missing.pth"))
    (tmp_path / "junk.pth").write_bytes(b"not a torch file")
    with pytest.raises(ModelError, match="cannot read weights file"):
        build_model("small-cnn", 2, weights=str(tmp_path / "junk.pth"))
    state = SmallCNN().state_dict()
    del state["features.0.weight"]
    torch.save(state, tmp_path / "partial.pth")
    with pytest.raises(
        ModelError, match="does not fit backbone small-cnn.*1 missing keys.*features.0.weight"
    ):
        build_model("small-cnn", 2, weights=str(tmp_path / "partial.pth"))
    torch.save(SmallCNN(width=16).state_dict(), tmp_path / "narrow.pth")
    with pytest.raises(ModelError, match="does not fit backbone small-cnn"):
        build_model("small-cnn", 2, weights=str(tmp_path / "narrow.pth"))
    torch.save([1, 2, 3], tmp_path / "list.pth")
    with pytest.raises(ModelError, match="does not hold a state dict"):
        read_state_dict(tmp_path / "list.pth")


def test_mobilenet_v2_shared_imagenet_weights_load_strictly(shared):
    """The one offline ImageNet state dict: every backbone key is used, features match torchvision's."""
    import torchvision

    path = shared("weights", "mobilenet_v2_imagenet.pth")
    model = build_model("mobilenet_v2", 2, weights=str(path)).eval()
    ref = torchvision.models.mobilenet_v2()
    ref.load_state_dict(torch.load(path, map_location="cpu", weights_only=True), strict=True)
    ref.classifier[1] = nn.Identity()
    x = torch.randn(2, 3, 96, 96)
    with torch.no_grad():
        assert torch.equal(model.backbone(x), ref.eval()(x))
    assert model.frozen and not any(p.requires_grad for p in model.backbone.parameters())
