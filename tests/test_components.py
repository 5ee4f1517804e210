"""Every Kubeflow component of drsynth runs in process (its `python_func`, with real KFP artifact objects) on
a tiny run whose datasets live in a real S3 server (SeaweedFS): plan -> render shard -> package (fan-in) ->
import photos -> train -> export (ONNX + Triton) -> evaluate (+ heatmaps) -> studies -> report -> publish.

The chain is one module-scoped fixture (each step feeds the next, as in the pipeline); the tests check what
each component leaves behind and what it tells the Kubeflow UI (artifact metadata, metrics, confusion)."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest
from dataset_fixtures import make_image
from kfp.dsl import HTML, Artifact, ClassificationMetrics, Dataset, Markdown, Metrics, Model
from s3_server import use_store_env

from drsynth_components import (
    IMAGE_RENDER,
    IMAGE_TRAIN,
    build_report,
    collect_studies,
    dataset_jobs,
    evaluate_model,
    export_model,
    import_datasets,
    model_items,
    package_dataset,
    plan_run,
    publish_model,
    render_shard,
    train_model,
)

SYNTH, REAL = "synth-control.dropout-0.3.s0", "real-train.dropout-0.3.s0"  # the transfer study's models


def art(cls, root: Path, name: str):
    """A KFP output artifact whose local path is root/name (as the launcher provides it in a pod)."""
    return cls(name=name, uri=str(root / name), metadata={})


def photo_folder(root: Path, classes=("cat", "dog"), per_class: int = 15) -> Path:
    import numpy as np

    rng = np.random.default_rng(0)
    for k, c in enumerate(classes):
        (root / c).mkdir(parents=True)
        for i in range(per_class):
            make_image(k, rng, 40).save(root / c / f"{c}{i:02d}.jpg")
    return root


@pytest.fixture(scope="module")
def chain(s3_server, tmp_path_factory):
    """The whole pipeline, component by component, with S3 datasets; returns what each step produced."""
    from drsynth.presets import preset

    mp = pytest.MonkeyPatch()
    use_store_env(mp, s3_server)
    root = tmp_path_factory.mktemp("components")
    store = f"s3://comp-{uuid.uuid4().hex[:10]}"
    photos = photo_folder(root / "photos")
    # The transfer study alone: a real-trained and a synthetic-trained model, domains real/synthetic/toon.
    cfg = preset("ci", store_uri=store, studies=["transfer"], images_per_class=4, test_images_per_class=2,
                 real_uri=str(photos), name="components")
    params = {k: v for k, v in cfg.pipeline_parameters().items() if k in plan_run.component_spec.inputs}
    out: dict = {"root": root, "store": store, "cfg": cfg}
    try:
        out["plan"] = plan = plan_run.python_func(**params)
        renders: dict[str, list] = {}
        for ds in ("synth-control", "synth-no-occluders", "test-synthetic", "test-toon"):
            out.setdefault("jobs", {})[ds] = jobs = dataset_jobs.python_func(plan=plan, dataset=ds)
            for i, job in enumerate(jobs):
                a = art(Artifact, root, f"render-{ds}-{i}")
                render_shard.python_func(job=job, render=a)
                renders.setdefault(ds, []).append(a)
            d = art(Dataset, root, f"dataset-{ds}")
            package_dataset.python_func(renders=renders[ds], dataset=d)
            out.setdefault("datasets", {})[ds] = d
        out["renders"] = renders
        imports = {n: art(Dataset, root, f"import-{n}") for n in ("real_train", "real_test", "toon")}
        import_datasets.python_func(plan=plan, **imports)
        out["imports"] = imports
        out["items"] = items = model_items.python_func(plan=plan)
        models: dict[str, dict] = {}
        for item in items:
            m = models[item["name"]] = {}
            d = root / item["name"]
            m["checkpoint"], m["training_log"], m["train_metrics"] = ck, log, tm = (
                art(Model, d, "checkpoint"), art(Artifact, d, "training_log"), art(Metrics, d, "tm"))
            train_model.python_func(job=item, gpus=0, checkpoint=ck, training_log=log, metrics=tm)
            m["onnx"], m["triton"] = onnx, triton = art(Model, d, "onnx"), art(Model, d, "triton")
            export_model.python_func(checkpoint=ck, onnx=onnx, triton=triton, triton_name="drsynth")
            m["evaluation"], m["heatmaps"] = ev, hm = art(Artifact, d, "evaluation"), art(Artifact, d, "heatmaps")
            m["eval_metrics"], m["confusion"] = em, cm = art(Metrics, d, "em"), art(ClassificationMetrics, d, "cm")
            evaluate_model.python_func(job=item, onnx=onnx, checkpoint=ck, evaluation=ev, heatmaps=hm, metrics=em,
                                       confusion=cm)
        out["models"] = models
        evals = [m["evaluation"] for m in models.values()]
        st, sm = art(Artifact, root, "studies"), art(Metrics, root, "sm")
        collect_studies.python_func(plan=plan, evaluations=evals, studies=st, metrics=sm)
        run, html, md = art(Artifact, root, "run"), art(HTML, root, "report"), art(Markdown, root, "report_md")
        build_report.python_func(plan=plan, evaluations=evals, training_logs=[m["training_log"] for m in models.values()],
                                 heatmaps=[m["heatmaps"] for m in models.values()], studies=st, run=run, report=html,
                                 report_md=md)
        synth = models[SYNTH]
        out["triton_uri"] = publish_model.python_func(onnx=synth["onnx"], triton=synth["triton"], store_uri=store,
                                                      prefix="models/latest")
        out.update(studies=st, study_metrics=sm, run=run, html=html, md=md)
        yield out
    finally:
        mp.undo()


def test_components_run_on_their_step_images():
    assert render_shard.component_spec.implementation.container.image == IMAGE_RENDER
    assert package_dataset.component_spec.implementation.container.image == IMAGE_RENDER
    assert train_model.component_spec.implementation.container.image == IMAGE_TRAIN
    assert evaluate_model.component_spec.implementation.container.image == IMAGE_TRAIN
    for comp in (plan_run, render_shard, package_dataset, train_model, evaluate_model, build_report):
        command = " ".join(comp.component_spec.implementation.container.command)
        assert "pip install" not in command  # kfp and drsynth are in the images


@pytest.mark.slow
def test_every_output_artifact_has_a_file(chain):
    """kfp.local's cache (and a cluster's artifact upload) want a file or folder behind every output."""
    outputs = [*chain["datasets"].values(), *chain["imports"].values(), chain["studies"], chain["study_metrics"],
               chain["run"], chain["html"], chain["md"], *(a for rs in chain["renders"].values() for a in rs),
               *(a for m in chain["models"].values() for a in m.values())]
    missing = [a.name for a in outputs if not Path(a.path).exists()]
    assert not missing, missing


@pytest.mark.slow
def test_plan_and_render_jobs(chain):
    plan, jobs = chain["plan"], chain["jobs"]
    assert plan["format"] == "drsynth-plan/1"
    assert set(plan["domains"]) == {"real", "synthetic", "toon"}
    assert plan["datasets"]["real-train"]["source"] == "import"
    (job,) = jobs["synth-control"]
    assert job["count"] == 8 and job["start"] == 0 and job["uri"].startswith(chain["store"] + "/datasets/")
    (skip,) = jobs["synth-no-occluders"]
    assert skip["skip"] and skip["count"] == 0  # the transfer study does not need the ablations


@pytest.mark.slow
def test_render_shard_and_package_fan_in(chain):
    from drsynth.data import read_manifest

    (render,) = chain["renders"]["synth-control"]
    assert render.metadata["images"] == 8 and not render.metadata["skipped"]
    assert len(list(Path(render.path, "samples").glob("*.jpg"))) == 8
    ds = chain["datasets"]["synth-control"]
    assert ds.metadata["uri"] == chain["jobs"]["synth-control"][0]["uri"]
    manifest = read_manifest(ds.metadata["uri"])  # committed in S3
    assert manifest.num_samples == 8 and manifest.counts == {"cat": 4, "dog": 4}
    assert (Path(ds.path) / "dataset.json").is_file() and (Path(ds.path) / "card" / "contact_sheet.png").is_file()
    assert chain["datasets"]["synth-no-occluders"].metadata["skipped"] is True


@pytest.mark.slow
def test_import_splits_real_photos(chain):
    imports = chain["imports"]
    train, test = imports["real_train"].metadata, imports["real_test"].metadata
    assert train["num_samples"] + test["num_samples"] == 30 and test["num_samples"] > 0
    assert imports["toon"].metadata["skipped"] is True  # no --toon: the rendered toon domain is used


@pytest.mark.slow
@pytest.mark.parametrize("name", [SYNTH, REAL])
def test_train_export_evaluate(chain, name):
    assert sorted(i["name"] for i in chain["items"]) == sorted([REAL, SYNTH])
    m = chain["models"][name]
    ck, tm = m["checkpoint"], m["train_metrics"]
    assert (Path(ck.path) / "model.safetensors").is_file() and (Path(ck.path) / "model.json").is_file()
    assert ck.metadata["classes"] == ["cat", "dog"]
    assert 0.0 <= tm.metadata["best_val_accuracy"] <= 1.0
    logged = sorted(p.name for p in Path(m["training_log"].path).iterdir() if p.name != "drsynth-step.json")
    assert logged == ["curve.png", "history.json", "model.json", "spec.json"]
    onnx = Path(m["onnx"].path) / "model.onnx"
    assert onnx.is_file() and m["onnx"].metadata["max_abs_diff"] < 1e-3
    assert (Path(m["triton"].path) / "drsynth" / "1" / "model.onnx").is_file()
    metrics = json.loads((Path(m["evaluation"].path) / "metrics.json").read_text())
    assert set(metrics["domains"]) == {"real", "synthetic", "toon"}
    assert metrics["train_domains"] == (["real"] if name == REAL else ["synthetic"])
    em = m["eval_metrics"].metadata
    for dom in ("real", "synthetic", "toon"):
        assert em[f"{dom}/accuracy"] == pytest.approx(metrics["domains"][dom]["accuracy"])
    cm = m["confusion"].metadata
    assert cm["domain"] == "real"  # real photos given: the primary domain
    assert cm["confusionMatrix"]["rows"][0]["row"] == metrics["domains"]["real"]["confusion"][0]
    assert [a["displayName"] for a in cm["confusionMatrix"]["annotationSpecs"]] == ["cat", "dog"]
    # the transfer study's models are explained: heatmap grids per domain
    grids = sorted(p.name for p in Path(m["heatmaps"].path).glob("*.png"))
    assert grids == ["real.png", "synthetic.png", "toon.png"]


@pytest.mark.slow
def test_studies_report_and_publish(chain):
    from drsynth.storage import open_store

    results = json.loads((Path(chain["studies"].path) / "transfer" / "results.json").read_text())
    assert {c["group"] for c in results["conditions"]} == {"real", "synthetic"}  # the real-trained baseline too
    assert any(k.startswith("transfer/synthetic/real/") for k in chain["study_metrics"].metadata)
    run = Path(chain["run"].path)
    for rel in ("run.json", "report.html", "report.md", f"eval/{SYNTH}/metrics.json", f"eval/{REAL}/metrics.json",
                f"models/{SYNTH}/checkpoint/curve.png", "studies/transfer/figure.png", f"explain/{REAL}/toon.png",
                "samples/synth-control.png", "samples/real-test.png", "samples/real-train.png"):
        assert (run / rel).is_file(), rel
    run_json = json.loads((run / "run.json").read_text())
    assert run_json["format"] == "drsynth-run/1" and run_json["domains"]["real"]["source"] == "user"
    html = Path(chain["html"].path).read_text()
    assert "data:image/png;base64," in html  # self-contained: the Kubeflow UI shows it as is
    assert Path(chain["md"].path).read_text().startswith("# ")
    # the run folder and the model are in the object store, where cluster users and KServe find them
    store = chain["store"]
    assert open_store(f"{store}/runs/components").stat("report.html") is not None
    assert chain["triton_uri"] == f"{store}/models/latest/triton/"
    assert open_store(f"{store}/models/latest/triton").stat("drsynth/config.pbtxt") is not None
    assert open_store(f"{store}/models/latest/onnx").stat("model.onnx") is not None
