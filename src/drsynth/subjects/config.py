"""Typed configuration of the subject pool of one class (part of the scenario's `subject` randomizer)."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field


class ClassSubjects(BaseModel):
    """Where a class's subjects come from: a procedural generator, a folder of models, or both.

    procedural: generator name ("cat", "dog", "bicycle", "car"), or null for models only.
    breeds: the generator's named presets to use; null = all of them.
    blends: extra subjects sampled continuously between presets (deterministic from the scenario seed).
    models_dir: folder of glTF/GLB/OBJ files of this class; files that fail to load are reported and skipped.
    single: the subject kept when the subject randomizer is disabled (the "single breed" ablation);
        a preset name or a model file name; null = the first preset (or first model).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    procedural: str | None = None
    breeds: list[str] | None = None
    blends: int = Field(0, ge=0, le=10_000)
    models_dir: Path | None = None
    single: str | None = None
