"""What every randomizer shares: typed ranges, the config base class, the Randomizer interface and the
per-worker SceneContext (subject pools and asset lists) randomizers read from."""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, ClassVar

import numpy as np
from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict

from drsynth.samplers import Uniform, UniformInt
from drsynth.scene_spec import SceneSpec
from drsynth.subjects.base import Subject


def _to_pair(v: Any) -> Any:
    if isinstance(v, int | float) and not isinstance(v, bool):
        return (v, v)
    if isinstance(v, list | tuple) and len(v) == 2:
        return tuple(v)
    raise ValueError(f"expected a range [low, high] (or one number), got {v!r}")


def Range(lo: float = -math.inf, hi: float = math.inf) -> Any:  # noqa: N802 (a type factory)
    """A `[low, high]` range of floats (uniform by default), each bound within [lo, hi]."""

    def check(v: tuple[float, float]) -> tuple[float, float]:
        a, b = v
        if not (math.isfinite(a) and math.isfinite(b)):
            raise ValueError(f"range bounds must be finite numbers, got [{a}, {b}]")
        if a > b:
            raise ValueError(f"range must be [low, high] with low <= high, got [{a}, {b}]")
        if a < lo or b > hi:
            raise ValueError(f"range must lie within [{lo}, {hi}], got [{a}, {b}]")
        return (float(a), float(b))

    return Annotated[tuple[float, float], BeforeValidator(_to_pair), AfterValidator(check)]


def IntRange(lo: int = 0, hi: int = 1_000_000) -> Any:  # noqa: N802
    def check(v: tuple[int, int]) -> tuple[int, int]:
        a, b = v
        if a > b or a < lo or b > hi:
            raise ValueError(f"integer range must be [low, high] with {lo} <= low <= high <= {hi}, got [{a}, {b}]")
        return (int(a), int(b))

    return Annotated[tuple[int, int], BeforeValidator(_to_pair), AfterValidator(check)]


def uniform(r: tuple[float, float]) -> Uniform:
    return Uniform(*r)


def uniform_int(r: tuple[int, int]) -> UniformInt:
    return UniformInt(*r)


class RandomizerConfig(BaseModel):
    """Every randomizer has `enabled`; switched off it gives its fixed default (the ablation)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = True


@dataclass
class SceneContext:
    """What randomizers read besides their config: built once per worker from the scenario.

    pools: class -> its subjects; singles: class -> the subject the single-breed ablation keeps.
    """

    classes: list[str]
    pools: dict[str, list[Subject]]
    singles: dict[str, Subject]
    material_keys: list[str]
    material_image_dir: Path | None = None
    sky_images: list[str] = field(default_factory=list)
    sky_image_dir: Path | None = None

    def __post_init__(self) -> None:
        self._by_id = {s.id: s for pool in self.pools.values() for s in pool}

    def subject(self, subject_id: str) -> Subject:
        return self._by_id[subject_id]


class Randomizer(ABC):
    """One concern of the scene (Unity Perception's Randomizer). `apply` returns a new spec with the fields
    this randomizer owns filled in: sampled from `rng` when enabled, the fixed default when disabled."""

    name: ClassVar[str]

    def __init__(self, config: RandomizerConfig) -> None:
        self.config = config

    @property
    def enabled(self) -> bool:
        return self.config.enabled

    def apply(self, spec: SceneSpec, *, rng: np.random.Generator, ctx: SceneContext) -> SceneSpec:
        return self.sample(spec, rng=rng, ctx=ctx) if self.enabled else self.default(spec, ctx=ctx)

    @abstractmethod
    def sample(self, spec: SceneSpec, *, rng: np.random.Generator, ctx: SceneContext) -> SceneSpec: ...

    @abstractmethod
    def default(self, spec: SceneSpec, *, ctx: SceneContext) -> SceneSpec: ...
