"""The pipeline's steps as library functions on plain folders, URIs and dicts.

Each Kubeflow component in `components/` is a typed signature around exactly one function here, so the
steps run (and are tested) without kfp: `drsynth run` executes them through `kfp.local`, a cluster through
the pipeline's pods, and tests call them in process. The library never imports kfp.

Artifacts are folders. Each step leaves a small `drsynth-step.json` in the folders it writes (what made
it: dataset or model name, skip flag), so a fan-in step can sort a list of folders without kfp metadata.
The last step lays the run folder out as design.md ("Run directory") says and writes the report.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from drsynth import __version__, metrics
from drsynth.errors import ConfigError, DatasetError
from drsynth.fsutil import atomic_write_bytes, atomic_write_json
from drsynth.progress import log_every
from drsynth.runplan import ModelJob, RunPlan, model_jobs, plan_run, render_jobs, study_plans

MARKER = "drsynth-step.json"
ONNX_FILE = "model.onnx"
LOG_FILES = ("model.json", "history.json", "curve.png")  # a checkpoint without its weights


def _mark(folder: str | os.PathLike[str], **info: Any) -> None:
    atomic_write_json(Path(folder) / MARKER, {**info, "drsynth_version": __version__})


def read_marker(folder: str | os.PathLike[str]) -> dict[str, Any]:
    path = Path(folder) / MARKER
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise DatasetError(f"{folder} was not written by a drsynth pipeline step ({MARKER} is missing)") from None
    except ValueError as e:
        raise DatasetError(f"{path} is damaged: {e}") from None


def _fresh_dir(path: str | os.PathLike[str]) -> Path:
    """An empty folder at `path` (a retried task must not see its earlier attempt's files)."""
    p = Path(path)
    if p.is_file():
        p.unlink()
    elif p.is_dir():
        shutil.rmtree(p)
    p.mkdir(parents=True)
    return p


# --- plan ------------------------------------------------------------------------------------------------------


def kfp_value(obj: Any) -> Any:
    """`obj` without None-valued keys (recursively): KFP parameters (protobuf Structs as kfp builds them)
    cannot hold None, and every None in a plan or job is its field's default."""
    if isinstance(obj, dict):
        return {k: kfp_value(v) for k, v in obj.items() if v is not None}
    if isinstance(obj, list | tuple):
        return [kfp_value(v) for v in obj]
    return obj


def make_plan(params: dict[str, Any]) -> dict[str, Any]:
    """Pipeline parameters -> the run plan (a dict every later step reads; see drsynth.runplan)."""
    from drsynth.presets import RunConfig

    return kfp_value(plan_run(RunConfig.from_parameters(**params)).dump())


def dataset_jobs(plan: dict[str, Any], dataset: str) -> list[dict[str, Any]]:
    """The render tasks (one per shard) of one dataset of the plan."""
    return kfp_value(render_jobs(RunPlan.parse(plan), dataset))


def model_items(plan: dict[str, Any]) -> list[dict[str, Any]]:
    """The models loop's items: one per model to train, export and evaluate."""
    return kfp_value([j.model_dump(mode="json") for j in model_jobs(RunPlan.parse(plan))])


# --- render and package -------------------------------------------------------------------------------------


def render_shard(job: dict[str, Any], out_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """Render one shard's index range into a render folder (design.md, "Render output folder")."""
    out = _fresh_dir(out_dir)
    _mark(out, step="render", dataset=job["dataset"], skip=bool(job.get("skip")), uri=job.get("uri", ""),
          start=int(job.get("start", 0)), count=int(job.get("count", 0)),
          shard_size=int(job.get("shard_size", 1)), description=job.get("description", ""),
          curate_keep=float(job.get("curate_keep") or 0.0), curate_weights=job.get("curate_weights"))
    if job.get("skip"):
        return {"dataset": job["dataset"], "skipped": True, "images": 0}
    from drsynth.config import parse_scenario
    from drsynth.render_job import render_range

    scenario = parse_scenario(job["scenario"], source=f"render job of dataset {job['dataset']}")
    workers = int(job.get("workers") or 0) or None
    with metrics.step("render", task=f"render-{job['dataset']}"):
        summary = render_range(scenario, out, start=int(job["start"]), count=int(job["count"]), workers=workers)
    print(f"rendered {summary.rendered} images of {job['dataset']} [{int(job['start'])}, "
          f"{int(job['start']) + int(job['count'])}) at {summary.images_per_second:.1f} images/s", flush=True)
    return {"dataset": job["dataset"], "skipped": False, "images": summary.rendered,
            "images_per_s": round(summary.images_per_second, 2)}


def package_dataset(render_dirs: Sequence[str | os.PathLike[str]], out_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """Fan-in: package one dataset's render folders (its shards) into the store; `out_dir` gets the manifest and
    the dataset card (what the Kubeflow UI shows of a Dataset)."""
    out = _fresh_dir(out_dir)
    if not render_dirs:
        raise DatasetError("no render folders to package (the dataset's render loop produced nothing)")
    jobs = [read_marker(d) for d in render_dirs]
    names = sorted({j["dataset"] for j in jobs})
    if len(names) != 1:
        raise DatasetError(f"render folders of several datasets {names} given to one package step")
    name = names[0]
    if any(j["skip"] for j in jobs):
        _mark(out, step="package", dataset=name, skip=True, uri="")
        return {"dataset": name, "skipped": True, "uri": "", "num_samples": 0}
    from drsynth.package import package

    uri, shard_size = jobs[0]["uri"], jobs[0]["shard_size"]
    keep_list = None
    if jobs[0].get("curate_keep"):  # the keep-list and its sheet travel with the step's output artifact
        from drsynth.curate import curate

        keep_list = out / "curation"
        curation, _ = curate([str(d) for d in render_dirs], keep_list, keep_fraction=float(jobs[0]["curate_keep"]),
                             weights=jobs[0].get("curate_weights"), progress=log_every(30.0, f"curate {name}"))
        print(f"curated {name}: kept {len(curation.kept)} of {len(curation.scores)} renders", flush=True)
    with metrics.step("package", task=f"package-{name}"):
        res = package([str(d) for d in render_dirs], uri, name=name, shard_size=shard_size, overwrite=True,
                      workers=2, progress=False, curation=keep_list)
    _copy_card(uri, out)
    m = res.manifest
    _mark(out, step="package", dataset=name, skip=False, uri=res.uri, num_samples=m.num_samples,
          classes=list(m.classes), counts=dict(m.counts), description=jobs[0].get("description", ""))
    print(f"packaged {m.num_samples} images of {name} into {res.uri} ({len(m.shards)} shards)", flush=True)
    return {"dataset": name, "skipped": False, "uri": res.uri, "num_samples": m.num_samples,
            "classes": list(m.classes), "counts": dict(m.counts), "shards": len(m.shards)}


def _copy_card(uri: str, out: Path) -> None:
    """dataset.json, README.md and card/*.png of a committed dataset into `out`."""
    from drsynth.data import read_manifest
    from drsynth.storage import open_store

    store = open_store(uri)
    manifest = read_manifest(uri)
    for key in ["dataset.json", *manifest.card]:
        data = store.get_bytes(key)
        if data is not None:
            atomic_write_bytes(out / key, data)


def import_datasets(plan: dict[str, Any], out_dirs: dict[str, str | os.PathLike[str]]) -> dict[str, Any]:
    """Import the user's folders (real photos, cartoons) the plan names into the store, as datasets
    `real-train`, `real-test` and `toon`; a dataset the plan lacks gets a `skip` marker."""
    from drsynth.import_images import import_images

    p = RunPlan.parse(plan)
    done: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="drsynth-import-") as tmp:
        fetched: dict[str, Path] = {}
        splits: dict[str, tuple[Path, Path]] = {}
        for name, out_dir in out_dirs.items():
            out = _fresh_dir(out_dir)
            ds = p.dataset(name)
            if ds.source != "import":
                _mark(out, step="import", dataset=name, skip=True, uri="")
                done[name] = {"skipped": True}
                continue
            src = ds.import_from or ""
            if src not in fetched:
                fetched[src] = fetch_folder(src, Path(tmp) / f"src-{len(fetched)}")
            folder = fetched[src]
            if ds.import_split != "all":
                if src not in splits:
                    from drsynth.studies import split_real_folder

                    base = Path(tmp) / f"split-{len(splits)}"
                    split_real_folder(folder, base / "train", base / "test",
                                      test_fraction=p.config.study.real_test_fraction)
                    splits[src] = (base / "train", base / "test")
                folder = splits[src][0 if ds.import_split == "train" else 1]
            classes = sorted(c.name for c in folder.iterdir() if c.is_dir() and any(c.iterdir()))
            if not classes:
                raise DatasetError(f"{src} ({ds.import_split} part): no class folder holds an image; expected "
                                   "DIR/<class>/*.jpg with a few images per class")
            with metrics.step("package", task=f"import-{name}"):
                res = import_images(folder, ds.uri, classes=classes, name=name, overwrite=True, progress=False,
                                    max_side=p.config.import_max_side or None)
            _copy_card(ds.uri, out)
            m = res.package.manifest
            if res.skipped:
                print(f"{src}: skipped {len(res.skipped)} unreadable image(s)", flush=True)
            _mark(out, step="import", dataset=name, skip=False, uri=ds.uri, num_samples=m.num_samples,
                  classes=list(m.classes), counts=dict(m.counts), description=ds.description)
            done[name] = {"skipped": False, "uri": ds.uri, "num_samples": m.num_samples, "counts": dict(m.counts)}
            print(f"imported {m.num_samples} images of {src} ({ds.import_split}) into {ds.uri}", flush=True)
    return done


def fetch_folder(src: str, dest: Path) -> Path:
    """A local image folder for `src`: the folder itself, or an s3:// prefix downloaded to `dest`."""
    from drsynth.storage import is_s3_uri, open_store

    if not is_s3_uri(src):
        path = Path(src[len("file://"):] if src.startswith("file://") else src).expanduser()
        if not path.is_dir():
            raise ConfigError(f"image folder {src} does not exist: expected DIR/<class>/*.jpg (a folder, or an "
                              "s3:// prefix holding one)")
        return path
    store = open_store(src)
    objects = store.list("")
    if not objects:
        raise DatasetError(f"{src} holds no objects: expected <class>/<image> files under that prefix")
    for obj in objects:
        store.download(obj.key, dest / obj.key)
    return dest


# --- train, export, evaluate ------------------------------------------------------------------------------------


def train_model(job: dict[str, Any], checkpoint_dir: str | os.PathLike[str],
                log_dir: str | os.PathLike[str] | None = None, *, gpus: int = 0) -> dict[str, Any]:
    """Train one model of the plan into a checkpoint folder (design.md, "Checkpoint"); `log_dir` gets the
    checkpoint without its weights (config, history, curve: what the report shows). `gpus` > 0: the task was
    given that many GPUs, so CUDA must see them (a pod without its GPUs fails here, not hours later)."""
    from drsynth.train import TrainConfig, main

    j = ModelJob.parse(job)
    s = j.spec
    if gpus > 0:
        import torch

        seen = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if seen < gpus:
            raise ConfigError(f"training task {j.name} asked for {gpus} GPU(s) but CUDA sees {seen}: check the "
                              "node's NVIDIA device plugin and the image (drsynth-train), or run with "
                              "train_gpus=0 on a CPU-only cluster")
    cfg = TrainConfig(data=j.data_uri, out=str(checkpoint_dir), classes=s.classes, backbone=s.backbone,
                      weights=s.weights, frozen=not s.unfreeze, dropout=s.dropout, epochs=s.epochs,
                      batch_size=s.batch_size, lr=s.lr, image_size=s.input_size, seed=s.seed, workers=j.workers,
                      device=j.device, overwrite=True, progress=False, **s.extra)  # type: ignore[arg-type]
    with metrics.step("train", task=f"train-{j.name}"):
        res = main(cfg)
    ck = Path(checkpoint_dir)
    _mark(ck, step="train", model=j.name)
    if log_dir is not None:
        log = _fresh_dir(log_dir)
        for f in LOG_FILES:
            if (ck / f).is_file():
                shutil.copy2(ck / f, log / f)
        atomic_write_json(log / "spec.json", {"spec": s.model_dump(mode="json"), "data": j.data_uri,
                                              "dataset": j.dataset, "backbone": s.backbone})
        _mark(log, step="train", model=j.name)
    last = res.history[-1] if res.history else {}
    return {"model": j.name, "classes": res.classes, "best_epoch": res.best_epoch,
            "best_val_accuracy": res.best_val_accuracy,
            "train_accuracy": (last.get("train") or {}).get("accuracy"), "epochs": len(res.history)}


def export_model(checkpoint_dir: str | os.PathLike[str], out_dir: str | os.PathLike[str], *,
                 triton_dir: str | os.PathLike[str] | None = None, triton_name: str = "drsynth") -> dict[str, Any]:
    """Export a checkpoint to OUT/model.onnx (parity-checked); with `triton_dir`, also a Triton model repository
    TRITON/<triton_name>/{config.pbtxt, labels.txt, 1/model.onnx}."""
    from drsynth.export import export_checkpoint

    out = _fresh_dir(out_dir)
    model = read_marker(checkpoint_dir).get("model", Path(checkpoint_dir).name)
    repo = _fresh_dir(triton_dir) if triton_dir is not None else None
    res = export_checkpoint(checkpoint_dir, out / ONNX_FILE, triton_repo=repo, triton_name=triton_name)
    _mark(out, step="export", model=model)
    if repo is not None:
        _mark(repo, step="export", model=model, triton_name=triton_name)
    return {"model": model, "classes": res.classes, "backbone": res.backbone, "max_abs_diff": res.max_abs_diff,
            "size_bytes": res.size_bytes}


def onnx_path(onnx_dir: str | os.PathLike[str]) -> Path:
    p = Path(onnx_dir)
    return p / ONNX_FILE if p.is_dir() else p


def primary_domain(domains: Sequence[str]) -> str | None:
    """The domain a model is judged on first: real photos, else held-out renders, else the first one."""
    for d in ("real", "synthetic", "synthetic4", "toon"):
        if d in domains:
            return d
    return next(iter(domains), None)


def evaluate_model(job: dict[str, Any], onnx_dir: str | os.PathLike[str], eval_dir: str | os.PathLike[str], *,
                   checkpoint_dir: str | os.PathLike[str] | None = None,
                   explain_dir: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """Evaluate one model on its domains (EVAL/metrics.json + confusion PNGs, design.md) and, for the models
    the plan explains, write heatmap grids (GradCAM from the checkpoint, occlusion from the ONNX model) into
    `explain_dir`. Returns the metrics.json content."""
    from drsynth.evaluate import evaluate

    j = ModelJob.parse(job)
    if not j.domains:
        raise ConfigError(f"model {j.name}: no evaluation domain exists (planned: {j.spec.eval_domains})")
    out = _fresh_dir(eval_dir)
    with metrics.step("evaluate", task=f"evaluate-{j.name}"):
        res = evaluate(onnx_path(onnx_dir), j.domains, out_dir=out, train_domains=j.train_domains,
                       only_model_classes=True, device=j.device, progress=False)
    _mark(out, step="evaluate", model=j.name)
    if explain_dir is not None:
        ex = _fresh_dir(explain_dir)
        if j.explain:
            from drsynth.explain import explain

            explain(j.domains, ex, onnx_model=onnx_path(onnx_dir), checkpoint=checkpoint_dir, k=j.explain_k,
                    name=j.name)
        _mark(ex, step="explain", model=j.name, skip=not j.explain)
    for name, d in res.domains.items():
        print(f"{j.name} on {name}: accuracy {d.accuracy:.3f} (n={d.n})", flush=True)
    return res.model_dump(mode="json")


# --- studies and the report -----------------------------------------------------------------------------------


def _by_model(folders: Sequence[str | os.PathLike[str]], step: str) -> dict[str, Path]:
    out: dict[str, Path] = {}
    for f in folders:
        info = read_marker(f)
        if info.get("step") != step:
            raise DatasetError(f"{f} holds the output of step {info.get('step')!r}, expected {step!r}")
        if not info.get("skip"):
            out[info["model"]] = Path(f)
    return out


def collect_studies(plan: dict[str, Any], eval_dirs: Sequence[str | os.PathLike[str]],
                    out_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """Fan-in: every study's results.json + figure.png (design.md) into OUT/<study>/, from the models'
    evaluations. Returns {study: {"<group>/<condition>/<domain>/<metric>": mean}}."""
    from drsynth.studies import collect_study

    p = RunPlan.parse(plan)
    evals = _by_model(eval_dirs, "evaluate")
    out = _fresh_dir(out_dir)
    summary: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="drsynth-studies-") as tmp:
        run = Path(tmp)
        (run / "eval").mkdir()
        for model, folder in evals.items():
            os.symlink(folder.resolve(), run / "eval" / model)
        for sp in study_plans(p):
            res = collect_study(sp, run, extra_notes=[n for n in p.notes if n not in sp.notes])
            shutil.copytree(run / "studies" / sp.study, out / sp.study)
            summary[sp.study] = {f"{c.group}/{c.name}/{c.domain}/{c.metric}": c.mean for c in res.conditions}
    _mark(out, step="studies", studies=list(summary))
    return summary


def run_json(p: RunPlan) -> dict[str, Any]:
    """run.json of a pipeline run (design.md, "Run directory")."""
    datasets = {n: d.uri for n, d in p.datasets.items() if d.source != "skip"}
    return {
        "format": "drsynth-run/1",
        "name": p.config.name,
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "preset": p.config.preset,
        "config": p.config.model_dump(mode="json"),
        "scenarios": p.scenarios,
        "domains": {n: d.model_dump(exclude={"dataset"}) for n, d in p.domains.items()},
        "datasets": datasets,
        "notes": list(p.notes),
        "drsynth_version": __version__,
    }


def assemble_run(plan: dict[str, Any], out_dir: str | os.PathLike[str], *,
                 eval_dirs: Sequence[str | os.PathLike[str]] = (),
                 log_dirs: Sequence[str | os.PathLike[str]] = (),
                 explain_dirs: Sequence[str | os.PathLike[str]] = (),
                 studies_dir: str | os.PathLike[str] | None = None,
                 html_path: str | os.PathLike[str] | None = None,
                 md_path: str | os.PathLike[str] | None = None) -> dict[str, str]:
    """Lay the run folder out (design.md, "Run directory") from the steps' outputs, with the datasets' contact
    sheets from the store, and write report.html + report.md (copied to `html_path`/`md_path` too)."""
    from drsynth.report import build_report
    from drsynth.storage import is_s3_uri, open_store

    p = RunPlan.parse(plan)
    run = _fresh_dir(out_dir)
    atomic_write_json(run / "run.json", run_json(p))
    for model, folder in _by_model(eval_dirs, "evaluate").items():
        shutil.copytree(folder, run / "eval" / model, ignore=shutil.ignore_patterns(MARKER))
    for model, folder in _by_model(log_dirs, "train").items():
        ck = run / "models" / model / "checkpoint"
        shutil.copytree(folder, ck, ignore=shutil.ignore_patterns(MARKER, "spec.json"))
        if (folder / "spec.json").is_file():
            shutil.copy2(folder / "spec.json", run / "models" / model / "spec.json")
    for model, folder in _by_model(explain_dirs, "explain").items():
        shutil.copytree(folder, run / "explain" / model, ignore=shutil.ignore_patterns(MARKER))
    if studies_dir is not None:
        for study in sorted(Path(studies_dir).iterdir()):
            if study.is_dir():
                shutil.copytree(study, run / "studies" / study.name)
    for name, ds in p.datasets.items():
        if ds.source == "skip":
            continue
        try:
            sheet = open_store(ds.uri).get_bytes("card/contact_sheet.png")
        except Exception as e:  # a missing card must not sink the report; say so instead
            print(f"no contact sheet for {name} ({e})", flush=True)
            continue
        if sheet is not None:
            atomic_write_bytes(run / "samples" / f"{name}.png", sheet)
    html, md = build_report(run, title=f"drsynth run {p.config.name} ({p.config.preset})")
    for src, dst in ((html, html_path), (md, md_path)):
        if dst is not None:
            Path(dst).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst)
    out = {"run": str(run), "html": str(html), "md": str(md)}
    if is_s3_uri(p.config.store_uri):  # beside the datasets, readable without Kubeflow's artifact store
        out["published"] = upload_folder(run, run_uri(p.config.store_uri, p.config.name))
    return out


def run_uri(store_uri: str, name: str) -> str:
    """Where a cluster run's folder is published in the object store."""
    return f"{store_uri.rstrip('/')}/runs/{name}"


def upload_folder(folder: str | os.PathLike[str], uri: str) -> str:
    """Every file under `folder` to the store at `uri` (same relative keys)."""
    from drsynth.storage import open_store, sha256_file

    store = open_store(uri)
    store.prepare_for_write()
    root = Path(folder)
    for f in sorted(root.rglob("*")):
        if f.is_file():
            store.put_file(f.relative_to(root).as_posix(), f, sha256=sha256_file(f))
    return store.uri


# --- serving ------------------------------------------------------------------------------------------------------


def publish_model(onnx_dir: str | os.PathLike[str], triton_dir: str | os.PathLike[str], store_uri: str,
                  prefix: str = "models/latest") -> dict[str, str]:
    """Upload OUT/model.onnx to STORE/<prefix>/onnx/ and the Triton repository to STORE/<prefix>/triton/: the
    locations the KServe InferenceServices in manifests/base/serving read."""
    from drsynth.storage import open_store, sha256_file

    base = f"{store_uri.rstrip('/')}/{prefix.strip('/')}"
    onnx_store = open_store(f"{base}/onnx")
    onnx_store.prepare_for_write()
    onnx_file = onnx_path(onnx_dir)
    onnx_store.put_file(ONNX_FILE, onnx_file, sha256=sha256_file(onnx_file))
    triton_store = open_store(f"{base}/triton")
    triton_store.prepare_for_write()
    root = Path(triton_dir)
    files = sorted(f for f in root.rglob("*") if f.is_file() and f.name != MARKER)
    for f in files:
        triton_store.put_file(f.relative_to(root).as_posix(), f, sha256=sha256_file(f))
    return {"onnx_uri": f"{base}/onnx/{ONNX_FILE}", "triton_uri": f"{base}/triton/",
            "triton_files": str(len(files))}


__all__ = [
    "assemble_run", "collect_studies", "dataset_jobs", "evaluate_model", "export_model", "fetch_folder",
    "import_datasets", "make_plan", "model_items", "package_dataset", "primary_domain", "publish_model",
    "read_marker", "render_shard", "run_json", "train_model",
]
