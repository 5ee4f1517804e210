"""drsynth.evaluate on a tiny ONNX model whose answers are known exactly."""

from __future__ import annotations

import json

import numpy as np
import pytest
from eval_fixtures import CHANNEL_RGB, color_folder, color_image, color_onnx

from drsynth.errors import ConfigError, DatasetError, ModelError
from drsynth.evaluate import (
    evaluate,
    evaluate_samples,
    load_model,
    metrics_from_confusion,
    parse_domain,
    parse_domains,
)


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    return color_onnx(tmp_path_factory.mktemp("m") / "model.onnx", ("cat", "dog"))


def test_metrics_from_confusion_numbers():
    cm = np.array([[8, 2, 0], [1, 9, 0], [0, 0, 0]])
    m = metrics_from_confusion(cm, ["cat", "dog", "car"], uri="x")
    assert m.n == 20
    assert m.accuracy == pytest.approx(17 / 20)
    assert m.aar == pytest.approx(17 / 20 - 1 / 3)
    assert m.per_class_accuracy == {"cat": 0.8, "dog": 0.9}
    assert m.counts == {"cat": 10, "dog": 10}
    assert m.classes == ["cat", "dog"]


def test_evaluate_samples_in_memory(model_path):
    clf = load_model(model_path, device="cpu")
    assert clf.providers == ["CPUExecutionProvider"]
    # cat = red (channel 0), dog = green (channel 1); 3 cats right, 1 cat looks green, 2 dogs right
    samples = [(color_image(CHANNEL_RGB[0], seed=i), "cat") for i in range(3)]
    samples += [(color_image(CHANNEL_RGB[1]), "cat")]
    samples += [(color_image(CHANNEL_RGB[1], seed=i), "dog") for i in range(2)]
    m = evaluate_samples(clf, samples, batch_size=4)
    assert m.confusion == [[3, 1], [0, 2]]
    assert m.accuracy == pytest.approx(5 / 6)
    assert m.aar == pytest.approx(5 / 6 - 0.5)
    assert m.per_class_accuracy["cat"] == pytest.approx(0.75)


def test_parse_domain():
    assert parse_domain("real=/a/b=c") == ("real", "/a/b=c")
    assert parse_domains(["a=x", "b=s3://b/p"]) == {"a": "x", "b": "s3://b/p"}
    for bad in ("real", "=x", "real=", "a b=x"):
        with pytest.raises(ConfigError):
            parse_domain(bad)
    with pytest.raises(ConfigError, match="twice"):
        parse_domains(["a=x", "a=y"])


def test_class_count_mismatch_is_a_model_error(tmp_path):
    broken = color_onnx(tmp_path / "broken.onnx", ("cat", "dog"), out_width=3)
    with pytest.raises(ModelError, match="3 columns but the metadata lists 2 classes"):
        load_model(broken)


def test_model_without_metadata(tmp_path):
    import onnx

    p = color_onnx(tmp_path / "m.onnx")
    m = onnx.load(str(p))
    del m.metadata_props[:]
    onnx.save(m, str(p))
    with pytest.raises(ModelError, match="lacks drsynth metadata"):
        load_model(p)


def test_cuda_request_without_cuda(model_path):
    import onnxruntime as ort

    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this onnxruntime has CUDA")
    with pytest.raises(ConfigError, match="no CUDA provider"):
        load_model(model_path, device="cuda")


def test_unknown_class_in_samples(model_path):
    clf = load_model(model_path)
    with pytest.raises(DatasetError, match=r"\['horse'\] are not among the model's classes"):
        evaluate_samples(clf, [(color_image(CHANNEL_RGB[0]), "horse")])


def test_empty_samples(model_path):
    with pytest.raises(DatasetError, match="no images"):
        evaluate_samples(load_model(model_path), [])


# --- folders through drsynth.data.open_domain ------------------------------------------------------------


def test_evaluate_folders_writes_json_and_png(model_path, tmp_path):
    real = color_folder(tmp_path / "real", {"cat": [0, 0, 0, 1], "dog": [1, 1, 1, 1]})
    toon = color_folder(tmp_path / "toon", {"cat": [1, 1], "dog": [1, 1]})
    out = tmp_path / "eval"
    res = evaluate(model_path, {"real": str(real), "toon": str(toon)}, out_dir=out, train_domains=["real"],
                   progress=False, batch_size=3)
    assert res.domains["real"].accuracy == pytest.approx(7 / 8)
    assert res.domains["real"].confusion == [[3, 1], [0, 4]]
    assert res.domains["toon"].accuracy == pytest.approx(0.5)
    assert res.domains["toon"].per_class_accuracy == {"cat": 0.0, "dog": 1.0}
    assert res.mean_accuracy == pytest.approx((7 / 8 + 0.5) / 2)
    assert res.mean_out_of_domain_accuracy == pytest.approx(0.5)
    data = json.loads((out / "metrics.json").read_text())
    assert data["domains"]["real"]["aar"] == pytest.approx(7 / 8 - 0.5)
    assert data["providers"] == ["CPUExecutionProvider"]
    for name in ("real", "toon"):
        png = out / f"confusion-{name}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_domain_subset_of_model_classes(model_path, tmp_path):
    cats_only = color_folder(tmp_path / "cats", {"cat": [0, 0]})
    res = evaluate(model_path, {"cats": str(cats_only)}, progress=False)
    assert res.domains["cats"].accuracy == 1.0
    assert res.domains["cats"].classes == ["cat"]
    assert res.domains["cats"].confusion == [[2, 0], [0, 0]]


def test_unknown_domain_class_is_rejected_or_skipped(model_path, tmp_path):
    d = color_folder(tmp_path / "d", {"cat": [0], "dog": [1], "horse": [2]})
    with pytest.raises(DatasetError, match=r"\['horse'\].*--only-model-classes"):
        evaluate(model_path, {"d": str(d)}, progress=False)
    res = evaluate(model_path, {"d": str(d)}, progress=False, only_model_classes=True)
    assert res.domains["d"].n == 2
    assert res.domains["d"].skipped_classes == ["horse"]
    d2 = color_folder(tmp_path / "d2", {"horse": [2]})
    with pytest.raises(DatasetError, match="none of its classes"):
        evaluate(model_path, {"d2": str(d2)}, progress=False, only_model_classes=True)


def test_empty_domain_folder(model_path, tmp_path):
    (tmp_path / "empty" / "cat").mkdir(parents=True)
    with pytest.raises(DatasetError):
        evaluate(model_path, {"e": str(tmp_path / "empty")}, progress=False)


def test_evaluate_packaged_dataset_uri(model_path, tmp_path):
    from drsynth.import_images import import_images

    src = color_folder(tmp_path / "src", {"cat": [0, 0, 1], "dog": [1, 1]})
    uri = (tmp_path / "ds").as_uri()
    import_images(src, uri, progress=False, workers=1)
    res = evaluate(model_path, {"synth": uri}, progress=False)
    assert res.domains["synth"].n == 5
    assert res.domains["synth"].confusion == [[2, 1], [0, 2]]


def test_cli_evaluate(model_path, tmp_path, capsys):
    from drsynth.cli import main

    real = color_folder(tmp_path / "real", {"cat": [0, 0], "dog": [1, 0]})
    main(["evaluate", "--model", str(model_path), "--domain", f"real={real}", "--out", str(tmp_path / "o")])
    assert "accuracy 75.0%" in capsys.readouterr().out
    assert (tmp_path / "o" / "metrics.json").is_file()
    bad = color_folder(tmp_path / "bad", {"cat": [0], "horse": [2]})
    with pytest.raises(SystemExit) as e:
        main(["evaluate", "--model", str(model_path), "--domain", f"bad={bad}", "--out", str(tmp_path / "o2")])
    assert e.value.code == 2
    assert "horse" in capsys.readouterr().err
    assert not (tmp_path / "o2" / "metrics.json").exists()


@pytest.mark.slow
def test_trained_and_exported_model_end_to_end(tmp_path):
    """drsynth.train -> drsynth.export -> evaluate: a small CNN learns red-vs-green and evaluate sees it."""
    from drsynth.export import export_checkpoint
    from drsynth.train import TrainConfig, main

    train = color_folder(tmp_path / "train", {"cat": [0] * 24, "dog": [1] * 24}, size=32)
    test = color_folder(tmp_path / "test", {"cat": [0] * 6, "dog": [1] * 6}, size=32)
    main(TrainConfig(data=str(train), out=str(tmp_path / "ck"), backbone="small-cnn", weights="none",
                     epochs=3, batch_size=8, image_size=32, workers=0, progress=False, val_fraction=0.25))
    export_checkpoint(tmp_path / "ck", tmp_path / "model.onnx")
    res = evaluate(tmp_path / "model.onnx", {"test": str(test)}, progress=False)
    assert res.backbone == "small-cnn"
    assert res.domains["test"].accuracy >= 0.9
