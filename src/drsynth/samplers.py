"""Stateless samplers (Unity Perception's Sampler layer): each draws from an explicitly passed generator.

Samplers are frozen values checked at construction; they hold no state and do no I/O. `sample_*` functions
consume an rng. Ranges in scenario files become these samplers (uniform by default, as in the paper).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Uniform:
    """Uniform on [low, high]; low == high is a constant."""

    low: float
    high: float

    def __post_init__(self) -> None:
        if not (math.isfinite(self.low) and math.isfinite(self.high)):
            raise ValueError(f"Uniform bounds must be finite, got [{self.low}, {self.high}]")
        if self.low > self.high:
            raise ValueError(f"Uniform needs low <= high, got [{self.low}, {self.high}]")

    def sample(self, rng: np.random.Generator) -> float:
        # Always draw, even for a constant, so a range edited to a point does not shift later draws.
        u = float(rng.random())
        return self.low + (self.high - self.low) * u


@dataclass(frozen=True)
class UniformInt:
    """Uniform integer on [low, high] inclusive."""

    low: int
    high: int

    def __post_init__(self) -> None:
        if self.low > self.high:
            raise ValueError(f"UniformInt needs low <= high, got [{self.low}, {self.high}]")

    def sample(self, rng: np.random.Generator) -> int:
        return int(rng.integers(self.low, self.high + 1))


@dataclass(frozen=True)
class Choice:
    """One of `options`, uniformly or with `weights`."""

    options: tuple[Any, ...]
    weights: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        if not self.options:
            raise ValueError("Choice needs at least one option")
        if self.weights is not None:
            if len(self.weights) != len(self.options):
                raise ValueError(f"Choice has {len(self.options)} options but {len(self.weights)} weights")
            if any(w < 0 for w in self.weights) or sum(self.weights) <= 0:
                raise ValueError(f"Choice weights must be >= 0 and not all 0, got {self.weights}")

    def sample(self, rng: np.random.Generator) -> Any:
        if self.weights is None:
            return self.options[int(rng.integers(0, len(self.options)))]
        p = np.asarray(self.weights, dtype=float)
        return self.options[int(rng.choice(len(self.options), p=p / p.sum()))]


def sample_unit_vector(rng: np.random.Generator) -> np.ndarray:
    v = rng.normal(size=3)
    return v / max(np.linalg.norm(v), 1e-12)


def sample_hemisphere_elevation_deg(rng: np.random.Generator, low_deg: float, high_deg: float) -> float:
    """An elevation in [low, high] degrees such that directions are uniform over that band of the upper
    hemisphere's surface (uniform in sin(elevation)), as the paper's "any location equally likely"."""
    s0, s1 = math.sin(math.radians(low_deg)), math.sin(math.radians(high_deg))
    return math.degrees(math.asin(s0 + (s1 - s0) * float(rng.random())))


def direction_from_angles(elevation_deg: float, azimuth_deg: float) -> np.ndarray:
    """Unit vector for an elevation above the ground plane (y up) and an azimuth around +Y from +X."""
    el, az = math.radians(elevation_deg), math.radians(azimuth_deg)
    return np.array([math.cos(el) * math.cos(az), math.sin(el), -math.cos(el) * math.sin(az)])


def sample_rotation(rng: np.random.Generator) -> np.ndarray:
    """A uniformly random 3x3 rotation (Shoemake's quaternion method)."""
    u1, u2, u3 = rng.random(3)
    q = np.array(
        [
            math.sqrt(1 - u1) * math.sin(2 * math.pi * u2),
            math.sqrt(1 - u1) * math.cos(2 * math.pi * u2),
            math.sqrt(u1) * math.sin(2 * math.pi * u3),
            math.sqrt(u1) * math.cos(2 * math.pi * u3),
        ]
    )
    return quaternion_matrix(q)


def quaternion_matrix(q: Sequence[float]) -> np.ndarray:
    """3x3 rotation of a unit quaternion (x, y, z, w)."""
    x, y, z, w = q
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
            [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
            [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
        ]
    )


def color_temperature_rgb(kelvin: float) -> tuple[float, float, float]:
    """Approximate linear-ish RGB (max component 1) of a black body at `kelvin` (Tanner Helland's fit)."""
    t = kelvin / 100.0
    if t <= 66:
        r = 255.0
        g = 99.4708025861 * math.log(t) - 161.1195681661
        b = 0.0 if t <= 19 else 138.5177312231 * math.log(t - 10) - 305.0447927307
    else:
        r = 329.698727446 * (t - 60) ** -0.1332047592
        g = 288.1221695283 * (t - 60) ** -0.0755148492
        b = 255.0
    rgb = np.clip(np.array([r, g, b]) / 255.0, 0.0, 1.0)
    rgb = rgb / max(rgb.max(), 1e-6)
    return (float(rgb[0]), float(rgb[1]), float(rgb[2]))
