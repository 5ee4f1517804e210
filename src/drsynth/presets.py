"""Run presets: the parameter sets of `drsynth run --preset NAME` and of the Kubeflow pipelines.

A `RunConfig` is everything one pipeline run depends on besides its code: the study settings
(`drsynth.studies.StudyConfig`), which studies to run, how rendering is cut into tasks, where datasets go and
which user domains (real photos, cartoons) exist. The pipelines' UI parameters map one-to-one onto it
(`RunConfig.from_parameters`), so a run in the Kubeflow UI and `drsynth run` resolve to the same plan.

| preset | what it is for | size |
|---|---|---|
| `ci` | the integration test: every step and figure, the fewest tasks | 12 renders per class, 1 epoch |
| `quick` | the README's first command: every figure in minutes on a laptop CPU | 24 renders per class, 6 epochs |
| `default` | a useful run on one GPU | VGG-16, 1,000 renders per class |
| `paper` | the paper's sizes | VGG-16, 10,000 renders per class |
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from drsynth.errors import ConfigError
from drsynth.studies import ABLATIONS, ARCHITECTURE_VARIANTS, STUDIES, StudyConfig

PRESETS = ("ci", "quick", "default", "paper")
EXPLAIN_CHOICES = ("control", "all", "none")


class RunConfig(BaseModel):
    """One pipeline run's settings (validated at the edge: CLI flags or pipeline parameters)."""

    model_config = ConfigDict(extra="forbid")

    preset: str = Field("custom", description="the preset these settings started from (a label)")
    name: str = Field("drsynth-run", description="the run's name (run.json, report title)")
    study: StudyConfig = Field(default_factory=StudyConfig)
    studies: list[str] = Field(default_factory=lambda: list(STUDIES), description="studies to run")
    shard_size: int = Field(1000, ge=1, description="images per render task and per dataset shard")
    max_breeds: int = Field(
        0, ge=0, description="at most this many breed presets per procedural class, and no blends (0: all)"
    )
    explain: Literal["control", "all", "none"] = Field(
        "control", description="heatmaps (study.explain_k images per class and domain) for the control models "
        "(seed 0; the transfer study's), all models, or none"
    )
    render_workers: int = Field(0, ge=0, description="render processes per render task (0: the task's cores)")
    train_workers: int = Field(0, ge=0, description="data-loader workers per training task (0: in process)")
    device: Literal["auto", "cpu", "cuda"] = "auto"
    import_max_side: int = Field(512, ge=0, description="imported photos larger than this are downscaled (0: keep)")
    store_uri: str = Field(description="where datasets and models go: s3://bucket/prefix, file:///path or a folder")
    real_uri: str | None = Field(None, description="real photos DIR/<class>/* (a folder or s3:// prefix)")
    real_test_uri: str | None = Field(None, description="separate real test photos (default: 20% of real_uri)")
    toon_uri: str | None = Field(None, description="cartoons DIR/<class>/* (default: drsynth's toon renders)")

    @field_validator("studies")
    @classmethod
    def _known_studies(cls, v: list[str]) -> list[str]:
        unknown = [s for s in v if s not in STUDIES]
        if unknown:
            raise ValueError(f"unknown studies {unknown}: expected some of {list(STUDIES)}")
        return list(dict.fromkeys(v))

    @field_validator("real_uri", "real_test_uri", "toon_uri")
    @classmethod
    def _empty_is_none(cls, v: str | None) -> str | None:
        return v.strip() or None if isinstance(v, str) else v

    @field_validator("store_uri")
    @classmethod
    def _store(cls, v: str) -> str:
        v = v.strip()
        if not v:
            raise ValueError("store_uri is empty: give s3://bucket/prefix, file:///path or a folder")
        return v.rstrip("/") if v not in ("/", "file:///") else v

    @classmethod
    def from_parameters(cls, **params: Any) -> RunConfig:
        """Build from the flat pipeline parameters (the Kubeflow UI's form; see `pipeline_parameters`)."""
        own = set(cls.model_fields) - {"study"}
        study = {k: v for k, v in params.items() if k not in own}
        rest = {k: v for k, v in params.items() if k in own}
        for key in ("weights", "curate_weights"):  # the UI form has no None: "default" (or empty) stands for it
            if study.get(key) in ("", "default"):
                study[key] = None
        try:
            return cls(study=StudyConfig(**study), **rest)
        except ConfigError:
            raise
        except Exception as e:  # pydantic's ValidationError: one line naming the parameter
            raise ConfigError(f"invalid run parameters: {_one_line(e)}") from None

    def pipeline_parameters(self) -> dict[str, Any]:
        """The flat parameters a pipeline takes (the inverse of `from_parameters`)."""
        out = self.model_dump(mode="json", exclude={"study"})
        study = self.study.model_dump(mode="json", exclude={"train_extra", "workers"})
        study["weights"] = study["weights"] or "default"
        study["curate_weights"] = study["curate_weights"] or "default"
        return {**study, **{k: ("" if v is None else v) for k, v in out.items()}}


def _one_line(e: Exception) -> str:
    errors = getattr(e, "errors", None)
    if callable(errors):
        return "; ".join(f"{'.'.join(map(str, err['loc']))}: {err['msg']}" for err in errors())
    return str(e)


def preset(name: str, /, *, store_uri: str, **overrides: Any) -> RunConfig:
    """The settings of preset `name` with `overrides` (RunConfig fields, or StudyConfig fields by name)."""
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}: expected one of {', '.join(PRESETS)}")
    own = set(RunConfig.model_fields) - {"study"}
    study_over = {k: v for k, v in overrides.items() if k not in own}
    run_over = {k: v for k, v in overrides.items() if k in own}
    if name == "ci":
        # The integration test: the same pipeline and every figure, with the fewest and smallest tasks.
        study = StudyConfig.quick(**({
            "images_per_class": 12, "test_images_per_class": 6, "render_size": 48, "input_size": 32,
            "epochs": 1, "explain_k": 2, "ablations": ["control", "no-occluders"],
            "architecture_variants": ["no-dropout", "dropout-0.3"],
        } | study_over))
        base: dict[str, Any] = {"max_breeds": 2, "shard_size": 1000, "render_workers": 1}
    elif name == "quick":
        # Small CNN from scratch: a few more epochs at a higher rate than the studies' quick preset, so the
        # figures show models that learned a little rather than a wall of chance-level bars (~30 s of CPU).
        study = StudyConfig.quick(**({"explain_k": 3, "epochs": 6, "lr": 3e-3} | study_over))
        base = {"max_breeds": 4, "shard_size": 1000, "render_workers": 1}
    elif name == "default":
        study = StudyConfig.preset("default", **study_over)
        base = {"shard_size": 500, "render_workers": 4, "train_workers": 4}
    else:
        study = StudyConfig.preset("paper", **study_over)
        base = {"shard_size": 1000, "render_workers": 4, "train_workers": 4}
    try:
        return RunConfig(preset=name, name=run_over.pop("name", name), study=study,
                         store_uri=store_uri, **(base | run_over))
    except Exception as e:
        if isinstance(e, ConfigError):
            raise
        raise ConfigError(f"preset {name}: invalid override: {_one_line(e)}") from None


__all__ = ["ABLATIONS", "ARCHITECTURE_VARIANTS", "EXPLAIN_CHOICES", "PRESETS", "RunConfig", "preset"]
