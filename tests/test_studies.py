"""Study plans, statistics and result collection (the end-to-end runs are in test_studies_run.py)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from eval_fixtures import color_onnx, mix, write_eval

from drsynth.errors import ConfigError, DatasetError
from drsynth.evaluate import load_model
from drsynth.studies import (
    ABLATIONS,
    StudyConfig,
    StudyResults,
    collect_study,
    mean_ci95,
    plan_study,
)


def test_mean_ci95_matches_student_t():
    m, lo, hi = mean_ci95([0.8, 0.9, 0.85])
    assert m == pytest.approx(0.85)
    # t_{0.975, 2} = 4.302653; sd = 0.05; half-width = 4.302653 * 0.05 / sqrt(3)
    assert hi - m == pytest.approx(4.302653 * 0.05 / np.sqrt(3), rel=1e-5)
    assert m - lo == pytest.approx(hi - m)
    assert mean_ci95([0.7]) == (0.7, 0.7, 0.7)


def test_plans_cover_every_condition():
    cfg = StudyConfig.quick(seeds=2)
    arch = plan_study("architecture", cfg, ["real", "synthetic", "toon"])
    assert {(s.group, s.name) for s in arch.series} == {
        (g, v) for g in ("real", "synthetic") for v in ("no-dropout", "dropout-0.3", "unfrozen")}
    assert len(arch.models) == 12 and arch.primary_domain == "real"
    unfrozen = [m for m in arch.models if m.name.endswith("unfrozen.s1")]
    assert all(m.unfreeze and m.seed == 1 for m in unfrozen)

    abl = plan_study("ablation", cfg, ["synthetic"])
    assert [s.name for s in abl.series] == list(ABLATIONS)
    assert abl.primary_domain == "synthetic" and abl.notes  # says no real photos
    by_name = {d.name: d for d in abl.datasets}
    assert by_name["synth-no-occluders"].disabled == ["occluders"]
    assert by_name["synth-textured-subject"].enabled == ["subject_texture"]

    tr = plan_study("transfer", cfg, ["real", "synthetic", "toon"])
    assert {(s.group, s.domain) for s in tr.series} == {
        (g, d) for g in ("real", "synthetic") for d in ("real", "synthetic", "toon", "ood-mean")}
    # the synthetic control with dropout 0.3 is one model shared by architecture, ablation and transfer
    shared = {m.name for m in arch.models} & {m.name for m in abl.models} & {m.name for m in tr.models}
    assert shared == {"synth-control.dropout-0.3.s0", "synth-control.dropout-0.3.s1"}

    sc = plan_study("scaling", cfg, ["synthetic4"])
    assert [m.classes for m in sc.models if m.seed == 0] == [
        ["cat", "dog"], ["cat", "dog", "bicycle"], ["cat", "dog", "bicycle", "car"]]
    assert {s.metric for s in sc.series} == {"accuracy", "aar"}


def test_plan_errors():
    with pytest.raises(ConfigError, match="unknown study"):
        plan_study("nope", StudyConfig.quick(), ["real"])
    with pytest.raises(ConfigError, match="4-class test domain"):
        plan_study("scaling", StudyConfig.quick(), ["synthetic"])
    with pytest.raises(ConfigError, match="unknown or no condition"):
        StudyConfig.quick(ablations=["no-cats"])
    with pytest.raises(Exception, match="extra"):
        StudyConfig(bogus=1)


@pytest.fixture(scope="module")
def clf2(tmp_path_factory):
    return load_model(color_onnx(tmp_path_factory.mktemp("m") / "m.onnx", ("cat", "dog")))


def test_collect_ablation(tmp_path, clf2):
    cfg = StudyConfig.quick(seeds=2, ablations=["control", "single-breed"])
    plan = plan_study("ablation", cfg, ["synthetic", "toon"])
    right = {"synth-control.dropout-0.3.s0": 9, "synth-control.dropout-0.3.s1": 8,
             "synth-single-breed.dropout-0.3.s0": 6, "synth-single-breed.dropout-0.3.s1": 5}
    for m in plan.models:
        write_eval(tmp_path, m.name, clf2, {"synthetic": mix(right[m.name], 10 - right[m.name]),
                                            "toon": mix(5, 5)})
    res = collect_study(plan, tmp_path)
    ctrl = next(c for c in res.conditions if c.name == "control")
    assert ctrl.values == [0.9, 0.8]
    m, lo, hi = mean_ci95([0.9, 0.8])
    assert ctrl.mean == pytest.approx(0.85) and ctrl.ci95 == pytest.approx((max(lo, 0), min(hi, 1)))
    single = next(c for c in res.conditions if c.name == "single-breed")
    assert single.mean == pytest.approx(0.55)
    assert single.runs[1].metrics == "eval/synth-single-breed.dropout-0.3.s1/metrics.json"
    saved = StudyResults.read(tmp_path / "studies" / "ablation" / "results.json")
    assert saved == res
    assert any(p["name"] == "single-breed" for p in saved.paper)
    assert (tmp_path / "studies" / "ablation" / "figure.png").read_bytes()[:4] == b"\x89PNG"


def test_collect_transfer_and_scaling(tmp_path, clf2):
    cfg = StudyConfig.quick()
    plan = plan_study("transfer", cfg, ["real", "synthetic", "toon"])
    for m in plan.models:
        real_right = 9 if m.train_domain == "real" else 7
        write_eval(tmp_path, m.name, clf2, {"real": mix(real_right, 10 - real_right), "synthetic": mix(6, 4),
                                            "toon": mix(4, 6)}, train_domains=[m.train_domain])
    res = collect_study(plan, tmp_path)
    got = {(c.group, c.domain): c.mean for c in res.conditions}
    assert got[("synthetic", "real")] == pytest.approx(0.7)
    assert got[("synthetic", "ood-mean")] == pytest.approx((0.7 + 0.4) / 2)
    assert got[("real", "ood-mean")] == pytest.approx((0.6 + 0.4) / 2)

    clf4 = load_model(color_onnx(tmp_path / "m4.onnx", ("cat", "dog", "bicycle")))
    splan = plan_study("scaling", cfg, ["synthetic4"])
    for m in splan.models:
        c = load_model(color_onnx(tmp_path / f"{m.name}.onnx", m.classes)) if len(m.classes) != 3 else clf4
        write_eval(tmp_path, m.name, c, {"synthetic4": mix(8, 2, m.classes[:3])})
    sres = collect_study(splan, tmp_path)
    aar = {c.name: c.mean for c in sres.conditions if c.metric == "aar"}
    assert aar == pytest.approx({"2-classes": 0.8 - 1 / 2, "3-classes": 0.8 - 1 / 3, "4-classes": 0.8 - 1 / 4})
    data = json.loads((tmp_path / "studies" / "scaling" / "results.json").read_text())
    assert data["primary_domain"] == "synthetic4"


def test_collect_missing_metrics_is_clear(tmp_path):
    plan = plan_study("architecture", StudyConfig.quick(), ["synthetic"])
    with pytest.raises(DatasetError, match="evaluation results not found"):
        collect_study(plan, tmp_path)
