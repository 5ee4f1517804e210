"""Checkpoint save/load failures and ONNX export: parity, metadata, dynamic batch, Triton repository."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
import torch
from PIL import Image
from train_fixtures import small_checkpoint

from drsynth.checkpoint import INFO_FILE, WEIGHTS_FILE, load_checkpoint, read_info
from drsynth.errors import ConfigError, ModelError
from drsynth.export import export_checkpoint, parity_inputs
from drsynth.onnx_model import OnnxClassifier, softmax
from drsynth.preprocess import preprocess_batch


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """Tiny models on shared CI cores: extra torch threads only spin; restore the setting afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return small_checkpoint(tmp_path_factory.mktemp("ckpt") / "small")


@pytest.fixture(scope="module")
def exported(ckpt, tmp_path_factory):
    out = tmp_path_factory.mktemp("onnx")
    result = export_checkpoint(ckpt, out / "model.onnx", triton_repo=out / "repo", triton_name="shapes")
    return result, out


def test_checkpoint_reload_is_identical(ckpt):
    a, info = load_checkpoint(ckpt)
    b, _ = load_checkpoint(ckpt)
    x = torch.from_numpy(parity_inputs(info.preprocess, 3))
    with torch.no_grad():
        assert torch.equal(a(x), b(x))
    assert not a.training
    raw = json.loads((ckpt / INFO_FILE).read_text())
    for key in ("format", "classes", "backbone", "weights", "head", "frozen", "preprocess", "metrics"):
        assert key in raw, key
    assert raw["format"] == "drsynth-checkpoint/1" and raw["head"] == {"hidden": 128, "dropout": 0.3}
    assert "train_config" in raw and "drsynth_version" in raw


def test_export_parity_metadata_and_dynamic_batch(exported):
    result, out = exported
    assert result.max_abs_diff <= 1e-4 and result.checked_batch_sizes == (1, 4)
    proto = onnx.load(str(result.path))
    meta = {p.key: p.value for p in proto.metadata_props}
    assert json.loads(meta["drsynth.classes"]) == ["cat", "dog", "car"]
    assert json.loads(meta["drsynth.preprocess"])["image_size"] == 32
    assert meta["drsynth.backbone"] == "small-cnn" and meta["drsynth.version"]
    batch_dim = proto.graph.input[0].type.tensor_type.shape.dim[0]
    assert batch_dim.dim_param and not batch_dim.dim_value  # symbolic: any batch size

    clf = OnnxClassifier.load(result.path, providers=["CPUExecutionProvider"])
    assert clf.classes == ["cat", "dog", "car"] and clf.backbone == "small-cnn"
    for n in (1, 3, 7):
        assert clf.logits(parity_inputs(clf.preprocess, n, seed=n)).shape == (n, 3)


@pytest.mark.parametrize("exporter", ["torchscript", "dynamo"])
def test_both_exporters_pass_parity_with_the_same_contract(ckpt, tmp_path, exporter):
    result = export_checkpoint(ckpt, tmp_path / "m.onnx", exporter=exporter)
    assert result.max_abs_diff <= 1e-4
    clf = OnnxClassifier.load(result.path)
    assert clf.classes == result.classes
    batch = parity_inputs(clf.preprocess, 5)
    assert clf.logits(batch).shape == (5, len(result.classes))


def test_unknown_exporter_is_a_config_error(ckpt, tmp_path):
    with pytest.raises(ConfigError, match="unknown ONNX exporter"):
        export_checkpoint(ckpt, tmp_path / "m.onnx", exporter="tflite")
    assert not (tmp_path / "m.onnx").exists()


def test_onnx_round_trip_on_images_matches_pytorch(ckpt, exported):
    """PIL images through OnnxClassifier (the evaluate/serve path) vs the PyTorch checkpoint."""
    result, _ = exported
    clf = OnnxClassifier.load(result.path, providers=["CPUExecutionProvider"])
    model, info = load_checkpoint(ckpt)
    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 256, (50 + 7 * i, 41, 3), dtype=np.uint8)) for i in range(5)]
    onnx_probs = clf.predict_proba(images)
    with torch.no_grad():
        torch_logits = model(torch.from_numpy(preprocess_batch(images, info.preprocess))).numpy()
    assert np.abs(onnx_probs - softmax(torch_logits)).max() < 1e-5
    assert (onnx_probs.argmax(1) == torch_logits.argmax(1)).all()


def test_triton_repository_layout(exported):
    result, out = exported
    model_dir = out / "repo" / "shapes"
    assert result.triton_model_dir == model_dir
    assert (model_dir / "1" / "model.onnx").read_bytes() == result.path.read_bytes()
    assert (model_dir / "labels.txt").read_text().splitlines() == ["cat", "dog", "car"]
    config = (model_dir / "config.pbtxt").read_text()
    assert 'name: "shapes"' in config and 'backend: "onnxruntime"' in config
    assert "dims: [ 3, 32, 32 ]" in config and "dims: [ 3 ]" in config
    assert 'label_filename: "labels.txt"' in config and "max_batch_size: 32" in config
    assert 'name: "input"' in config and 'name: "logits"' in config


def test_export_writes_nothing_when_parity_fails(ckpt, tmp_path):
    with pytest.raises(
        ModelError, match="parity check failed.*max abs logit difference.*nothing was written"
    ):
        export_checkpoint(ckpt, tmp_path / "m.onnx", tolerance=-1.0, triton_repo=tmp_path / "repo")
    assert list(tmp_path.iterdir()) == []


def test_bad_triton_name_and_out_folder(ckpt, tmp_path):
    with pytest.raises(ConfigError, match="Triton model name"):
        export_checkpoint(ckpt, tmp_path / "m.onnx", triton_repo=tmp_path / "r", triton_name="../evil")
    with pytest.raises(ConfigError, match="is a folder"):
        export_checkpoint(ckpt, tmp_path)


# --------------------------------------------------------------------------------- corrupt checkpoints


def _copy(ckpt, dst):
    import shutil

    shutil.copytree(ckpt, dst)
    return dst


def test_missing_checkpoint_folder_and_files(ckpt, tmp_path):
    with pytest.raises(ModelError, match="checkpoint folder not found"):
        load_checkpoint(tmp_path / "nope")
    bare = _copy(ckpt, tmp_path / "no-json")
    (bare / INFO_FILE).unlink()
    with pytest.raises(ModelError, match="model.json is missing"):
        load_checkpoint(bare)
    no_weights = _copy(ckpt, tmp_path / "no-weights")
    (no_weights / WEIGHTS_FILE).unlink()
    with pytest.raises(ModelError, match="no model.safetensors"):
        load_checkpoint(no_weights)


def test_corrupt_checkpoint_files(ckpt, tmp_path):
    truncated = _copy(ckpt, tmp_path / "truncated")
    data = (truncated / WEIGHTS_FILE).read_bytes()
    (truncated / WEIGHTS_FILE).write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelError, match="corrupt or truncated"):
        load_checkpoint(truncated)

    garbage_json = _copy(ckpt, tmp_path / "garbage-json")
    (garbage_json / INFO_FILE).write_text("{not json")
    with pytest.raises(ModelError, match="not valid JSON"):
        read_info(garbage_json)

    wrong_format = _copy(ckpt, tmp_path / "wrong-format")
    info = json.loads((wrong_format / INFO_FILE).read_text())
    (wrong_format / INFO_FILE).write_text(json.dumps({**info, "format": "other/9"}))
    with pytest.raises(ModelError, match="format is 'other/9'"):
        load_checkpoint(wrong_format)

    missing_field = _copy(ckpt, tmp_path / "missing-field")
    (missing_field / INFO_FILE).write_text(json.dumps({k: v for k, v in info.items() if k != "classes"}))
    with pytest.raises(ModelError, match="classes: Field required"):
        load_checkpoint(missing_field)

    mismatch = _copy(ckpt, tmp_path / "mismatch")
    (mismatch / INFO_FILE).write_text(json.dumps({**info, "classes": ["a", "b"]}))
    with pytest.raises(ModelError, match="does not match small-cnn with 2 classes"):
        load_checkpoint(mismatch)

    unknown = _copy(ckpt, tmp_path / "unknown-backbone")
    (unknown / INFO_FILE).write_text(json.dumps({**info, "backbone": "resnet9000"}))
    with pytest.raises(ModelError, match="unknown backbone 'resnet9000'"):
        load_checkpoint(unknown)


def test_cli_export_reports_corrupt_checkpoint(tmp_path, capsys):
    from drsynth.cli import main as cli

    (tmp_path / "ck").mkdir()
    with pytest.raises(SystemExit) as e:
        cli(["export", "--checkpoint", str(tmp_path / "ck"), "--out", str(tmp_path / "m.onnx")])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "model.json is missing" in err and err.count("\n") <= 3
    assert not (tmp_path / "m.onnx").exists()


# ------------------------------------------------------------------------ mobilenet_v2 (issue 10, item 1)


@pytest.mark.slow
def test_mobilenet_v2_train_export_evaluate(shared, tmp_path):
    """The shared ImageNet MobileNetV2 through training (frozen), ONNX export and drsynth.evaluate."""
    from train_fixtures import shapes_folder

    from drsynth.evaluate import evaluate
    from drsynth.train import TrainConfig, main

    weights = shared("weights", "mobilenet_v2_imagenet.pth")
    data = shapes_folder(tmp_path / "data", 16, seed=3, classes=("circle", "square"))
    ckpt = tmp_path / "mnv2"
    main(
        TrainConfig(
            data=str(data),
            val_fraction=0.25,
            out=str(ckpt),
            backbone="mobilenet_v2",
            weights=str(weights),
            image_size=64,
            epochs=2,
            batch_size=8,
            workers=0,
            progress=False,
        )
    )
    _, info = load_checkpoint(ckpt)
    assert info.backbone == "mobilenet_v2" and info.frozen and info.weights == str(weights)
    result = export_checkpoint(ckpt, tmp_path / "mnv2.onnx")
    assert result.max_abs_diff <= 1e-4
    res = evaluate(
        tmp_path / "mnv2.onnx", {"shapes": str(data)}, out_dir=tmp_path / "eval", device="cpu", threads=1, progress=False
    )
    assert res.backbone == "mobilenet_v2" and res.domains["shapes"].n == 32
    # frozen ImageNet features separate red circles from green squares after two epochs of the head
    assert res.domains["shapes"].accuracy >= 0.75
