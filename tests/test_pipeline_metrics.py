"""Step metrics in the pipelines: the `pushgateway_url` parameter reaches every long-running task, which pushes
its step's metrics there, grouped under the run id the pod's label provides."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
import yaml
from kfp.dsl import Artifact
from metrics_helpers import http_get, samples
from metrics_helpers import pushgateway as start_pushgateway
from render_toys import two_breed_data

from drsynth import metrics

REPO = Path(__file__).resolve().parents[1]
COMPILED = REPO / "pipelines" / "compiled"
STEP_COMPONENTS = ("comp-render-shard", "comp-package-dataset", "comp-import-datasets", "comp-train-model",
                   "comp-evaluate-model")


def _docs(name: str) -> tuple[dict, dict]:
    spec, platform = yaml.safe_load_all((COMPILED / f"{name}.yaml").read_text())
    return spec, platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]


def _tasks(spec: dict, dag: dict, parents: tuple = ()):
    """(task, chain of enclosing loop/group tasks) for every task, loops included."""
    for t in dag["tasks"].values():
        yield t, parents
        sub = spec["components"][t["componentRef"]["name"]].get("dag")
        if sub:
            yield from _tasks(spec, sub, (*parents, t))


@pytest.mark.parametrize("name", ["paper_study", "train_and_serve"])
def test_pushgateway_parameter_reaches_every_step_task(name):
    spec, k8s = _docs(name)
    param = spec["root"]["inputDefinitions"]["parameters"]["pushgateway_url"]
    assert param["parameterType"] == "STRING" and param["defaultValue"] == ""
    steps = [(t, parents) for t, parents in _tasks(spec, spec["root"]["dag"])
             if t["componentRef"]["name"].startswith(STEP_COMPONENTS)]
    kinds = {re.sub(r"-\d+$", "", t["componentRef"]["name"]) for t, _ in steps}  # comp-render-shard-2 ...
    assert kinds >= {"comp-render-shard", "comp-package-dataset", "comp-train-model", "comp-evaluate-model"}
    for t, parents in steps:
        # The task's input comes from the pipeline parameter: directly, or through its loops' channels.
        src = t["inputs"]["parameters"]["pushgateway_url"]["componentInputParameter"]
        for loop in reversed(parents):
            assert src == "pipelinechannel--pushgateway_url", src
            src = loop["inputs"]["parameters"][src]["componentInputParameter"]
        assert src == "pushgateway_url"
        executor = spec["components"][t["componentRef"]["name"]]["executorLabel"]
        env = k8s[executor]
        # ... and every step task gets the run id from its pod's label and the cluster's default Pushgateway.
        assert {"fieldPath": "metadata.labels['pipeline/runid']", "name": "KFP_RUN_ID"} in env["fieldPathAsEnv"]
        (cm,) = env["configMapAsEnv"]
        assert cm["configMapName"] == "drsynth-pipeline-env" and cm["optional"] is True


@pytest.fixture
def clean_metrics_env(monkeypatch):
    for var in ("PROMETHEUS_PUSHGATEWAY", "DRSYNTH_RUN_ID", "DRSYNTH_METRICS_PORT", "DRSYNTH_TASK"):
        monkeypatch.setenv(var, "")
        monkeypatch.delenv(var)  # restored after the test, though the component sets them
    monkeypatch.setattr(metrics, "_config", {})
    monkeypatch.setenv("KFP_RUN_ID", "run-4f2a")  # what the pod's pipeline/runid label gives
    monkeypatch.setenv("DRSYNTH_INSTANCE", "render-pod-1")


def _job() -> dict:
    scenario = two_breed_data("metrics-wiring", seed=1, image_size=32)
    return {"dataset": "synth-control", "scenario": scenario, "start": 0, "count": 2, "workers": 1}


@pytest.mark.slow
def test_render_component_pushes_its_step_metrics_to_the_parameter_url(tmp_path, clean_metrics_env):
    from drsynth_components import render_shard

    with start_pushgateway() as gateway:
        out = Artifact(name="render", uri=str(tmp_path / "render"), metadata={})
        render_shard.python_func(job=_job(), render=out, pushgateway_url=gateway)
        assert out.metadata["images"] == 2
        text = http_get(f"{gateway}/metrics")
    group = {"job": "drsynth", "run_id": "run-4f2a", "task": "render-synth-control", "instance": "render-pod-1"}
    assert sum(samples(text, "drsynth_render_images_total", **group)) == 2


def test_empty_pushgateway_parameter_changes_nothing(tmp_path, clean_metrics_env, monkeypatch):
    from drsynth_components import render_shard

    # A skipped job renders nothing but still runs the component's set-up: no Pushgateway gets configured.
    out = Artifact(name="render", uri=str(tmp_path / "render"), metadata={})
    render_shard.python_func(job={"dataset": "synth-control", "skip": True}, render=out, pushgateway_url="")
    assert out.metadata["skipped"] is True
    assert "PROMETHEUS_PUSHGATEWAY" not in os.environ and metrics._config == {}
