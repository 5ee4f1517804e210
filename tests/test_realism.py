"""`drsynth realism`: ImageNet groups, scoring, the report, and the command end to end."""

from __future__ import annotations

import json
import urllib.error

import numpy as np
import pytest
import torch
from conftest import REPO, shared_path
from PIL import Image

from drsynth import realism as rl
from drsynth.errors import ConfigError, ModelError


def test_imagenet_groups():
    assert rl.imagenet_group("cat") == (281, 282, 283, 284, 285)
    assert rl.imagenet_group("dog")[0] == 151 and rl.imagenet_group("dog")[-1] == 268
    assert rl.imagenet_group("Bicycle") == (444, 671)
    assert 817 in rl.imagenet_group("cars")
    with pytest.raises(ConfigError, match="supported classes"):
        rl.imagenet_group("giraffe")
    labels = rl.imagenet_labels()
    assert len(labels) == 1000 and labels[281] == "tabby" and labels[444] == "bicycle-built-for-two"


def _meta(i, cls, breed):
    return {"index": i, "class": cls, "subject": {"id": f"{cls}/procedural/{breed}", "breed": breed}}


def test_score_summary_and_least_recognized():
    probs = np.full((4, 1000), 1e-4, np.float32)
    probs[0, 281] = 0.9  # cat -> tabby: recognised
    probs[1, 409] = 0.9  # cat -> analog clock: missed
    probs[2, 207] = 0.5  # dog -> golden retriever
    probs[3, 285] = 0.6  # dog -> Egyptian cat: missed
    metas = [_meta(0, "cat", "a"), _meta(1, "cat", "b"), _meta(2, "dog", "c"), _meta(3, "dog", "c")]
    scored = rl.score(probs, metas)
    assert [s.recognized for s in scored] == [True, False, True, False]
    assert scored[1].top1_label == "analog clock"
    summary = rl.summarize(scored)
    assert summary["count"] == 4 and summary["fraction"] == 0.5
    assert summary["classes"]["cat"]["fraction"] == 0.5
    assert summary["classes"]["dog"]["breeds"]["c"]["fraction"] == 0.5
    assert summary["classes"]["cat"]["top_misses"] == [("analog clock", 1)]
    worst = rl.least_recognized(summary, k=2)
    assert worst[0] == ("cat", "b", 0.0)
    images = {i: np.full((32, 32, 3), 40 * i, np.uint8) for i in range(4)}
    sheet = rl.contact_sheet(images, scored, worst, per_row=3, tile=32)
    assert sheet.size[0] == 96 and sheet.size[1] > 64


def test_report_files(tmp_path):
    probs = np.full((2, 1000), 1e-4, np.float32)
    probs[0, 282] = 0.8
    probs[1, 3] = 0.8
    scored = rl.score(probs, [_meta(0, "cat", "x"), _meta(1, "cat", "y")])
    result = rl.RealismResult(
        rl.summarize(scored), scored, {0: np.zeros((8, 8, 3), np.uint8), 1: np.zeros((8, 8, 3), np.uint8)}
    )
    paths = rl.write_report(result, tmp_path / "r", scenario_name="s", weights="w.pth")
    data = json.loads(paths["json"].read_text())
    assert data["classes"]["cat"]["fraction"] == 0.5 and len(data["images"]) == 2
    assert data["least_recognized"][0]["breed"] == "y"
    assert Image.open(paths["sheet"]).size[0] > 0
    assert "least_recognized.png" in paths["html"].read_text()


def test_bad_weights_are_model_errors(tmp_path):
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"not a state dict")
    with pytest.raises(ModelError, match="cannot read weights"):
        rl.ImageNetClassifier(bad).load()
    wrong = tmp_path / "wrong.pth"
    torch.save({"conv.weight": torch.zeros(3)}, wrong)
    with pytest.raises(ModelError, match="mobilenet_v2"):
        rl.ImageNetClassifier(wrong).load()


def test_offline_without_weights_says_how_to_fix(monkeypatch):
    from torchvision.models import MobileNet_V2_Weights

    def offline(self, *a, **k):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(type(MobileNet_V2_Weights.IMAGENET1K_V1), "get_state_dict", offline)
    with pytest.raises(ModelError, match="--weights PATH"):
        rl.ImageNetClassifier(None).load()


def test_classifier_recognises_real_photos():
    weights = shared_path("weights", "mobilenet_v2_imagenet.pth")
    cats = sorted(shared_path("data", "real", "cat").glob("*.jpg"))[:6]
    clf = rl.ImageNetClassifier(weights).load()
    probs = clf.probabilities([np.asarray(Image.open(p).convert("RGB")) for p in cats])
    assert probs.shape == (6, 1000) and np.allclose(probs.sum(1), 1.0, atol=1e-4)
    scored = rl.score(probs, [_meta(i, "cat", "photo") for i in range(6)])
    assert sum(s.recognized for s in scored) >= 4


@pytest.mark.slow
def test_realism_command_end_to_end(tmp_path):
    from drsynth.cli import main

    weights = shared_path("weights", "mobilenet_v2_imagenet.pth")
    scenario = tmp_path / "s.yaml"
    scenario.write_text(
        "name: tiny\nseed: 3\nimage_size: 96\n"
        "classes:\n  cat: {procedural: cat, breeds: [siamese]}\n  dog: {procedural: dog, breeds: [beagle]}\n"
        "randomizers:\n  occluders: {enabled: false}\nrender: {msaa_samples: 1, shadow_map_size: 256}\n"
    )
    out = tmp_path / "rep"
    try:
        main(
            [
                "realism",
                "--scenario",
                str(scenario),
                "--count",
                "4",
                "--weights",
                str(weights),
                "--out",
                str(out),
            ]
        )
    except SystemExit as e:
        assert e.code in (0, None)
    data = json.loads((out / "realism.json").read_text())
    assert data["count"] == 4 and set(data["classes"]) == {"cat", "dog"}
    assert set(data["classes"]["cat"]["breeds"]) == {"siamese"}
    assert (out / "least_recognized.png").stat().st_size > 0


def test_realism_command_rejects_classes_without_group(tmp_path):
    from drsynth.cli import main

    scenario = tmp_path / "s.yaml"
    scenario.write_text("name: t\nclasses:\n  giraffe: {procedural: dog}\n")
    with pytest.raises(SystemExit) as e:
        main(["realism", "--scenario", str(scenario), "--count", "2", "--weights", "x.pth"])
    assert e.value.code == 2


def test_default_scenario_exists():
    assert (REPO / "assets" / "scenarios" / "cats_dogs.yaml").is_file()
