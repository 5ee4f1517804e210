"""Seeded random generators: one per (scenario seed, image index, randomizer name).

Every random choice of an image flows from here. Each randomizer gets its own child stream, keyed by a stable
hash of its name (zlib.crc32, never Python's salted `hash()`), so switching one randomizer off, or changing how
many values it draws, never shifts the values of the others; and any image can be regenerated on its own.
"""

from __future__ import annotations

import zlib

import numpy as np

MAX_SEED = 2**63 - 1


def stream_key(name: str) -> int:
    """The stable integer that names a random stream (a randomizer, the subject-pool blends, ...)."""
    return zlib.crc32(name.encode("utf-8"))


def image_rng(seed: int, index: int, name: str) -> np.random.Generator:
    """The generator of randomizer `name` for image `index` of a scenario with seed `seed`."""
    if seed < 0 or index < 0:
        raise ValueError(f"seed and index must be >= 0, got seed={seed}, index={index}")
    return np.random.default_rng(np.random.SeedSequence([seed, index, stream_key(name)]))


def child_seed(rng: np.random.Generator) -> int:
    """A 31-bit seed drawn from `rng`, for a deterministic sub-computation recorded in the scene spec
    (e.g. the noise of a procedural sky), so the spec alone reproduces the image."""
    return int(rng.integers(0, 2**31 - 1))
