"""Lighting randomizer: 1-3 directional lights (random direction, intensity and colour temperature; the
first, the key light, casts shadows) and an ambient level. Disabled = one fixed light."""

from __future__ import annotations

import numpy as np

from drsynth.randomizers.base import IntRange, Randomizer, RandomizerConfig, Range, SceneContext, uniform
from drsynth.samplers import color_temperature_rgb, sample_hemisphere_elevation_deg
from drsynth.scene_spec import LightSpec, SceneSpec


class LightingConfig(RandomizerConfig):
    """intensity: of the key light; fill lights get intensity * fill_ratio."""

    count: IntRange(1, 3) = (1, 3)
    elevation_deg: Range(1.0, 90.0) = (12.0, 85.0)
    azimuth_deg: Range(-360.0, 720.0) = (0.0, 360.0)
    intensity: Range(0.0, 100.0) = (1.5, 4.5)
    fill_ratio: Range(0.0, 2.0) = (0.15, 0.7)
    color_temperature_k: Range(1000.0, 40000.0) = (2500.0, 9500.0)
    ambient: Range(0.0, 5.0) = (0.05, 0.5)


FIXED_LIGHT = LightSpec(
    elevation_deg=55.0,
    azimuth_deg=40.0,
    intensity=3.0,
    color_temperature_k=5500.0,
    color=color_temperature_rgb(5500.0),
    cast_shadow=True,
)
FIXED_AMBIENT = 0.3


class LightingRandomizer(Randomizer):
    name = "lighting"
    config: LightingConfig

    def sample(self, spec: SceneSpec, *, rng: np.random.Generator, ctx: SceneContext) -> SceneSpec:
        c = self.config
        n = int(rng.integers(c.count[0], c.count[1] + 1))
        key_intensity = uniform(c.intensity).sample(rng)
        lights = []
        for i in range(n):
            kelvin = uniform(c.color_temperature_k).sample(rng)
            intensity = key_intensity if i == 0 else key_intensity * uniform(c.fill_ratio).sample(rng)
            lights.append(
                LightSpec(
                    elevation_deg=sample_hemisphere_elevation_deg(rng, *c.elevation_deg),
                    azimuth_deg=uniform(c.azimuth_deg).sample(rng) % 360.0,
                    intensity=float(intensity),
                    color_temperature_k=float(kelvin),
                    color=color_temperature_rgb(kelvin),
                    cast_shadow=i == 0,
                )
            )
        return spec.replace(lights=tuple(lights), ambient=float(uniform(c.ambient).sample(rng)))

    def default(self, spec: SceneSpec, *, ctx: SceneContext) -> SceneSpec:
        return spec.replace(lights=(FIXED_LIGHT,), ambient=FIXED_AMBIENT)
