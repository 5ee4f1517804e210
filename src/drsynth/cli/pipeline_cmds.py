"""`drsynth run` (the pipeline on this machine) and `drsynth pipeline compile|submit` (Kubeflow).

This module and drsynth_pipelines/drsynth_components are the only code that imports kfp.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import typer

PRESET_HELP = "ci (integration test), quick (minutes on a CPU), default (one GPU), paper (the paper's sizes)."
# The run folder's own parts (replaced by each run); datasets/ (the default store) and kfp/ are kept.
RUN_PARTS = ("run.json", "report.html", "report.md", "eval", "models", "explain", "studies", "samples")


def _parse_sets(items: list[str] | None) -> dict[str, Any]:
    import yaml

    from drsynth.errors import ConfigError

    out: dict[str, Any] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set expects KEY=VALUE (e.g. --set epochs=3), got {item!r}")
        out[key.strip().replace("-", "_")] = yaml.safe_load(value) if value else ""
    return out


def _overrides(images_per_class: int | None, epochs: int | None, backbone: str | None, seeds: int | None,
               render_size: int | None, input_size: int | None, weights: str | None,
               sets: list[str] | None) -> dict[str, Any]:
    given = {"images_per_class": images_per_class, "epochs": epochs, "backbone": backbone, "seeds": seeds,
             "render_size": render_size, "input_size": input_size, "weights": weights}
    return {k: v for k, v in given.items() if v is not None} | _parse_sets(sets)


def _folder_uri(value: str | None, flag: str) -> str | None:
    """A user domain: an s3:// prefix as is, a local folder made absolute (tasks run elsewhere)."""
    from drsynth.errors import ConfigError

    if not value:
        return None
    if value.startswith("s3://"):
        return value
    path = Path(value[len("file://"):] if value.startswith("file://") else value).expanduser()
    if not path.is_dir():
        raise ConfigError(f"{flag} {value}: not a folder; expected DIR/<class>/*.jpg (e.g. DIR/cat, DIR/dog)")
    return str(path.resolve())


def register(app: typer.Typer) -> None:
    """Add this area's commands to the root app."""
    pipeline_app = typer.Typer(
        help="Kubeflow pipelines: compile them to YAML, submit a run to a Kubeflow endpoint.",
        no_args_is_help=True,
    )
    app.add_typer(pipeline_app, name="pipeline")

    @app.command("run")
    def run_cmd(
        preset: str = typer.Option("quick", "--preset", help=PRESET_HELP),
        store: str = typer.Option(
            None, "--store", metavar="URI",
            help="Where datasets go: s3://bucket/prefix (S3 settings from the environment, see `drsynth store "
            "up`), file:///path or a folder. Default: the run folder.",
        ),
        real: str = typer.Option(None, "--real", metavar="DIR", help="Real photos DIR/<class>/* (80% train, 20% "
                                 "test). Without it drsynth tests on held-out renders."),
        real_test: str = typer.Option(None, "--real-test", metavar="DIR", help="Separate real test photos."),
        toon: str = typer.Option(None, "--toon", metavar="DIR", help="Cartoons DIR/<class>/* (default: drsynth's "
                                 "toon-style renders)."),
        out: Path = typer.Option(None, "--out", help="Run folder (default: runs/<preset>)."),
        images_per_class: int = typer.Option(None, "--images-per-class", min=2),
        epochs: int = typer.Option(None, "--epochs", min=1),
        backbone: str = typer.Option(None, "--backbone"),
        seeds: int = typer.Option(None, "--seeds", min=1),
        render_size: int = typer.Option(None, "--image-size", min=16, help="Render side, pixels."),
        input_size: int = typer.Option(None, "--input-size", min=16, help="Network input side, pixels."),
        weights: str = typer.Option(None, "--weights", help="imagenet | none | PATH to a torchvision state dict."),
        sets: list[str] = typer.Option(None, "--set", metavar="KEY=VALUE",
                                       help="Any other run setting (drsynth.presets.RunConfig / StudyConfig)."),
        cache: bool = typer.Option(True, "--cache/--no-cache", help="Reuse unchanged task outputs of earlier runs."),
    ) -> None:
        """Run the paper_study pipeline on this machine (kfp.local, no cluster) and print where the report is."""
        _run(preset=preset, store=store, real=real, real_test=real_test, toon=toon, out=out, cache=cache,
             overrides=_overrides(images_per_class, epochs, backbone, seeds, render_size, input_size, weights, sets))

    @pipeline_app.command("compile")
    def compile_cmd(
        out: Path = typer.Option(None, "--out", help="Folder for <pipeline>.yaml (default: pipelines/compiled)."),
    ) -> None:
        """Compile paper_study and train_and_serve to YAML (uploadable in the Kubeflow UI)."""
        from drsynth_pipelines.registry import COMPILED_DIR, compile_all

        for path in compile_all(out or COMPILED_DIR):
            typer.echo(f"wrote {path}")

    @pipeline_app.command("submit")
    def submit_cmd(
        host: str = typer.Option(..., "--host", metavar="URL", help="Kubeflow Pipelines endpoint, e.g. "
                                 "http://localhost:8080 (a port-forward of ml-pipeline-ui)."),
        pipeline: str = typer.Option("paper_study", "--pipeline", help="paper_study | train_and_serve"),
        preset: str = typer.Option("default", "--preset", help=PRESET_HELP),
        store: str = typer.Option("s3://drsynth", "--store", metavar="URI", help="The object store, as the pods "
                                  "see it (credentials: the store Secret)."),
        real: str = typer.Option(None, "--real", metavar="URI", help="Real photos (s3:// prefix of DIR/<class>/*)."),
        toon: str = typer.Option(None, "--toon", metavar="URI", help="Cartoons (s3:// prefix of DIR/<class>/*)."),
        gpus: int = typer.Option(1, "--gpus", min=0, help="GPUs per training task (0 on CPU-only clusters)."),
        experiment: str = typer.Option("drsynth", "--experiment"),
        run_name: str = typer.Option(None, "--run-name", help="Default: <pipeline>-<preset>-<time>."),
        namespace: str = typer.Option(None, "--namespace", help="Kubeflow profile namespace (multi-user)."),
        existing_token: str = typer.Option(None, "--token", envvar="KFP_TOKEN", help="Bearer token, if needed."),
        wait: bool = typer.Option(False, "--wait", help="Wait for the run to finish and print its results."),
        timeout: int = typer.Option(7200, "--timeout", help="Seconds to wait with --wait."),
        sets: list[str] = typer.Option(None, "--set", metavar="KEY=VALUE", help="Any other pipeline parameter."),
    ) -> None:
        """Upload a pipeline (a new version when it exists) and start a run on a Kubeflow endpoint."""
        from drsynth.errors import ConfigError
        from drsynth_pipelines.registry import default_arguments

        name = run_name or f"{pipeline.replace('_', '-')}-{preset}-{time.strftime('%Y%m%d-%H%M%S')}"
        extra = _parse_sets(sets)
        # pipeline parameters with no RunConfig field: passed straight to the run (train_gpus comes from --gpus)
        passthrough = ("store_secret", "model_name", "publish_prefix", "pushgateway_url")
        overrides = {k: v for k, v in extra.items() if k not in ("train_gpus", *passthrough)}
        for flag, value, key in (("--real", real, "real_uri"), ("--toon", toon, "toon_uri")):
            if value and not value.startswith("s3://"):
                raise ConfigError(f"{flag} {value}: a cluster run reads photos from the object store; upload the "
                                  "folder (DIR/<class>/*) and give its s3://bucket/prefix")
            if value:
                overrides[key] = value
        args = default_arguments(pipeline, preset, store_uri=store, name=name, **overrides)
        args["train_gpus"] = gpus
        args.update({k: v for k, v in extra.items() if k in passthrough})
        if preset in ("ci", "quick"):
            args.setdefault("render_workers", 1)
        if not store.startswith("s3://"):
            raise ConfigError(f"--store {store}: a cluster run needs an object store (s3://bucket/prefix)")
        _submit(host=host, pipeline=pipeline, arguments=args, experiment=experiment, run_name=name,
                namespace=namespace, token=existing_token, wait=wait, timeout=timeout)


# --- drsynth run ------------------------------------------------------------------------------------------------


def _run(*, preset: str, store: str | None, real: str | None, real_test: str | None, toon: str | None,
         out: Path | None, cache: bool, overrides: dict[str, Any]) -> None:
    from rich.console import Console

    from drsynth.errors import ConfigError, PipelineError
    from drsynth.presets import PRESETS
    from drsynth.presets import preset as make_preset
    from drsynth.runplan import count_tasks, plan_run

    console = Console(file=sys.stdout)  # bound now: kfp.local's output is redirected to the task log
    if preset not in PRESETS:
        raise ConfigError(f"unknown preset {preset!r}: expected one of {', '.join(PRESETS)}")
    run_dir = (out or Path("runs") / preset).absolute()
    store_uri = store or run_dir.as_uri()
    # Local defaults: one render process per task and in-process data loading (kfp.local already runs two
    # tasks at a time on this machine), CPU unless the user asks otherwise.
    local = {"render_workers": 1, "train_workers": 0, "name": run_dir.name}
    cfg = make_preset(preset, store_uri=store_uri, real_uri=_folder_uri(real, "--real"),
                      real_test_uri=_folder_uri(real_test, "--real-test"), toon_uri=_folder_uri(toon, "--toon"),
                      **(local | overrides))
    console.print(f"[bold]drsynth run[/] preset [cyan]{preset}[/]: planning ...", highlight=False)
    plan = plan_run(cfg)  # validates the settings and the user's folders before any task starts
    total = count_tasks(plan)
    domains = ", ".join(f"{n} ({d.source})" for n, d in plan.domains.items())
    console.print(f"  {len([d for d in plan.datasets.values() if d.source != 'skip'])} datasets, "
                  f"{total} tasks; test domains: {domains}; store: {store_uri}", highlight=False)
    for note in plan.notes:
        if note.startswith("no real photos"):
            console.print(f"  [yellow]note:[/] {note}", highlight=False)

    from drsynth_pipelines.local import run_local, tail
    from drsynth_pipelines.registry import get_pipeline

    names = set(get_pipeline("paper_study").component_spec.inputs or {})
    arguments = {k: v for k, v in cfg.pipeline_parameters().items() if k in names}
    arguments["train_gpus"] = 0
    work = run_dir / "kfp"
    os.environ.setdefault("PYOPENGL_PLATFORM", "egl")
    # Two tasks run at a time here: give each its share of the cores instead of letting both grab all.
    cores = max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, cores // 2)))
    t0 = time.monotonic()
    result = _with_progress(console, total, lambda events: run_local(
        "paper_study", arguments, work_dir=work, cache=cache, events=events), work / "tasks.log", tail)
    folder = Path(result.output.path)
    if not (folder / "report.html").is_file():
        raise PipelineError(f"the pipeline finished but left no report in {folder} (task logs: {work / 'tasks.log'})")
    for part in RUN_PARTS:
        target = run_dir / part
        if target.is_dir():
            shutil.rmtree(target)
        elif target.exists():
            target.unlink()
        src = folder / part
        if src.is_dir():
            shutil.copytree(src, target)
        elif src.is_file():
            shutil.copy2(src, target)
    minutes = (time.monotonic() - t0) / 60
    console.print(f"[bold green]done[/] in {minutes:.1f} min. Report: [bold]{run_dir / 'report.html'}[/] "
                  f"(Markdown: {run_dir / 'report.md'}; task logs: {work / 'tasks.log'})", highlight=False)


def _with_progress(console, total: int, run, log_path: Path, tail) -> Any:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from drsynth.errors import PipelineError
    from drsynth_pipelines.local import TaskEvents

    running: dict[str, int] = {}
    with Progress(TextColumn("[bold]pipeline[/]"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  TextColumn("{task.description}"), console=console, transient=False) as bar:
        task = bar.add_task("", total=total)

        def describe() -> str:
            return ", ".join(sorted(running)) if running else ""

        def on_start(name: str) -> None:
            running[name] = running.get(name, 0) + 1
            bar.update(task, description=describe())

        def on_finish(name: str, status: str) -> None:
            if running.get(name, 0) > 1:
                running[name] -= 1
            else:
                running.pop(name, None)
            bar.update(task, advance=1, description=describe())
            if status == "FAILURE":
                console.print(f"[red]task {name} failed[/]", highlight=False)

        try:
            return run(TaskEvents(on_start=on_start, on_finish=on_finish))
        except PipelineError:
            bar.stop()
            console.print(f"[dim]--- last lines of {log_path} ---[/]\n{tail(log_path)}", highlight=False,
                          markup=False)
            raise


# --- drsynth pipeline submit --------------------------------------------------------------------------------


def _submit(*, host: str, pipeline: str, arguments: dict[str, Any], experiment: str, run_name: str,
            namespace: str | None, token: str | None, wait: bool, timeout: int) -> None:
    import tempfile

    import kfp

    from drsynth.errors import PipelineError
    from drsynth_pipelines.registry import compile_pipeline

    try:
        client = kfp.Client(host=host, namespace=namespace or "kubeflow", existing_token=token)
        with tempfile.TemporaryDirectory(prefix="drsynth-submit-") as tmp:
            package = compile_pipeline(pipeline, Path(tmp) / f"{pipeline}.yaml")
            display = f"drsynth-{pipeline.replace('_', '-')}"
            pipeline_id = client.get_pipeline_id(display)
            version_name = f"{run_name}"
            if pipeline_id is None:
                uploaded = client.upload_pipeline(str(package), pipeline_name=display,
                                                  description=f"drsynth {pipeline}", namespace=namespace)
                pipeline_id = uploaded.pipeline_id
                version_id = client.list_pipeline_versions(pipeline_id).pipeline_versions[0].pipeline_version_id
            else:
                version = client.upload_pipeline_version(str(package), pipeline_version_name=version_name,
                                                         pipeline_id=pipeline_id)
                version_id = version.pipeline_version_id
        exp = client.create_experiment(experiment, namespace=namespace)
        run = client.run_pipeline(experiment_id=exp.experiment_id, job_name=run_name, params=arguments,
                                  pipeline_id=pipeline_id, version_id=version_id, enable_caching=True)
    except Exception as e:  # connection refused, 4xx/5xx from the API server
        if isinstance(e, PipelineError):
            raise
        raise PipelineError(f"Kubeflow Pipelines at {host} refused the submission: {type(e).__name__}: "
                            f"{str(e).splitlines()[0] if str(e) else ''} (is the endpoint right and reachable? "
                            "e.g. kubectl -n kubeflow port-forward svc/ml-pipeline-ui 8080:80)") from None
    typer.echo(f"started run {run_name} ({run.run_id}) of {pipeline}: {host.rstrip('/')}/#/runs/details/{run.run_id}")
    if not wait:
        return
    detail = client.wait_for_run_completion(run.run_id, timeout=timeout)
    state = str(getattr(detail, "state", "?"))
    typer.echo(f"run {run_name} finished: {state}")
    if state.upper() not in ("SUCCEEDED", "SUCCESS"):
        raise PipelineError(f"run {run_name} ({run.run_id}) ended {state}; see its page in the Kubeflow UI")
    if pipeline == "paper_study":
        print_results(arguments["store_uri"], run_name)


def print_results(store_uri: str, run_name: str) -> None:
    """The studies' bars of a finished cluster run, from its run folder in the object store."""
    import json

    from rich.console import Console
    from rich.table import Table

    from drsynth.steps import run_uri
    from drsynth.storage import open_store

    uri = run_uri(store_uri, run_name)
    store = open_store(uri)
    table = Table(title=f"{run_name}: study results ({uri})")
    for col in ("study", "model", "condition", "domain", "metric", "mean"):
        table.add_column(col)
    found = False
    for obj in store.list("studies/"):
        if not obj.key.endswith("/results.json"):
            continue
        res = json.loads(store.get_bytes(obj.key) or b"{}")
        for c in res.get("conditions", []):
            found = True
            table.add_row(res["study"], f"{c['group']}-trained", c["label"], c["domain"], c["metric"],
                          f"{c['mean']:.1%}")
    console = Console()
    if found:
        console.print(table)
    else:
        console.print(f"no study results under {uri}/studies/")
    console.print(f"report: {uri}/report.html")
