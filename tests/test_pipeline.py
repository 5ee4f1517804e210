"""The Kubeflow pipelines: compiled YAML up to date and deterministic, their structure (fan-out/fan-in, GPUs,
resources, credentials from a Secret, caching per step), presets <-> pipeline parameters, `drsynth pipeline
submit` driving kfp.Client, `drsynth run` input errors, and the end-to-end local run (kfp.local) as the
integration test."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from drsynth.presets import PRESETS, RunConfig, preset
from drsynth.runplan import RENDER_DATASETS, count_tasks, model_jobs, plan_run

REPO = Path(__file__).resolve().parents[1]
COMPILED = REPO / "pipelines" / "compiled"


def _spec(name: str) -> dict:
    docs = list(yaml.safe_load_all((COMPILED / f"{name}.yaml").read_text()))
    spec = docs[0]
    spec["platform"] = docs[1] if len(docs) > 1 else {}
    return spec


def test_compiled_yaml_is_up_to_date_and_deterministic(tmp_path):
    from drsynth_pipelines import PIPELINES, compile_all

    compile_all(tmp_path / "a")
    compile_all(tmp_path / "b")
    for name in PIPELINES:
        fresh = (tmp_path / "a" / f"{name}.yaml").read_bytes()
        assert fresh == (tmp_path / "b" / f"{name}.yaml").read_bytes(), f"{name}: compilation is not deterministic"
        committed = COMPILED / f"{name}.yaml"
        assert committed.is_file() and committed.read_bytes() == fresh, (
            f"pipelines/compiled/{name}.yaml is stale: run `drsynth pipeline compile` and commit the result")


def test_paper_study_fans_out_over_shards_and_in_with_collected():
    spec = _spec("paper_study")
    root = spec["root"]["dag"]["tasks"]
    loops = {n: t for n, t in root.items() if "parameterIterator" in t}
    # one render loop per dataset (items: its dataset_jobs task) + the models loop
    assert len(loops) == len(RENDER_DATASETS) + 1
    jobs_tasks = {t["taskInfo"]["name"] for t in root.values() if t["componentRef"]["name"].startswith(
        "comp-dataset-jobs")}
    assert jobs_tasks == {f"{d}: shards" for d in RENDER_DATASETS}
    packages = [t for t in root.values() if t["componentRef"]["name"].startswith("comp-package-dataset")]
    assert len(packages) == len(RENDER_DATASETS)
    for t in packages:  # fan-in: dsl.Collected over its loop's render outputs
        (renders,) = t["inputs"]["artifacts"].values()
        assert renders["taskOutputArtifact"]["producerTask"].startswith("for-loop")
    report = root["build-report"]
    assert set(report["inputs"]["artifacts"]) == {"evaluations", "training_logs", "heatmaps", "studies"}
    assert spec["root"]["outputDefinitions"]["artifacts"]["Output"]["artifactType"]["schemaTitle"] == "system.Artifact"
    params = spec["root"]["inputDefinitions"]["parameters"]
    for p in ("images_per_class", "render_size", "backbone", "epochs", "seeds", "store_uri"):
        assert p in params, p  # the UI form


def test_tasks_request_the_right_resources_and_credentials():
    spec = _spec("paper_study")
    executors = spec["deploymentSpec"]["executors"]
    train = executors["exec-train-model"]["container"]
    assert train["image"] == "ghcr.io/drsynth/drsynth-train:0.1.0"
    acc = train["resources"]["accelerator"]
    assert acc["resourceType"] == "nvidia.com/gpu" and "train_gpus" in acc["resourceCount"]  # a UI parameter
    render = executors["exec-render-shard"]["container"]
    assert render["image"] == "ghcr.io/drsynth/drsynth-render:0.1.0"
    assert render["resources"]["cpuRequest"] >= 1 and render["resources"]["memoryLimit"] > 1
    assert "accelerator" not in render["resources"]
    k8s = spec["platform"]["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    for ex in ("exec-train-model", "exec-evaluate-model", "exec-package-dataset", "exec-import-datasets",
               "exec-build-report"):
        (secret,) = k8s[ex]["secretAsEnv"]
        # the pipeline parameter (inside a loop, its channel): never a literal name or key
        assert secret["secretNameParameter"]["componentInputParameter"].endswith("store_secret")
        assert {m["envVar"] for m in secret["keyToEnv"]} == {"MINIO_ENDPOINT", "AWS_ACCESS_KEY_ID",
                                                              "AWS_SECRET_ACCESS_KEY"}
    text = (COMPILED / "paper_study.yaml").read_text()
    assert "AWS_SECRET_ACCESS_KEY:" not in text and "accesskey" not in text.lower()  # no literal credentials
    assert k8s["exec-train-model"]["emptyDirMounts"][0]["mountPath"] == "/dev/shm"


def test_caching_is_decided_per_step():
    spec = _spec("paper_study")

    def tasks(dag):
        for name, t in dag["tasks"].items():
            yield name, t
            sub = spec["components"][t["componentRef"]["name"]].get("dag")
            if sub:
                yield from tasks(sub)

    caching = {}
    for _name, t in tasks(spec["root"]["dag"]):
        comp = t["componentRef"]["name"]
        if "dag" not in spec["components"][comp]:
            caching.setdefault(comp.rstrip("-0123456789"), set()).add(t.get("cachingOptions", {}).get(
                "enableCache", False))
    assert caching["comp-render-shard"] == {True}  # fixed scenario, seed and range -> same images
    assert caching["comp-train-model"] == {True}
    assert caching["comp-import-datasets"] == {False}  # a user folder can change under the same name
    assert caching["comp-build-report"] == {False}


def test_train_and_serve_publishes_onnx_and_triton():
    spec = _spec("train_and_serve")
    names = {c.rstrip("-0123456789") for c in spec["components"]}
    assert {"comp-train-model", "comp-export-model", "comp-evaluate-model", "comp-publish-model"} <= names
    params = spec["root"]["inputDefinitions"]["parameters"]
    assert params["publish_prefix"]["defaultValue"] == "models/latest"
    assert params["model_name"]["defaultValue"] == "drsynth"
    # where the InferenceServices of manifests/base/serving read the model
    serving = (REPO / "manifests" / "base" / "serving" / "triton-predictor.yaml").read_text()
    assert "s3://drsynth/models/latest/triton/" in serving
    assert params["store_uri"]["defaultValue"] == "s3://drsynth"


@pytest.mark.parametrize("name", PRESETS)
def test_presets_round_trip_through_pipeline_parameters(name, tmp_path):
    from drsynth_pipelines.registry import default_arguments, get_pipeline

    cfg = preset(name, store_uri=str(tmp_path))
    params = cfg.pipeline_parameters()
    back = RunConfig.from_parameters(**params)
    assert back.pipeline_parameters() == params
    assert back.study.model_dump(exclude={"workers"}) == cfg.study.model_dump(exclude={"workers"})
    inputs = set(get_pipeline("paper_study").component_spec.inputs)
    args = default_arguments("paper_study", name, store_uri="s3://drsynth")
    assert set(args) <= inputs and inputs - set(args) == {"train_gpus", "store_secret", "pushgateway_url"}
    json.dumps(args)  # plain JSON: what kfp.Client sends


def test_quick_preset_stays_small():
    """The README's first command must finish in minutes on a laptop CPU: few tasks, tiny images."""
    plan = plan_run(preset("quick", store_uri="/tmp/x"))
    assert count_tasks(plan) <= 90
    assert all(d.count <= 96 for d in plan.datasets.values())
    assert plan.config.study.backbone == "small-cnn" and plan.config.study.epochs <= 6
    assert len(model_jobs(plan)) == 13  # 3 architecture + 7 more ablations + 3 scaling, the control shared
    ci = plan_run(preset("ci", store_uri="/tmp/x"))
    assert count_tasks(ci) < count_tasks(plan)


def test_submit_uploads_and_starts_a_run(monkeypatch, tmp_path):
    """`drsynth pipeline submit` with kfp.Client replaced by a recorder (no Kubeflow endpoint here)."""
    import kfp

    from drsynth.cli import main

    calls: list[tuple] = []

    class Obj:
        def __init__(self, **kw):
            self.__dict__.update(kw)

    class RecordingClient:
        def __init__(self, host, namespace=None, existing_token=None, **_):
            calls.append(("init", host, namespace))

        def get_pipeline_id(self, name):
            calls.append(("get_pipeline_id", name))
            return None

        def upload_pipeline(self, path, pipeline_name=None, description=None, namespace=None):
            spec = next(yaml.safe_load_all(Path(path).read_text()))
            calls.append(("upload", pipeline_name, spec["pipelineInfo"]["name"]))
            return Obj(pipeline_id="p1")

        def list_pipeline_versions(self, pipeline_id):
            return Obj(pipeline_versions=[Obj(pipeline_version_id="v1")])

        def create_experiment(self, name, namespace=None):
            calls.append(("experiment", name))
            return Obj(experiment_id="e1")

        def run_pipeline(self, experiment_id, job_name, params=None, pipeline_id=None, version_id=None, **kw):
            calls.append(("run", experiment_id, job_name, pipeline_id, version_id, params))
            return Obj(run_id="r1")

    monkeypatch.setattr(kfp, "Client", RecordingClient)
    monkeypatch.setattr(sys, "argv", ["drsynth"])
    main(["pipeline", "submit", "--host", "http://kfp.example:8080", "--preset", "quick", "--gpus", "0",
          "--run-name", "r-test", "--set", "epochs=3"])  # returns on success (errors exit non-zero)
    assert calls[0] == ("init", "http://kfp.example:8080", "kubeflow")
    assert ("upload", "drsynth-paper-study", "drsynth-paper-study") in calls
    run = next(c for c in calls if c[0] == "run")
    _, exp, name, pid, vid, params = run
    assert (exp, name, pid, vid) == ("e1", "r-test", "p1", "v1")
    assert params["epochs"] == 3 and params["train_gpus"] == 0 and params["preset"] == "quick"
    assert params["store_uri"] == "s3://drsynth" and params["name"] == "r-test"
    assert params["images_per_class"] == preset("quick", store_uri="x").study.images_per_class


def _drsynth(*args: str, cwd: Path, timeout: float) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYOPENGL_PLATFORM": "egl"}
    return subprocess.run([sys.executable, "-m", "drsynth", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)


@pytest.mark.parametrize("args, expect", [
    (["--preset", "nope"], "unknown preset 'nope'"),
    (["--real", "/nonexistent/photos"], "--real /nonexistent/photos: not a folder"),
    (["--set", "epochs"], "--set expects KEY=VALUE"),
    (["--set", "backbone=resnet9000"], "backbone"),
])
def test_run_rejects_bad_input_with_one_line(tmp_path, args, expect):
    r = _drsynth("run", "--out", str(tmp_path / "run"), *args, cwd=tmp_path, timeout=300)
    assert r.returncode == 2, r.stderr
    assert expect in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "run" / "kfp").exists()  # nothing started


@pytest.mark.slow
def test_local_run_end_to_end(tmp_path):
    """The integration test: `drsynth run --preset ci` runs the same paper_study pipeline through kfp.local
    (every component in its own process), leaves the run folder with every figure, and says where it is."""
    out = tmp_path / "run"
    r = _drsynth("run", "--preset", "ci", "--out", str(out), cwd=tmp_path, timeout=1500)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert f"Report: {out / 'report.html'}" in r.stdout.replace("\n", "")
    run = json.loads((out / "run.json").read_text())
    assert run["preset"] == "ci" and set(run["domains"]) == {"synthetic", "toon", "synthetic4"}
    for study in ("architecture", "ablation", "transfer", "scaling"):
        assert (out / "studies" / study / "figure.png").is_file(), study
        res = json.loads((out / "studies" / study / "results.json").read_text())
        assert res["conditions"] and all(0 <= c["mean"] <= 1 or c["metric"] == "aar" for c in res["conditions"])
    evals = sorted(p.name for p in (out / "eval").iterdir())
    assert len(evals) == 6 and all((out / "eval" / e / "metrics.json").is_file() for e in evals)
    assert list((out / "eval").glob("*/confusion-*.png"))
    assert (out / "explain" / "synth-control.dropout-0.3.s0" / "synthetic.png").is_file()
    assert (out / "models" / "synth-control.dropout-0.3.s0" / "checkpoint" / "curve.png").is_file()
    assert {p.stem for p in (out / "samples").glob("*.png")} >= {"synth-control", "test-synthetic", "test-toon"}
    html = (out / "report.html").read_text()
    assert "Architecture (paper Fig. 3)" in html and "data:image/png;base64," in html
    # datasets went to the default store (the run folder) and the task outputs are cached for a re-run
    assert list((out / "datasets").glob("synth-control-*/dataset.json"))
    assert list((out / "kfp" / "cache").glob("*.json"))
