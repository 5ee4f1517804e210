"""The long steps really record their metrics: render (in-process and with worker processes through the CLI),
package (to a real SeaweedFS S3), train (a tiny CNN) and evaluate (an ONNX model on two domains).

Numbers are checked against what each step itself reports (records on disk, its result object), so the
metrics and the step cannot drift apart.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import torchvision  # noqa: F401  before any EGL render in this process: importing it after one segfaults
from metrics_helpers import http_get, samples
from metrics_helpers import pushgateway as start_pushgateway

from drsynth import metrics

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def run_id(monkeypatch):
    rid = f"test-{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("DRSYNTH_RUN_ID", rid)
    monkeypatch.setenv("DRSYNTH_INSTANCE", "pod-a")
    for var in ("PROMETHEUS_PUSHGATEWAY", "DRSYNTH_METRICS_PORT", "DRSYNTH_TASK"):
        monkeypatch.setenv(var, "")
        monkeypatch.delenv(var)
    monkeypatch.setattr(metrics, "_config", {})
    return rid


def test_render_range_counts_images_by_class_time_skips_and_occlusion_retries(tmp_path, run_id):
    from render_toys import toy_context, toy_scenario

    from drsynth.render_job import SAMPLES_DIR, render_range

    scenario = toy_scenario()
    ctx = toy_context(scenario)
    out = tmp_path / "render"
    with metrics.step("render") as first:
        render_range(scenario, out, start=0, count=4, ctx=ctx)
    (out / SAMPLES_DIR / "000000002.json").unlink()  # as if interrupted before image 2 finished
    with metrics.step("render") as second:
        summary = render_range(scenario, out, start=0, count=6, ctx=ctx)
    assert (summary.rendered, summary.skipped) == (3, 3)

    records = {i: json.loads((out / SAMPLES_DIR / f"{i:09d}.json").read_text()) for i in range(6)}
    for m, indices, skipped in ((first, range(4), 0), (second, (2, 4, 5), 3)):
        for cls in ("cat", "dog"):
            want = sum(records[i]["class"] == cls for i in indices)
            assert m.value("drsynth_render_images_total", {"class": cls}) == want
        assert m.value("drsynth_render_image_seconds_count") == len(indices)
        assert m.value("drsynth_render_images_skipped_total") == skipped
        assert m.value("drsynth_render_images_planned") == max(indices) + 1
        retries = sum(records[i]["occluder_tries"] - 1 for i in indices)
        assert m.value("drsynth_render_occlusion_retries_total") == retries
        assert m.value("drsynth_render_images_per_second") > 0


def test_worker_failed_subjects_are_merged_not_summed():
    m = metrics.RenderMetrics()
    m.failed_subjects.labels("cat").inc()  # this process's own pool
    for worker in ({"cat": 2.0}, {"cat": 2.0, "dog": 1.0}, {}):  # every worker loads the same pool
        m.merge_failed_subjects(worker)
    assert m.failed_subjects_by_class() == {"cat": 2.0, "dog": 1.0}


def test_package_counts_samples_shards_and_bytes_uploaded_to_real_s3(tmp_path, run_id, s3_uri):
    from dataset_fixtures import make_render_dir

    from drsynth.package import package

    src = make_render_dir(tmp_path / "render", 24)
    with start_pushgateway() as gateway, metrics.step("package", pushgateway=gateway, timeout_s=15) as m:
        result = package(src, s3_uri, shard_size=8, progress=False, card=False, workers=2)
    assert result.shards_uploaded == 3
    assert m.value("drsynth_package_samples_total") == 24
    assert m.value("drsynth_package_shards_uploaded_total") == 3
    assert m.value("drsynth_package_bytes_uploaded_total") == result.bytes_uploaded > 0
    assert m.value("drsynth_package_upload_seconds_count") == 3
    assert m.value("drsynth_package_upload_retries_total") == 0  # a healthy store needs none


def test_train_records_epochs_loss_accuracy_and_throughput(tmp_path, run_id):
    import torch
    from train_fixtures import shapes_dataset

    from drsynth.train import TrainConfig, main

    data = shapes_dataset(tmp_path / "shapes", 8, seed=0, size=32)
    cfg = TrainConfig(
        data=data,
        out=str(tmp_path / "ckpt"),
        backbone="small-cnn",
        image_size=32,
        epochs=2,
        batch_size=8,
        val_fraction=0.25,
        workers=0,
        progress=False,
    )
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with metrics.step("train") as m:
            main(cfg)
    finally:
        torch.set_num_threads(threads)
    hist = json.loads((tmp_path / "ckpt" / "history.json").read_text())
    last = hist["epochs"][-1]
    assert m.value("drsynth_train_epoch") == 2
    assert m.value("drsynth_train_epochs_planned") == 2
    for split in ("train", "val"):
        assert m.value("drsynth_train_loss", {"split": split}) == pytest.approx(last[split]["loss"])
        assert m.value("drsynth_train_accuracy", {"split": split}) == pytest.approx(last[split]["accuracy"])
    assert m.value("drsynth_train_images_total") == sum(r["train"]["n"] for r in hist["epochs"])
    assert m.value("drsynth_train_images_per_second") > 0
    assert m.value("drsynth_train_gpu_memory_bytes", {"kind": "allocated"}) is None  # CPU: none


def test_evaluate_records_accuracy_and_images_per_domain(tmp_path, run_id):
    from eval_fixtures import color_folder, color_onnx

    from drsynth.evaluate import evaluate

    model = color_onnx(tmp_path / "model.onnx", ("cat", "dog"))
    # cat = red (channel 0), dog = green (channel 1)
    real = color_folder(tmp_path / "real", {"cat": [0, 0, 0, 1], "dog": [1, 1]})
    toon = color_folder(tmp_path / "toon", {"cat": [0, 1], "dog": [1, 0]})
    with metrics.step("evaluate") as m:
        res = evaluate(model, {"real": str(real), "toon": str(toon)}, device="cpu", progress=False)
    for domain, n in (("real", 6), ("toon", 4)):
        assert m.value("drsynth_evaluate_accuracy", {"domain": domain}) == res.domains[domain].accuracy
        assert m.value("drsynth_evaluate_images_total", {"domain": domain}) == n
    assert res.domains["real"].accuracy == pytest.approx(5 / 6)


def _one_breed_scenario(tmp_path: Path) -> Path:
    import yaml

    from drsynth.subjects import cats, dogs

    data = yaml.safe_load((REPO / "assets/scenarios/cats_dogs.yaml").read_text())
    data["classes"] = {
        "cat": {"procedural": "cat", "breeds": cats.preset_names()[:1], "blends": 0},
        "dog": {"procedural": "dog", "breeds": dogs.preset_names()[:1], "blends": 0},
    }
    path = tmp_path / "small.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.mark.slow
def test_cli_render_with_worker_processes_pushes_to_the_gateway(tmp_path, run_id):
    scenario = _one_breed_scenario(tmp_path)
    out = tmp_path / "out"
    env = {**os.environ, "DRSYNTH_TASK": "render-shard-0"}
    with start_pushgateway() as gateway:
        res = subprocess.run(
            [
                sys.executable,
                "-m",
                "drsynth",
                "--pushgateway",
                gateway,
                "render",
                "--scenario",
                str(scenario),
                "--count",
                "4",
                "--out",
                str(out),
                "--size",
                "48",
                "--workers",
                "2",
            ],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert res.returncode == 0, res.stderr
        text = http_get(f"{gateway}/metrics")
    group = {"job": "drsynth", "run_id": run_id, "task": "render-shard-0", "instance": "pod-a"}
    records = [json.loads(p.read_text()) for p in sorted((out / "samples").glob("*.json"))]
    assert len(records) == 4
    for cls in ("cat", "dog"):  # counted in the parent from the workers' results
        assert samples(text, "drsynth_render_images_total", **group, **{"class": cls}) == [2.0]
    assert samples(text, "drsynth_render_image_seconds_count", **group) == [4.0]
    retries = sum(r["occluder_tries"] - 1 for r in records)
    assert samples(text, "drsynth_render_occlusion_retries_total", **group) == [float(retries)]
    assert samples(text, "drsynth_step_running", **group) == [0.0]
    assert samples(text, "drsynth_step_last_success_time_seconds", **group)[0] > 0
