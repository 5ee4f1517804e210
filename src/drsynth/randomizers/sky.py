"""Sky randomizer: a random background from procedural skies (gradients, sunsets, clouds, solid colours,
noise, bands) and from equirectangular HDR/LDR images in an optional folder. Disabled = one fixed sky."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from pydantic import Field, field_validator

from drsynth.materials import hsv
from drsynth.randomizers.base import Randomizer, RandomizerConfig, Range, SceneContext, uniform
from drsynth.rng import child_seed
from drsynth.scene_spec import SceneSpec, SkySpec
from drsynth.skies import PROCEDURAL_KINDS


class SkyConfig(RandomizerConfig):
    """image_dir: folder of equirect .hdr/.jpg/.png skies; image_probability: share of images among skies."""

    kinds: list[str] = Field(default_factory=lambda: list(PROCEDURAL_KINDS))
    image_dir: Path | None = None
    image_probability: float = Field(0.5, ge=0.0, le=1.0)
    exposure_ev: Range(-8.0, 8.0) = (-1.0, 1.0)
    yaw_deg: Range(-360.0, 720.0) = (0.0, 360.0)

    @field_validator("kinds")
    @classmethod
    def _known(cls, v: list[str]) -> list[str]:
        unknown = sorted(set(v) - set(PROCEDURAL_KINDS))
        if unknown:
            raise ValueError(f"unknown sky kinds {unknown}; known: {list(PROCEDURAL_KINDS)}")
        if not v:
            raise ValueError(f"kinds must name at least one of {list(PROCEDURAL_KINDS)}")
        return v


FIXED_SKY = SkySpec(kind="gradient", colors=((0.32, 0.52, 0.85), (0.78, 0.86, 0.95), (0.36, 0.34, 0.3)))


class SkyRandomizer(Randomizer):
    name = "sky"
    config: SkyConfig

    def sample(self, spec: SceneSpec, *, rng: np.random.Generator, ctx: SceneContext) -> SceneSpec:
        c = self.config
        yaw = uniform(c.yaw_deg).sample(rng) % 360.0
        use_image = bool(ctx.sky_images) and float(rng.random()) < c.image_probability
        if use_image:
            name = ctx.sky_images[int(rng.integers(0, len(ctx.sky_images)))]
            sky = SkySpec(kind="image", image=name, yaw_deg=yaw, exposure_ev=uniform(c.exposure_ev).sample(rng))
        else:
            kind = c.kinds[int(rng.integers(0, len(c.kinds)))]
            colors, params = _palette(kind, rng)
            sky = SkySpec(kind=kind, colors=colors, params=params, noise_seed=child_seed(rng), yaw_deg=yaw)
        return spec.replace(sky=sky)

    def default(self, spec: SceneSpec, *, ctx: SceneContext) -> SceneSpec:
        return spec.replace(sky=FIXED_SKY)


def _c(v: np.ndarray) -> tuple[float, float, float]:
    return (float(v[0]), float(v[1]), float(v[2]))


def _palette(kind: str, rng: np.random.Generator) -> tuple[tuple, dict]:
    u = rng.uniform
    # Realistic hues most of the time, any hue sometimes (domain randomization, not a weather model).
    sky_hue = u(0.52, 0.68) if rng.random() < 0.7 else rng.random()
    ground = hsv(u(0.05, 0.35), u(0.1, 0.5), u(0.1, 0.45))
    if kind == "gradient":
        zen = hsv(sky_hue, u(0.3, 0.9), u(0.35, 0.95))
        hor = hsv(sky_hue + u(-0.05, 0.05), u(0.05, 0.4), u(0.7, 1.0))
        return (_c(zen), _c(hor), _c(ground)), {"sharpness": float(u(0.3, 1.2))}
    if kind == "sunset":
        zen = hsv(u(0.6, 0.78), u(0.5, 0.9), u(0.15, 0.5))
        hor = hsv(u(0.0, 0.12), u(0.5, 0.9), u(0.8, 1.0))
        sun = hsv(u(0.1, 0.16), u(0.2, 0.6), 1.0)
        return (_c(zen), _c(hor), _c(ground * 0.6), _c(sun)), {"sun_azimuth_deg": float(u(0, 360))}
    if kind == "clouds":
        zen = hsv(sky_hue, u(0.4, 0.9), u(0.45, 0.95))
        hor = hsv(sky_hue, u(0.05, 0.3), u(0.75, 1.0))
        cloud = hsv(0, 0, u(0.75, 1.0))
        return (_c(zen), _c(hor), _c(ground), _c(cloud)), {
            "coverage": float(u(0.2, 0.8)),
            "cells": float(rng.integers(3, 7)),
        }
    if kind == "overcast":
        g = u(0.45, 0.8)
        zen, hor = hsv(sky_hue, u(0, 0.12), g), hsv(sky_hue, u(0, 0.08), min(1.0, g + u(0.05, 0.2)))
        cloud = hsv(0, 0, u(0.55, 0.95))
        return (_c(zen), _c(hor), _c(ground), _c(cloud)), {"coverage": float(u(0.7, 0.95)), "cells": 3.0}
    if kind == "solid":
        return (_c(hsv(rng.random(), u(0.0, 0.9), u(0.2, 1.0))),), {}
    if kind == "noise":
        cols = tuple(_c(hsv(rng.random(), u(0.2, 0.9), u(0.2, 1.0))) for _ in range(3))
        return cols, {"cells": float(rng.integers(2, 6))}
    if kind == "bands":
        cols = tuple(_c(hsv(rng.random(), u(0.2, 0.9), u(0.2, 1.0))) for _ in range(int(rng.integers(2, 5))))
        return cols, {"frequency": float(u(1.0, 6.0)), "phase": float(u(0, 6.283))}
    raise ValueError(kind)
