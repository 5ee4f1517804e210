"""Builds each class's subject pool from its configuration.

Procedural generators are modules exposing:
    preset_names() -> list[str]
    make_subjects(class_name: str, *, breeds: list[str] | None, blends: int, seed: int) -> list[Subject]
Imported models come from `drsynth.subjects.imported.load_models(folder, class_name, on_error=...)`.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable

from drsynth.errors import AssetError, ConfigError
from drsynth.subjects.base import Subject
from drsynth.subjects.config import ClassSubjects

log = logging.getLogger(__name__)

GENERATORS: dict[str, str] = {
    "cat": "drsynth.subjects.cats",
    "dog": "drsynth.subjects.dogs",
    "bicycle": "drsynth.subjects.bicycles",
    "car": "drsynth.subjects.cars",
}


def generator_module(name: str):
    if name not in GENERATORS:
        raise ConfigError(f"unknown procedural generator '{name}'; known: {sorted(GENERATORS)}")
    return importlib.import_module(GENERATORS[name])


def build_pool(
    class_name: str,
    cfg: ClassSubjects,
    *,
    seed: int,
    on_skip: Callable[[str, str], None] | None = None,
) -> list[Subject]:
    """All subjects of one class. A model file that fails to load is reported through `on_skip(path, reason)`
    (default: a warning) and skipped; a class left with no subject is an error."""
    subjects: list[Subject] = []
    if cfg.procedural:
        subjects += generator_module(cfg.procedural).make_subjects(
            class_name, breeds=cfg.breeds, blends=cfg.blends, seed=seed
        )
    if cfg.models_dir is not None:
        from drsynth.subjects.imported import load_models

        def _warn(path: str, reason: str) -> None:
            from drsynth import metrics

            log.warning("skipping model %s: %s", path, reason)
            metrics.render().failed_subjects.labels(class_name).inc()

        subjects += load_models(cfg.models_dir, class_name, on_error=on_skip or _warn)
    if not subjects:
        raise AssetError(
            f"class '{class_name}' has no subject: "
            + (
                f"no loadable model in {cfg.models_dir}"
                if cfg.models_dir
                else "no generator or models_dir configured"
            )
        )
    return subjects


def single_subject(pool: list[Subject], cfg: ClassSubjects) -> Subject:
    """The subject kept by the single-breed ablation."""
    if cfg.single is None:
        return pool[0]
    for s in pool:
        if cfg.single in (s.breed, s.id, s.id.rsplit("/", 1)[-1]):
            return s
    raise ConfigError(f"single subject '{cfg.single}' is not in the pool: {sorted({s.breed for s in pool})}")
