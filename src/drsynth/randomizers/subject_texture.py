"""Subject-texture randomizer (off by default): the subject's texturable parts get one random material from
the library, the paper's "texture subject" variant (wooden dogs). Eyes, glass, tyres keep theirs."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
from pydantic import Field

from drsynth.randomizers.base import Randomizer, RandomizerConfig, SceneContext
from drsynth.randomizers.materials import sample_material_key
from drsynth.scene_spec import MaterialUse, SceneSpec


class SubjectTextureConfig(RandomizerConfig):
    """Draws from the materials randomizer's library and image folder."""

    enabled: bool = False
    image_probability: float = Field(0.3, ge=0.0, le=1.0)


class SubjectTextureRandomizer(Randomizer):
    name = "subject_texture"
    config: SubjectTextureConfig

    def sample(self, spec: SceneSpec, *, rng: np.random.Generator, ctx: SceneContext) -> SceneSpec:
        key = sample_material_key(rng, ctx, self.config.image_probability)
        return spec.replace(subject=replace(spec.subject, material=MaterialUse(key=key)))

    def default(self, spec: SceneSpec, *, ctx: SceneContext) -> SceneSpec:
        return spec.replace(subject=replace(spec.subject, material=None))
