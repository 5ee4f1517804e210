"""Training: augmentation, the feature cache, the loop end to end on generated data, and the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from pydantic import ValidationError
from train_fixtures import shapes_dataset, shapes_folder

from drsynth.augment import AugmentConfig, eval_transform, seeded_view, train_transform
from drsynth.checkpoint import load_checkpoint
from drsynth.errors import ConfigError, DatasetError
from drsynth.features import FeatureStore
from drsynth.models import build_model
from drsynth.preprocess import Preprocess, preprocess_batch, preprocess_image
from drsynth.train import Precision, TrainConfig, evaluate, main, train_one_epoch


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """Tiny models on shared CI cores: extra torch threads only spin; restore the setting afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _photo(w: int = 90, h: int = 61, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))


# ------------------------------------------------------------------------------------------ augmentation


def test_eval_transform_is_exactly_the_shared_preprocessing():
    pp = Preprocess.for_size(48)
    img = _photo()
    x = eval_transform(pp)(img)
    assert x.dtype == torch.float32 and x.shape == (3, 48, 48)
    assert np.array_equal(x.numpy(), preprocess_image(img, pp))
    assert np.array_equal(x.numpy(), preprocess_batch([img], pp)[0])  # what ONNX evaluation and serving use


def test_train_transform_is_seeded_per_key_and_view_and_leaves_global_rng_alone():
    pp = Preprocess.for_size(32)
    t = train_transform(pp, AugmentConfig())
    img = _photo()
    torch.manual_seed(123)
    before = torch.get_rng_state()
    a = seeded_view(t, img, seed=0, key="000000001", view=0)
    assert torch.equal(torch.get_rng_state(), before)
    assert a.shape == (3, 32, 32) and a.dtype == torch.float32
    assert torch.equal(a, seeded_view(t, img, seed=0, key="000000001", view=0))
    others = [
        seeded_view(t, img, seed=0, key="000000001", view=1),
        seeded_view(t, img, seed=0, key="000000002", view=0),
        seeded_view(t, img, seed=1, key="000000001", view=0),
    ]
    assert all(not torch.equal(a, o) for o in others)
    # the augmentation really varies the image, and normalisation matches the preprocessing's range
    assert not torch.equal(a, eval_transform(pp)(img))
    lo = (0 - np.asarray(pp.mean)) / np.asarray(pp.std)
    hi = (1 - np.asarray(pp.mean)) / np.asarray(pp.std)
    assert (a.amin((1, 2)).numpy() >= lo - 1e-5).all() and (a.amax((1, 2)).numpy() <= hi + 1e-5).all()


def test_rotation_leaves_no_black_corners():
    """Rotation happens on a slightly larger crop that is then centre-cropped: a flat image stays flat."""
    for size in (32, 224):
        pp = Preprocess.for_size(size)
        t = train_transform(pp, AugmentConfig(brightness=0, rotation_deg=10))
        flat = Image.new("RGB", (300, 200), (200, 200, 200))
        for view in range(10):
            x = seeded_view(t, flat, seed=0, key="k", view=view)
            assert torch.equal(x, x[:, :1, :1].expand_as(x)), (size, view)


def test_augmentation_switches_and_validation():
    pp = Preprocess.for_size(32)
    img = _photo()
    off = train_transform(pp, AugmentConfig(enabled=False))
    assert torch.equal(off(img), eval_transform(pp)(img))
    # only a horizontal flip (p=1): exactly the mirrored crop of the full image
    flip_only = AugmentConfig(
        crop_scale=(1.0, 1.0), crop_ratio=(90 / 61, 90 / 61), hflip_p=1, rotation_deg=0, brightness=0
    )
    x = train_transform(pp, flip_only)(img)
    y = train_transform(pp, flip_only.model_copy(update={"hflip_p": 0}))(img)
    assert torch.allclose(x, y.flip(-1))
    with pytest.raises(ValidationError, match="crop_scale"):
        AugmentConfig(crop_scale=(0.8, 0.5))
    with pytest.raises(ValidationError, match="Extra inputs"):
        AugmentConfig(zoom=0.2)


# ------------------------------------------------------------------------------------------ feature cache


def test_feature_cache_records_exact_features_and_later_epochs_skip_the_backbone():
    torch.manual_seed(0)
    model = build_model("small-cnn", 3, weights="none", frozen=True)
    calls = []
    model.backbone.register_forward_hook(lambda *_: calls.append(1))
    xs, ys = torch.randn(20, 3, 32, 32), torch.randint(0, 3, (20,))
    batches = [(xs[i : i + 8], ys[i : i + 8]) for i in range(0, 20, 8)]
    opt = torch.optim.Adam(model.head.parameters(), lr=1e-3)
    store = FeatureStore(dtype=torch.float32)
    cpu = torch.device("cpu")
    prec = Precision("cpu", None)

    recorder = store.recorder("train/view-0")
    stats = train_one_epoch(
        model, torch.nn.CrossEntropyLoss(), opt, batches, device=cpu, precision=prec, record=recorder
    )
    recorder.finish()
    assert stats["n"] == 20 and len(calls) == 3
    feats, labels = store.get("train/view-0")
    with torch.no_grad():
        assert torch.equal(feats, model.eval().backbone(xs))  # frozen backbone: the cache is exact
    assert torch.equal(labels, ys)

    calls.clear()
    gen = torch.Generator().manual_seed(0)
    seen = torch.cat([y for _, y in store.batches("train/view-0", 8, generator=gen)])
    assert sorted(seen.tolist()) == sorted(ys.tolist())
    stats = train_one_epoch(
        model,
        torch.nn.CrossEntropyLoss(),
        opt,
        store.batches("train/view-0", 8, generator=gen),
        device=cpu,
        precision=prec,
        features_in=True,
    )
    assert stats["n"] == 20 and calls == []  # head only
    res = evaluate(
        model, store.batches("train/view-0", 64), device=cpu, precision=prec, classes="abc", features_in=True
    )
    res_images = evaluate(model, batches, device=cpu, precision=prec, classes="abc")
    assert res["accuracy"] == pytest.approx(res_images["accuracy"])
    assert res["n"] == 20 and sum(res["per_class_accuracy"].values()) >= 0


# ------------------------------------------------------------------------------------------- end to end


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("shapes")
    return {
        "train": shapes_dataset(tmp, 40, seed=0),
        "other": str(shapes_folder(tmp / "other-folder", 10, seed=1)),
        "tmp": tmp,
    }


@pytest.mark.slow
def test_small_cnn_trains_clearly_above_chance_and_reloads_identically(shapes, tmp_path):
    out = tmp_path / "ckpt"
    cfg = TrainConfig(
        data=shapes["train"],
        out=str(out),
        evals={"other": shapes["other"]},
        backbone="small-cnn",
        image_size=32,
        epochs=4,
        batch_size=16,
        val_fraction=0.25,
        workers=0,
        progress=False,
        dataset_cache=str(tmp_path / "cache"),
    )
    assert cfg.weights == "none" and cfg.frozen is False  # small-cnn defaults: trained from scratch
    result = main(cfg)
    assert result.classes == ["circle", "square", "triangle"]
    assert result.best_val_accuracy >= 0.8  # chance is 1/3
    hist = json.loads((out / "history.json").read_text())
    assert [r["epoch"] for r in hist["epochs"]] == [1, 2, 3, 4]
    best = hist["epochs"][result.best_epoch - 1]
    assert (
        best["val"]["accuracy"]
        == result.best_val_accuracy
        == max(r["val"]["accuracy"] for r in hist["epochs"])
    )
    ties = [r for r in hist["epochs"] if r["val"]["accuracy"] == result.best_val_accuracy]
    assert best["val"]["loss"] == min(r["val"]["loss"] for r in ties)  # on a tie, the lower validation loss
    assert best["eval"]["other"]["accuracy"] >= 0.8 and best["eval"]["other"]["n"] == 30
    assert all(r["train"]["images_per_s"] > 0 for r in hist["epochs"])
    assert (out / "curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    model, info = load_checkpoint(out)
    assert info.classes == result.classes and info.backbone == "small-cnn" and info.frozen is False
    assert info.metrics["epoch"] == result.best_epoch
    assert info.train_config["data"] == shapes["train"]
    assert info.preprocess == Preprocess.for_size(32)
    # the reloaded checkpoint reproduces the validation accuracy recorded for the kept epoch
    from drsynth.data import open_dataset

    val = open_dataset(shapes["train"], split="val", val_fraction=0.25, cache_dir=tmp_path / "cache")
    images = [s["image"] for s in val]
    labels = torch.tensor([s["label"] for s in val])
    with torch.no_grad():
        logits = model(torch.from_numpy(preprocess_batch(images, info.preprocess)))
    assert (logits.argmax(1) == labels).float().mean().item() == pytest.approx(result.best_val_accuracy)
    model2, _ = load_checkpoint(out)
    x = torch.from_numpy(preprocess_batch(images[:4], info.preprocess))
    with torch.no_grad():
        assert torch.equal(model(x), model2(x))


@pytest.mark.slow
def test_frozen_backbone_uses_the_feature_cache(shapes, tmp_path):
    out = tmp_path / "frozen"
    cfg = TrainConfig(
        data=shapes["train"],
        val=shapes["other"],
        out=str(out),
        backbone="small-cnn",
        weights="none",
        frozen=True,
        image_size=32,
        epochs=3,
        cache_views=1,
        workers=0,
        progress=False,
        dataset_cache=str(tmp_path / "cache"),
    )
    main(cfg)
    hist = json.loads((out / "history.json").read_text())
    assert [r["train"]["cached"] for r in hist["epochs"]] == [False, True, True]
    assert [r["train"]["n"] for r in hist["epochs"]] == [120, 120, 120]  # --val given: all of --data trains
    assert hist["feature_cache_bytes"] > 0
    assert hist["epochs"][0]["val"]["n"] == 30


def test_config_defaults_and_validation():
    cfg = TrainConfig(data="d", out="o")
    assert (cfg.backbone, cfg.weights, cfg.frozen, cfg.epochs, cfg.lr, cfg.dropout, cfg.hidden) == (
        "vgg16",
        "imagenet",
        True,
        10,
        1e-3,
        0.3,
        128,
    )
    assert TrainConfig(data="d", out="o", weights="none").frozen is False
    with pytest.raises(ValidationError, match="unknown backbone"):
        TrainConfig(data="d", out="o", backbone="resnet9000")
    with pytest.raises(ValidationError, match="Extra inputs"):
        TrainConfig(data="d", out="o", learning_rate=0.1)
    with pytest.raises(ValidationError, match="reserved"):
        TrainConfig(data="d", out="o", evals={"val": "x"})


def test_bad_inputs_fail_before_training(shapes, tmp_path):
    with pytest.raises(DatasetError, match="no dataset at|not a folder"):
        main(
            TrainConfig(
                data=str(tmp_path / "nothing"), out=str(tmp_path / "o"), backbone="small-cnn", progress=False
            )
        )
    (tmp_path / "exists").mkdir()
    (tmp_path / "exists" / "f").write_text("x")
    with pytest.raises(ConfigError, match="already exists.*--overwrite"):
        main(
            TrainConfig(
                data=shapes["train"], out=str(tmp_path / "exists"), backbone="small-cnn", progress=False
            )
        )
    with pytest.raises(DatasetError, match="unknown: \\['dog'\\]"):
        main(
            TrainConfig(
                data=shapes["train"],
                out=str(tmp_path / "o2"),
                backbone="small-cnn",
                classes=["dog"],
                progress=False,
            )
        )
    assert not (tmp_path / "o").exists() and not (tmp_path / "o2").exists()


# ------------------------------------------------------------------------------------------------- CLI


@pytest.mark.slow
def test_cli_train_then_export(shapes, tmp_path, capsys):
    from drsynth.cli import main as cli

    out = tmp_path / "cli-ckpt"
    args = ["train", "--data", shapes["train"], "--out", str(out), "--backbone", "small-cnn", "--epochs", "2"]
    args += ["--image-size", "32", "--workers", "0", "--eval", f"other={shapes['other']}", "--no-progress"]
    args += ["--classes", "square,circle"]
    cli(args)
    assert "best epoch" in capsys.readouterr().out
    _, info = load_checkpoint(out)
    assert info.classes == ["square", "circle"]

    with pytest.raises(SystemExit) as e:
        cli(args)  # again, without --overwrite
    assert e.value.code == 2
    assert "already exists" in capsys.readouterr().err

    cli(["export", "--checkpoint", str(out), "--out", str(tmp_path / "m.onnx")])
    printed = capsys.readouterr().out
    assert "max abs difference" in printed and (tmp_path / "m.onnx").is_file()


def test_cli_rejects_bad_settings_with_one_line(tmp_path, capsys):
    from drsynth.cli import main as cli

    with pytest.raises(SystemExit) as e:
        cli(["train", "--data", str(tmp_path), "--out", str(tmp_path / "o"), "--backbone", "nope"])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "unknown backbone 'nope'" in err and "small-cnn" in err
    with pytest.raises(SystemExit) as e:
        cli(["train", "--data", str(tmp_path), "--out", str(tmp_path / "o"), "--eval", "no-equals-sign"])
    assert e.value.code == 2
    assert "NAME=URI" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        cli(["train", "--data", str(tmp_path), "--out", str(tmp_path / "o"), "--no-such-flag"])
    assert e.value.code == 2
    assert "No such option: --no-such-flag" in capsys.readouterr().err


def test_photo_degradations_blur_noise_and_grey():
    """Blur, pixel noise and greying each do what they say, alone and at probability 1."""
    pp = Preprocess.for_size(32)
    img = _photo()
    plain = AugmentConfig(
        crop_scale=(1.0, 1.0), crop_ratio=(90 / 61, 90 / 61), hflip_p=0, rotation_deg=0, brightness=0
    )
    x = train_transform(pp, plain)(img)
    blurred = seeded_view(
        train_transform(pp, plain.model_copy(update={"blur_p": 1.0, "blur_sigma": (1.5, 1.5)})),
        img,
        seed=0,
        key="k",
        view=0,
    )
    # a blur lowers the local contrast: neighbouring pixels differ less
    tv = lambda t: (t[:, 1:, :] - t[:, :-1, :]).abs().mean() + (t[:, :, 1:] - t[:, :, :-1]).abs().mean()  # noqa: E731
    assert tv(blurred) < 0.8 * tv(x)
    noisy = seeded_view(
        train_transform(pp, plain.model_copy(update={"noise_p": 1.0, "noise_std": 0.05})),
        img,
        seed=0,
        key="k",
        view=0,
    )
    assert tv(noisy) > tv(x) and not torch.equal(noisy, x)
    grey = train_transform(pp, plain.model_copy(update={"grayscale_p": 1.0}))(img)
    std = torch.tensor(pp.std).view(3, 1, 1)
    mean = torch.tensor(pp.mean).view(3, 1, 1)
    rgb = grey * std + mean  # undo the normalisation: the three channels are equal
    assert torch.allclose(rgb[0], rgb[1], atol=1e-5) and torch.allclose(rgb[1], rgb[2], atol=1e-5)
    with pytest.raises(ValidationError, match="blur_sigma"):
        AugmentConfig(blur_sigma=(2.0, 1.0))
