"""Breed presets and blends shared by the cat and dog generators."""

from __future__ import annotations

import dataclasses
import zlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from drsynth.errors import ConfigError
from drsynth.subjects.coats import Coat
from drsynth.subjects.quadruped import Anatomy, QuadrupedSubject


@dataclass(frozen=True)
class BreedPreset:
    """A named breed: anatomy overrides on the class's base anatomy, and its coat."""

    name: str
    anatomy: dict[str, Any] = field(default_factory=dict)
    coat: Coat | None = None

    def resolve(self, base: Anatomy) -> Anatomy:
        unknown = set(self.anatomy) - {f.name for f in dataclasses.fields(Anatomy)}
        if unknown:
            raise ValueError(f"preset {self.name}: unknown anatomy fields {sorted(unknown)}")
        return dataclasses.replace(base, **{k: float(v) for k, v in self.anatomy.items()})


def _breed_seed(seed: int, name: str) -> int:
    # crc32, not hash(): stable across processes.
    return int(np.random.SeedSequence([seed, zlib.crc32(name.encode())]).generate_state(1)[0])


def make_breed_subjects(
    class_name: str,
    species: str,
    base: Anatomy,
    presets: dict[str, BreedPreset],
    *,
    breeds: list[str] | None,
    blends: int,
    seed: int,
) -> list[QuadrupedSubject]:
    """The chosen presets (all when `breeds` is None) plus `blends` subjects sampled between two random
    presets of that list: anatomy interpolated and jittered, coat colours mixed, pattern of one parent."""
    names = list(presets) if breeds is None else list(breeds)
    unknown = [b for b in names if b not in presets]
    if unknown:
        raise ConfigError(
            f"unknown {species} breed(s) {unknown} in subject.breeds; known presets: {sorted(presets)} "
            "(fix the scenario's subject.classes.<class>.breeds list)"
        )
    if not names:
        raise ConfigError(
            f"subject.breeds for class '{class_name}' is empty; list at least one {species} preset"
        )
    subjects: list[QuadrupedSubject] = []
    for name in names:
        p = presets[name]
        subjects.append(
            QuadrupedSubject(
                class_name=class_name,
                breed=name,
                anatomy=p.resolve(base),
                coat=p.coat,
                seed=_breed_seed(seed, name) % (2**31),
            )
        )
    rng = np.random.default_rng(np.random.SeedSequence([seed, zlib.crc32(f"{species}-blends".encode())]))
    for k in range(blends):
        a, b = rng.choice(len(names), size=2, replace=len(names) < 2)
        pa, pb = presets[names[a]], presets[names[b]]
        t = float(rng.uniform(0.2, 0.8))
        anatomy = pa.resolve(base).blend(pb.resolve(base), t).jitter(rng, 0.05)
        coat = pa.coat.blend(pb.coat, t, rng)
        breed = f"blend:{pa.name}+{pb.name}"
        subjects.append(
            QuadrupedSubject(
                class_name=class_name,
                breed=breed,
                anatomy=anatomy,
                coat=coat,
                seed=int(rng.integers(0, 2**31)),
                id_suffix=f"blend-{k:04d}-{pa.name}-{pb.name}",
            )
        )
    return subjects
