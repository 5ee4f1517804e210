"""Materials randomizer: every object except the subject (the ground, each occluder) gets a random material
from the procedural library and the optional image-texture folder. Disabled = one plain material."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
from pydantic import Field

from drsynth.materials import DEFAULT_KEY
from drsynth.randomizers.base import Randomizer, RandomizerConfig, Range, SceneContext, uniform
from drsynth.scene_spec import MaterialUse, SceneSpec


class MaterialsConfig(RandomizerConfig):
    """families: library families to use (null = all; see `drsynth.materials.family_names()`);
    image_dir: folder of texture images; image_probability: share of image textures when a folder is given;
    ground_tile: the ground texture's repeat size, in subject radii."""

    families: list[str] | None = None
    image_dir: Path | None = None
    image_probability: float = Field(0.3, ge=0.0, le=1.0)
    ground_tile: Range(0.01, 100.0) = (0.3, 3.0)


def sample_material_key(rng: np.random.Generator, ctx: SceneContext, image_probability: float) -> str:
    images = [k for k in ctx.material_keys if k.startswith("image:")]
    library = [k for k in ctx.material_keys if not k.startswith("image:")]
    use_image = float(rng.random()) < image_probability and bool(images)
    pool = images if use_image or not library else library
    return pool[int(rng.integers(0, len(pool)))]


class MaterialsRandomizer(Randomizer):
    name = "materials"
    config: MaterialsConfig

    def sample(self, spec: SceneSpec, *, rng: np.random.Generator, ctx: SceneContext) -> SceneSpec:
        c = self.config
        ground = MaterialUse(
            key=sample_material_key(rng, ctx, c.image_probability),
            tile_m=float(uniform(c.ground_tile).sample(rng) * spec.subject.radius_m),
            rotation_deg=float(rng.uniform(0.0, 360.0)),
        )
        # Ground first, then occluders in order: the ground's draws never depend on how many occluders exist.
        occluders = tuple(
            replace(o, material=MaterialUse(key=sample_material_key(rng, ctx, c.image_probability)))
            for o in spec.occluders
        )
        return spec.replace(ground=ground, occluders=occluders)

    def default(self, spec: SceneSpec, *, ctx: SceneContext) -> SceneSpec:
        tile = float(spec.subject.radius_m)
        occluders = tuple(replace(o, material=MaterialUse(DEFAULT_KEY)) for o in spec.occluders)
        return spec.replace(ground=MaterialUse(DEFAULT_KEY, tile_m=tile), occluders=occluders)
