"""drsynth report: a self-contained HTML page and a Markdown twin built from a run folder."""

from __future__ import annotations

import json
import re

import pytest
from eval_fixtures import color_onnx, mix, write_eval
from PIL import Image

from drsynth.errors import ConfigError
from drsynth.evaluate import load_model
from drsynth.report import PAPER, build_report, paper_lookup
from drsynth.studies import STUDIES, StudyConfig, collect_study, plan_study


def make_run(run, tmp_path):
    """A run folder with every part: run.json, four studies, evaluations, a model, explain grids, samples."""
    clf = {n: load_model(color_onnx(tmp_path / f"m{n}.onnx", ("cat", "dog", "bicycle", "car")[:n]))
           for n in (2, 3, 4)}
    cfg = StudyConfig.quick(seeds=2, ablations=["control", "no-skies", "single-breed"])
    domains = ["real", "synthetic", "toon", "synthetic4"]
    for study in STUDIES:
        plan = plan_study(study, cfg, domains)
        for i, m in enumerate(plan.models):
            classes = m.classes or ["cat", "dog"]
            doms = {d: mix(6 + (i + len(d)) % 4, 4 - (i + len(d)) % 4, classes) for d in m.eval_domains}
            if (run / "eval" / m.name / "metrics.json").exists():
                continue
            write_eval(run, m.name, clf[len(classes)], doms, train_domains=[m.train_domain],
                       confusion_png=m.name.startswith("synth-control.dropout-0.3"))
        collect_study(plan, run)
    ck = run / "models" / "synth-control.dropout-0.3.s0" / "checkpoint"
    ck.mkdir(parents=True)
    (ck / "model.json").write_text(json.dumps({
        "classes": ["cat", "dog"], "backbone": "small-cnn", "head": {"dropout": 0.3}, "frozen": True,
        "metrics": {"best_val_accuracy": 0.75}, "train_config": {"epochs": 2, "lr": 0.001},
        "history": None}))
    (ck / "history.json").write_text(json.dumps({"epochs": [  # drsynth.train's history layout
        {"epoch": e, "train": {"accuracy": a, "loss": 1 - a}, "val": {"accuracy": a - 0.05},
         "eval": {"real": {"accuracy": a - 0.1}}} for e, a in ((1, 0.6), (2, 0.8))]}))
    for sub in ("explain/synth-control.dropout-0.3.s0/real.png", "samples/synth-control.png"):
        (run / sub).parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (64, 32), (200, 100, 50)).save(run / sub)
    (run / "run.json").write_text(json.dumps({
        "format": "drsynth-run/1", "name": "test-run", "created": "2025-01-01T00:00:00Z", "preset": "quick",
        "config": cfg.model_dump(mode="json"), "scenarios": {"cats_dogs": {"seed": 0}},
        "domains": {"real": {"uri": "/photos", "kind": "real", "source": "user", "description": "my photos"},
                    "toon": {"uri": "RUN/datasets/toon", "kind": "toon", "source": "rendered",
                             "description": "toon style renders, held-out breeds"}}}))
    return run


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("report")
    run = make_run(tmp / "run", tmp)
    return run, build_report(run)


def test_html_is_self_contained_and_complete(built):
    run, (html_path, md_path) = built
    html = html_path.read_text()
    # no external resources: every src/href is a data URI or an in-page anchor
    assert not re.findall(r'(?:src|href)="(?!data:|#)', html)
    assert html.count("data:image/png;base64,") >= 4 + 8  # 4 study figures + confusion matrices + ...
    for title in ("Paper Fig. 3", "Paper Fig. 4", "Paper Fig. 7", "Paper Fig. 8"):
        assert title.lower() in html.lower()
    for section in ("Domains used", "Results beside the paper", "Evaluation per model", "Training",
                    "Explainability", "Sample renders", "Configuration"):
        assert section in html
    assert "85.3%" in html  # the paper's control number beside ours
    assert "read from Fig. 4 (approx.)" in html
    assert "my photos" in html and "rendered" in html  # which domains were used
    assert (run / "models" / "synth-control.dropout-0.3.s0" / "curves.png").is_file()  # plotted from history
    assert "Not in this run" not in html


def test_markdown_twin_links_exist(built):
    run, (_, md_path) = built
    md = md_path.read_text()
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md)
    assert len(links) >= 12
    for link in links:
        assert (run / link).is_file(), link
    assert "| study | model | condition |" in md


def test_paper_table_and_lookup():
    assert paper_lookup("ablation", "synthetic", "control", "real", "accuracy").value == pytest.approx(0.8526)
    assert paper_lookup("ablation", "synthetic", "control", "synthetic", "accuracy") is None  # not comparable
    assert all(p.value is not None or "Fig." in p.source for p in PAPER)


def test_empty_run_says_what_is_missing(tmp_path):
    html_path, _ = build_report(tmp_path)
    html = html_path.read_text()
    assert "Not in this run" in html and "studies/architecture" in html
    with pytest.raises(ConfigError, match="run folder not found"):
        build_report(tmp_path / "nope")


def test_cli_report(built, capsys):
    from drsynth.cli import main

    run, _ = built
    main(["report", "--run", str(run), "--title", "CLI report"])
    assert "report.html" in capsys.readouterr().out
    assert "<title>CLI report</title>" in (run / "report.html").read_text()
