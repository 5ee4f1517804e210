"""The four studies end to end on tiny data: render, package, train, export, evaluate, collect, report.

One run folder is shared by the tests, in order, as `drsynth study all` shares it: later studies reuse the
datasets and models earlier ones built. Tiny scenarios (3 breeds per class, 48 px, no MSAA) keep it fast.
"""

from __future__ import annotations

import json

import pytest
import yaml
from eval_fixtures import color_folder

from drsynth.studies import StudyConfig, StudyResults, run_study

pytestmark = pytest.mark.slow

REPO_SCENARIOS = __import__("pathlib").Path(__file__).resolve().parents[1] / "assets" / "scenarios"


def tiny_scenario(src: str, dst, breeds: int):
    from drsynth.subjects.registry import generator_module

    data = yaml.safe_load((REPO_SCENARIOS / src).read_text())
    for cs in data["classes"].values():
        cs["breeds"] = generator_module(cs["procedural"]).preset_names()[:breeds]
        cs["blends"] = 0
    data["render"] = {"shadow_map_size": 256, "msaa_samples": 1, "jpeg_quality": 85}
    dst.write_text(yaml.safe_dump(data))
    return str(dst)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("studies")
    real = color_folder(tmp / "real", {"cat": [0] * 10, "dog": [1] * 10, "bicycle": [2] * 6}, size=48)
    cfg = StudyConfig.quick(
        scenario=tiny_scenario("cats_dogs.yaml", tmp / "cd.yaml", 3),
        scaling_scenario=tiny_scenario("cats_dogs_bikes_cars.yaml", tmp / "cdbc.yaml", 2),
        images_per_class=8, test_images_per_class=3, render_size=48, input_size=32, epochs=1,
        architecture_variants=["dropout-0.3", "unfrozen"], ablations=["control", "default-pose"])
    return tmp / "run", cfg, str(real)


def test_transfer_from_the_cli(run, capsys):
    from drsynth.cli import main

    run_dir, cfg, real = run
    args = ["study", "transfer", "--out", str(run_dir), "--preset", "quick", "--real", real,
            "--scenario", cfg.scenario, "--images-per-class", "8", "--test-images-per-class", "3",
            "--render-size", "48", "--input-size", "32", "--epochs", "1", "--explain-k", "2", "--no-report"]
    main(args)
    out = capsys.readouterr().out
    assert "transfer on 'real'" in out
    res = StudyResults.read(run_dir / "studies" / "transfer" / "results.json")
    got = {(c.group, c.domain) for c in res.conditions}
    assert got == {(g, d) for g in ("real", "synthetic") for d in ("real", "synthetic", "toon", "ood-mean")}
    info = json.loads((run_dir / "run.json").read_text())
    assert info["domains"]["real"]["source"] == "user"
    assert info["domains"]["toon"]["source"] == "rendered" and "toon style" in info["domains"]["toon"]["description"]
    toon = json.loads((run_dir / "datasets" / "test-toon" / "dataset.json").read_text())
    assert toon["scenario"]["style"] == "toon"
    # the synthetic test domain holds only breeds the training set never saw
    from drsynth.data import open_dataset

    def breeds(uri):
        return {s["meta"]["subject"]["breed"] for s in open_dataset(uri)}

    train_breeds = breeds(run_dir / "datasets" / "synth-control")
    test_breeds = breeds(run_dir / "datasets" / "test-synthetic")
    assert test_breeds and train_breeds and not (test_breeds & train_breeds)
    # the real photos were split: the test part is evaluated, the training part trained the real model
    real_model = json.loads((run_dir / "models" / "real-train.dropout-0.3.s0" / "checkpoint" / "model.json")
                            .read_text())
    assert real_model["classes"] == ["cat", "dog"]  # the 2-class scenario's classes, not the folder's 3
    # Fig. 5: heatmaps of both models on every domain
    for model in ("real-train.dropout-0.3.s0", "synth-control.dropout-0.3.s0"):
        index = json.loads((run_dir / "explain" / model / "index.json").read_text())
        assert index["methods"] == ["gradcam", "occlusion"] and set(index["domains"]) == {"real", "synthetic", "toon"}
        assert (run_dir / "explain" / model / "toon.png").is_file()


def test_architecture_reuses_models(run):
    run_dir, cfg, real = run
    shared = run_dir / "models" / "synth-control.dropout-0.3.s0" / "model.onnx"
    before = shared.stat().st_mtime_ns
    cfg = cfg.model_copy(update={"architecture_variants": ["dropout-0.3", "unfrozen"]})
    res = run_study("architecture", cfg, run_dir, real=real, progress=False)
    assert shared.stat().st_mtime_ns == before
    assert {(c.group, c.name) for c in res.conditions} == {
        (g, v) for g in ("real", "synthetic") for v in ("dropout-0.3", "unfrozen")}
    unfrozen = json.loads((run_dir / "models" / "synth-control.unfrozen.s0" / "checkpoint" / "model.json")
                          .read_text())
    assert unfrozen["frozen"] is False


def test_ablation_without_real_photos(run):
    run_dir, cfg, _ = run
    res = run_study("ablation", cfg, run_dir, progress=False)
    assert [c.name for c in res.conditions] == ["control", "default-pose"]
    # run.json still lists the real domain from earlier studies, but this study was not given photos
    assert res.primary_domain == "synthetic" and any("no real photos" in n for n in res.notes)
    ds = json.loads((run_dir / "datasets" / "synth-default-pose" / "dataset.json").read_text())
    assert ds["scenario"]["randomizers"]["pose"]["enabled"] is False


def test_scaling(run):
    run_dir, cfg, real = run
    res = run_study("scaling", cfg, run_dir, real=real, progress=False)
    acc = {c.name: c.mean for c in res.conditions if c.metric == "accuracy"}
    aar = {c.name: c.mean for c in res.conditions if c.metric == "aar"}
    assert set(acc) == {"2-classes", "3-classes", "4-classes"}
    for name, n in (("2-classes", 2), ("3-classes", 3), ("4-classes", 4)):
        assert aar[name] == pytest.approx(acc[name] - 1 / n)
    m4 = json.loads((run_dir / "eval" / "synth4.4cls.s0" / "metrics.json").read_text())
    assert m4["classes"] == ["cat", "dog", "bicycle", "car"]


def test_report_of_the_run(run):
    from drsynth.report import build_report

    run_dir, _, _ = run
    html_path, md_path = build_report(run_dir)
    html = html_path.read_text()
    for fig in ("Fig. 3", "Fig. 4", "Fig. 7", "Fig. 8"):
        assert fig in html
    assert "curve" in html  # training curves from drsynth.train
    assert "test-toon" in html  # sample sheets of the datasets
    assert "Explainability" in html
    assert "Not in this run" not in html
