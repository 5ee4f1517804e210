"""Sensor randomizer (off by default): what a camera adds to the scene, lens blur and sensor noise.
Disabled = the raw render (perfectly sharp, noise-free).

Why: a rasterised image is sharper and cleaner than any photograph (every edge aliased to one pixel, flat
noise-free shading), and ImageNet networks read that as an artefact: the cat faces of a head-and-shoulders
view went from 4% to 80% recognised as cats by the shared MobileNetV2 with a 1-pixel blur and noise of
sigma 12/255 applied to the same renders. It is off by default because transfer to real photos fell with
it (85.8% -> 80.0% on the cats/dogs benchmark: the development photos are downscaled, hence clean), see
docs/benchmarks.md, "Camera sensor". The effects run in the
renderer (`drsynth.render.apply_sensor`) on the composited image, before the JPEG encoding; they are sized in
pixels of a 256-pixel image and scale with `image_size`.
"""

from __future__ import annotations

import numpy as np
from pydantic import Field

from drsynth.randomizers.base import Randomizer, RandomizerConfig, Range, SceneContext, uniform
from drsynth.rng import child_seed
from drsynth.scene_spec import SceneSpec, SensorSpec


class SensorConfig(RandomizerConfig):
    """blur_px: Gaussian sigma of the lens blur, in pixels at 256 px; noise: sigma of the sensor noise at
    mid-grey, in [0, 1] intensity units (it grows with brightness, as photon noise does); chroma_noise: the
    colour share of that noise (most sensor noise survives demosaicing as luminance noise)."""

    enabled: bool = False
    blur_px: Range(0.0, 8.0) = (0.6, 1.4)
    noise: Range(0.0, 0.25) = (0.012, 0.05)
    chroma_noise: float = Field(0.35, ge=0.0, le=2.0)


#: The disabled sensor: the render as drawn.
NO_SENSOR = SensorSpec(blur_px=0.0, noise=0.0, chroma_noise=0.0, noise_seed=0)


class SensorRandomizer(Randomizer):
    name = "sensor"
    config: SensorConfig

    def sample(self, spec: SceneSpec, *, rng: np.random.Generator, ctx: SceneContext) -> SceneSpec:
        c = self.config
        sensor = SensorSpec(
            blur_px=float(uniform(c.blur_px).sample(rng)),
            noise=float(uniform(c.noise).sample(rng)),
            chroma_noise=float(c.chroma_noise),
            noise_seed=child_seed(rng),
        )
        return spec.replace(sensor=sensor)

    def default(self, spec: SceneSpec, *, ctx: SceneContext) -> SceneSpec:
        return spec.replace(sensor=NO_SENSOR)
