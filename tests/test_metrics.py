"""drsynth.metrics: stable names, a push to a real Pushgateway on loopback, failures that only warn, /metrics.

The Pushgateway is the Debian `prometheus-pushgateway` binary (scripts/setup.sh installs it); each test
run starts its own on a free loopback port and stops it by PID.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import urllib.error
import uuid

import pytest
from metrics_helpers import free_port, http_get, samples
from metrics_helpers import pushgateway as start_pushgateway

from drsynth import metrics
from drsynth.errors import ConfigError

# The contract: dashboards and alerts query these names with these labels. Add, never rename.
EXPECTED_NAMES = {
    "drsynth_step_info": ("info", ("step", "version")),
    "drsynth_step_start_time_seconds": ("gauge", ()),
    "drsynth_step_duration_seconds": ("gauge", ()),
    "drsynth_step_running": ("gauge", ()),
    "drsynth_step_last_success_time_seconds": ("gauge", ()),
    "drsynth_render_images_planned": ("gauge", ()),
    "drsynth_render_images_total": ("counter", ("class",)),
    "drsynth_render_images_skipped_total": ("counter", ()),
    "drsynth_render_images_per_second": ("gauge", ()),
    "drsynth_render_image_seconds": ("histogram", ()),
    "drsynth_render_occlusion_retries_total": ("counter", ()),
    "drsynth_render_failed_subjects_total": ("counter", ("class",)),
    "drsynth_package_samples_total": ("counter", ()),
    "drsynth_package_shards_uploaded_total": ("counter", ()),
    "drsynth_package_bytes_uploaded_total": ("counter", ()),
    "drsynth_package_upload_retries_total": ("counter", ()),
    "drsynth_package_upload_seconds": ("histogram", ()),
    "drsynth_train_epoch": ("gauge", ()),
    "drsynth_train_epochs_planned": ("gauge", ()),
    "drsynth_train_loss": ("gauge", ("split",)),
    "drsynth_train_accuracy": ("gauge", ("split",)),
    "drsynth_train_learning_rate": ("gauge", ()),
    "drsynth_train_images_total": ("counter", ()),
    "drsynth_train_images_per_second": ("gauge", ()),
    "drsynth_train_gpu_memory_bytes": ("gauge", ("kind",)),
    "drsynth_evaluate_accuracy": ("gauge", ("domain",)),
    "drsynth_evaluate_images_total": ("counter", ("domain",)),
}


@pytest.fixture(scope="module")
def pushgateway():
    """A real Pushgateway on a free loopback port, for this module's tests."""
    with start_pushgateway() as url:
        yield url


@pytest.fixture
def run_env(monkeypatch):
    """A unique run id and a fixed instance name, so tests sharing the gateway never see each other."""
    rid = f"test-{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("DRSYNTH_RUN_ID", rid)
    monkeypatch.setenv("DRSYNTH_INSTANCE", "pod-a")
    for var in (
        "PROMETHEUS_PUSHGATEWAY",
        "DRSYNTH_METRICS_PORT",
        "DRSYNTH_TASK",
        "KFP_RUN_ID",
        "KFP_POD_NAME",
    ):
        monkeypatch.setenv(var, "")  # records the original, so what a test sets (configure()) is undone
        monkeypatch.delenv(var)
    monkeypatch.setattr(metrics, "_config", {})
    return rid


def test_metric_names_and_labels_are_stable():
    assert metrics.metric_names() == dict(sorted(EXPECTED_NAMES.items()))


def test_push_reaches_a_real_pushgateway_grouped_by_run_and_task(pushgateway, run_env):
    with metrics.step(
        "render", pushgateway=pushgateway, task="render-shard-3", push_interval_s=0, timeout_s=15
    ) as m:
        assert metrics.render() is m
        # pushed once on entry: a watcher sees the step running before any image is done
        text = http_get(f"{pushgateway}/metrics")
        assert samples(text, "drsynth_step_running", run_id=run_env, task="render-shard-3") == [1.0]
        m.planned.set(4)
        m.images.labels("cat").inc(3)
        m.images.labels("dog").inc()
        m.image_seconds.observe(0.02)
        m.occlusion_retries.inc(2)
        m.failed_subjects.labels("dog").inc()
        time.sleep(0.05)  # so the mean rate is finite and positive
    assert metrics.render() is not m  # back to the process-wide handle

    text = http_get(f"{pushgateway}/metrics")
    group = {"job": "drsynth", "run_id": run_env, "task": "render-shard-3", "instance": "pod-a"}
    assert samples(text, "drsynth_render_images_total", **group, **{"class": "cat"}) == [3.0]
    assert samples(text, "drsynth_render_images_total", **group, **{"class": "dog"}) == [1.0]
    assert samples(text, "drsynth_render_images_planned", **group) == [4.0]
    assert samples(text, "drsynth_render_occlusion_retries_total", **group) == [2.0]
    assert samples(text, "drsynth_render_failed_subjects_total", **group, **{"class": "dog"}) == [1.0]
    assert samples(text, "drsynth_render_image_seconds_count", **group) == [1.0]
    assert samples(text, "drsynth_step_running", **group) == [0.0]
    assert samples(text, "drsynth_step_info", **group, step="render") == [1.0]
    (rate,) = samples(text, "drsynth_render_images_per_second", **group)
    (duration,) = samples(text, "drsynth_step_duration_seconds", **group)
    assert rate == pytest.approx(4 / duration)
    (success,) = samples(text, "drsynth_step_last_success_time_seconds", **group)
    (start,) = samples(text, "drsynth_step_start_time_seconds", **group)
    assert start <= success <= time.time()
    # a step pushes only its own area's series
    assert not samples(text, "drsynth_train_epoch", **group)
    assert samples(text, "push_failure_time_seconds", **group) == [0.0]


def test_periodic_pushes_while_the_step_runs(pushgateway, run_env):
    with metrics.step("train", pushgateway=pushgateway, push_interval_s=0.1, timeout_s=15) as m:
        m.observe_epoch(2, "train", loss=0.5, accuracy=0.75)
        m.observe_epoch(2, "val", loss=0.7, accuracy=0.5)
        m.images.inc(64)
        m.observe_gpu_memory("cpu")  # off CUDA: records nothing
        deadline = time.monotonic() + 10
        while True:
            text = http_get(f"{pushgateway}/metrics")
            if samples(text, "drsynth_train_accuracy", run_id=run_env, task="train", split="val"):
                break
            assert time.monotonic() < deadline, "no periodic push arrived"
            time.sleep(0.05)
        assert samples(text, "drsynth_step_running", run_id=run_env, task="train") == [1.0]
        assert samples(text, "drsynth_train_epoch", run_id=run_env, task="train") == [2.0]
        assert samples(text, "drsynth_train_loss", run_id=run_env, split="train") == [0.5]
        assert samples(text, "drsynth_train_images_total", run_id=run_env) == [64.0]
        assert not samples(text, "drsynth_train_gpu_memory_bytes", run_id=run_env)


def test_a_failing_step_pushes_its_final_state_and_reraises(pushgateway, run_env, monkeypatch):
    monkeypatch.setenv("PROMETHEUS_PUSHGATEWAY", pushgateway)  # the environment alone turns pushing on
    monkeypatch.setenv("DRSYNTH_TASK", "package-7")
    with (
        pytest.raises(RuntimeError, match="store down"),
        metrics.step("package", push_interval_s=0, timeout_s=15) as m,
    ):
        m.bytes_uploaded.inc(1234)
        raise RuntimeError("store down")
    text = http_get(f"{pushgateway}/metrics")
    group = {"run_id": run_env, "task": "package-7", "instance": "pod-a"}
    assert samples(text, "drsynth_package_bytes_uploaded_total", **group) == [1234.0]
    assert samples(text, "drsynth_step_running", **group) == [0.0]
    assert samples(text, "drsynth_step_last_success_time_seconds", **group) == [0.0]


def test_unreachable_pushgateway_warns_once_and_the_step_goes_on(run_env, caplog):
    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    caplog.set_level(logging.WARNING, logger="drsynth.metrics")
    done = []
    with metrics.step("evaluate", pushgateway=dead, push_interval_s=0.02) as m:
        m.accuracy.labels("real").set(0.8)
        time.sleep(0.2)  # several periodic pushes fail meanwhile
        done.append(True)
    assert done == [True]
    assert m.value("drsynth_evaluate_accuracy", {"domain": "real"}) == 0.8
    assert m.value("drsynth_step_last_success_time_seconds") > 0
    warnings = [r for r in caplog.records if r.name == "drsynth.metrics" and r.levelno == logging.WARNING]
    assert len(warnings) == 1, [r.getMessage() for r in warnings]
    assert dead in warnings[0].getMessage()
    assert "goes on" in warnings[0].getMessage()


def test_a_gateway_that_rejects_the_push_only_warns(pushgateway, run_env, caplog):
    # a path the Pushgateway answers 404 to: an HTTP error, not a connection error
    caplog.set_level(logging.WARNING, logger="drsynth.metrics")
    with metrics.step("render", pushgateway=f"{pushgateway}/nowhere", push_interval_s=0) as m:
        m.images.labels("cat").inc()
    assert len([r for r in caplog.records if r.name == "drsynth.metrics"]) == 1


def test_metrics_port_serves_the_step_on_loopback(run_env):
    with metrics.step("train", port=0, addr="127.0.0.1") as m:
        assert m.port
        m.epoch.set(3)
        m.learning_rate.set(0.01)
        text = http_get(f"http://127.0.0.1:{m.port}/metrics")
        assert samples(text, "drsynth_train_epoch") == [3.0]
        assert samples(text, "drsynth_train_learning_rate") == [0.01]
        assert samples(text, "drsynth_step_running") == [1.0]
        assert not samples(text, "drsynth_render_images_planned")
    with pytest.raises(urllib.error.URLError):
        http_get(f"http://127.0.0.1:{m.port}/metrics", timeout=2)


def test_metrics_port_from_the_environment_and_a_busy_port_only_warns(run_env, monkeypatch, caplog):
    busy = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    try:
        monkeypatch.setenv("DRSYNTH_METRICS_PORT", str(busy.getsockname()[1]))
        monkeypatch.setenv("DRSYNTH_METRICS_ADDR", "127.0.0.1")
        caplog.set_level(logging.WARNING, logger="drsynth.metrics")
        with metrics.step("render") as m:
            m.images.labels("cat").inc()
        assert m.port is None
        assert len([r for r in caplog.records if r.name == "drsynth.metrics"]) == 1
    finally:
        busy.close()
    monkeypatch.setenv("DRSYNTH_METRICS_PORT", "ninety")
    with pytest.raises(ConfigError, match="DRSYNTH_METRICS_PORT"), metrics.step("render"):
        pass


def test_without_gateway_or_port_nothing_is_network_facing(run_env):
    threads_before = {t.name for t in threading.enumerate()}
    with metrics.step("render", push_interval_s=0.01) as m:
        m.images.labels("car").inc(5)
        assert {t.name for t in threading.enumerate()} == threads_before
    assert m.port is None
    assert m.value("drsynth_render_images_total", {"class": "car"}) == 5.0
    assert m.value("drsynth_step_running") == 0.0


def test_accessors_outside_a_step_record_into_a_process_wide_handle():
    before = metrics.package().value("drsynth_package_samples_total")
    metrics.package().samples.inc(2)
    assert metrics.package().value("drsynth_package_samples_total") == before + 2
    with pytest.raises(ConfigError, match="area"), metrics.step("paint"):
        pass


def test_grouping_key_prefers_kfp_environment(monkeypatch):
    monkeypatch.delenv("DRSYNTH_RUN_ID", raising=False)
    monkeypatch.delenv("DRSYNTH_INSTANCE", raising=False)
    monkeypatch.setenv("KFP_RUN_ID", "run-42")
    monkeypatch.setenv("KFP_POD_NAME", "pipeline-render-abc")
    assert metrics.grouping_key("render") == {
        "run_id": "run-42",
        "task": "render",
        "instance": "pipeline-render-abc",
    }
    monkeypatch.delenv("KFP_RUN_ID")
    monkeypatch.delenv("KFP_POD_NAME")
    key = metrics.grouping_key("train")
    assert key["run_id"].startswith("local-") and key["run_id"] == metrics.run_id()
    assert key["instance"].endswith(f"-{os.getpid()}")


def test_cli_root_options_configure_later_steps(run_env, pushgateway, monkeypatch):
    import click
    import typer.main
    from click.testing import CliRunner

    from drsynth.cli import app

    monkeypatch.setenv("DRSYNTH_METRICS_ADDR", "127.0.0.1")
    ports = []

    def probe() -> None:  # stands in for any step command: it only opens a step
        with metrics.step("evaluate", push_interval_s=0, timeout_s=15) as m:
            m.accuracy.labels("toon").set(0.5)
            ports.append(m.port)

    root = typer.main.get_command(app)  # a fresh click group; the real app is left as it is
    root.add_command(click.Command("probe", callback=probe))
    result = CliRunner().invoke(root, ["--pushgateway", pushgateway, "--metrics-port", "0", "probe"])
    assert result.exit_code == 0, result.output
    assert ports and ports[0]  # served on a free port
    text = http_get(f"{pushgateway}/metrics")
    assert samples(text, "drsynth_evaluate_accuracy", run_id=run_env, domain="toon") == [0.5]
    # child processes inherit the gateway and the run id; the port stays this process's own
    assert os.environ["PROMETHEUS_PUSHGATEWAY"] == pushgateway
    assert os.environ["DRSYNTH_RUN_ID"] == run_env
    assert "DRSYNTH_METRICS_PORT" not in os.environ


@pytest.mark.gpu
def test_gpu_memory_is_recorded_on_cuda(run_env):
    import shutil

    if shutil.which("nvidia-smi") is None:
        pytest.skip("no NVIDIA GPU")
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("torch has no CUDA here")
    block = torch.empty(1 << 20, dtype=torch.float32, device="cuda")  # 4 MiB
    with metrics.step("train") as m:
        m.observe_gpu_memory(block.device)
    assert m.value("drsynth_train_gpu_memory_bytes", {"kind": "allocated"}) >= 4 << 20
    assert m.value("drsynth_train_gpu_memory_bytes", {"kind": "max_allocated"}) >= 4 << 20


def test_serve_metric_names_and_labels_are_stable():
    """drsynth serve's series (defined in drsynth.serve.metrics, used by the dashboard) are pinned too."""
    serve_metrics = pytest.importorskip("drsynth.serve.metrics")
    from prometheus_client import Counter, Histogram

    found = {}
    for value in vars(serve_metrics).values():
        if isinstance(value, Counter | Histogram):
            fam = next(iter(value.describe()))
            suffix = "_total" if fam.type == "counter" else ""
            found[fam.name + suffix] = (fam.type, tuple(value._labelnames))
    assert found == {
        "drsynth_serve_requests_total": ("counter", ("route", "code", "outcome")),
        "drsynth_serve_request_seconds": ("histogram", ("route",)),
        "drsynth_serve_instances_total": ("counter", ("model_name",)),
        "drsynth_serve_batch_size": ("histogram", ("model_name",)),
    }
    assert {serve_metrics.outcome(c) for c in (200, 404, 503)} == {"ok", "client_error", "server_error"}
