"""Occluder randomizer: random primitive volumes near the subject at random scale, position and orientation.

Positions are relative to the subject (never to the camera), so toggling the camera randomizer leaves the
occluders alone. The bound on how much of the subject they may hide is enforced by `describe_scene`, which
measures it from rendered masks and asks this randomizer for another layout (its next draw) when exceeded.
"""

from __future__ import annotations

import math

import numpy as np
from pydantic import Field, field_validator

from drsynth.randomizers.base import IntRange, Randomizer, RandomizerConfig, Range, SceneContext, uniform
from drsynth.scene_spec import OccluderSpec, SceneSpec

SHAPES = ("box", "sphere", "cylinder", "capsule", "cone", "torus", "icosahedron", "pyramid")


class OccludersConfig(RandomizerConfig):
    """size: the occluder's base extent in subject radii; aspect: per-axis stretch of that extent;
    distance: horizontal distance of its centre from the subject centre, in subject radii;
    height: its centre's height above the ground, in subject radii;
    max_hidden_fraction: the largest share of the subject's pixels the occluders may hide (measured);
    max_tries: layouts drawn before giving up with an error."""

    count: IntRange(0, 16) = (1, 4)
    shapes: list[str] = Field(default_factory=lambda: list(SHAPES))
    size: Range(0.01, 10.0) = (0.25, 0.9)
    aspect: Range(0.05, 20.0) = (0.4, 1.8)
    distance: Range(0.0, 20.0) = (0.7, 2.2)
    height: Range(-2.0, 20.0) = (0.0, 1.4)
    max_hidden_fraction: float = Field(0.6, ge=0.0, le=1.0)
    max_tries: int = Field(40, ge=1, le=10_000)

    @field_validator("shapes")
    @classmethod
    def _known(cls, v: list[str]) -> list[str]:
        unknown = sorted(set(v) - set(SHAPES))
        if unknown or not v:
            raise ValueError(f"shapes must be a non-empty subset of {list(SHAPES)}; unknown: {unknown}")
        return v


class OccludersRandomizer(Randomizer):
    name = "occluders"
    config: OccludersConfig

    def sample(self, spec: SceneSpec, *, rng: np.random.Generator, ctx: SceneContext) -> SceneSpec:
        c = self.config
        center = np.asarray(spec.subject.center_m)
        radius = float(spec.subject.radius_m)
        n = int(rng.integers(c.count[0], c.count[1] + 1))
        occluders = []
        for _ in range(n):
            shape = c.shapes[int(rng.integers(0, len(c.shapes)))]
            base = uniform(c.size).sample(rng) * radius
            size = tuple(float(base * uniform(c.aspect).sample(rng)) for _ in range(3))
            az = float(rng.uniform(0, 2 * math.pi))
            dist = uniform(c.distance).sample(rng) * radius
            height = uniform(c.height).sample(rng) * radius
            pos = (float(center[0] + dist * math.cos(az)), float(height), float(center[2] - dist * math.sin(az)))
            rot = tuple(float(a) for a in rng.uniform(0.0, 360.0, 3))
            occluders.append(OccluderSpec(shape=shape, position_m=pos, rotation_euler_deg=rot, size_m=size))
        return spec.replace(occluders=tuple(occluders))

    def default(self, spec: SceneSpec, *, ctx: SceneContext) -> SceneSpec:
        return spec.replace(occluders=())
