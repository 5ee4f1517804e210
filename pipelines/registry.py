"""The pipelines by name, their default arguments per preset, and deterministic compilation to YAML."""

from __future__ import annotations

from pathlib import Path
from typing import Any

COMPILED_DIR = Path(__file__).resolve().parent / "compiled"


def _pipelines() -> dict[str, Any]:
    from drsynth_pipelines.paper_study import paper_study
    from drsynth_pipelines.train_and_serve import train_and_serve

    return {"paper_study": paper_study, "train_and_serve": train_and_serve}


PIPELINES = ("paper_study", "train_and_serve")


def get_pipeline(name: str) -> Any:
    from drsynth.errors import ConfigError

    pipelines = _pipelines()
    if name not in pipelines:
        raise ConfigError(f"unknown pipeline {name!r}: expected one of {', '.join(PIPELINES)}")
    return pipelines[name]


def default_arguments(pipeline_name: str, preset_name: str, /, **overrides: Any) -> dict[str, Any]:
    """The arguments of a pipeline for a preset (drsynth.presets) with `overrides`, restricted to its
    parameters."""
    from drsynth.presets import preset as make_preset

    pipeline = get_pipeline(pipeline_name)
    store = overrides.pop("store_uri", "s3://drsynth")
    params = make_preset(preset_name, store_uri=store, **overrides).pipeline_parameters()
    if pipeline_name == "train_and_serve":
        params.update({"studies": []})
    names = set(pipeline.component_spec.inputs or {})
    return {k: v for k, v in params.items() if k in names}


def compile_pipeline(name: str, path: str | Path) -> Path:
    """Compile pipeline `name` to `path`. The YAML depends only on the code (no timestamps, stable order), so
    a recompile of unchanged code gives the same bytes."""
    from kfp import compiler

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp.yaml")
    compiler.Compiler().compile(get_pipeline(name), str(tmp))
    tmp.replace(path)
    return path


def compile_all(out_dir: str | Path = COMPILED_DIR) -> list[Path]:
    return [compile_pipeline(name, Path(out_dir) / f"{name}.yaml") for name in PIPELINES]
