"""Pose randomizer: a random plausible pose (joint angles, or a clip and time); disabled = default stance."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
from pydantic import Field

from drsynth.randomizers.base import Randomizer, RandomizerConfig, SceneContext
from drsynth.scene_spec import SceneSpec


class PoseConfig(RandomizerConfig):
    """default_probability: share of images that keep the subject's default stance although the randomizer
    is on (the paper found default poses transfer better; a mix keeps some variety)."""

    default_probability: float = Field(0.0, ge=0.0, le=1.0)


class PoseRandomizer(Randomizer):
    name = "pose"
    config: PoseConfig

    def sample(self, spec: SceneSpec, *, rng: np.random.Generator, ctx: SceneContext) -> SceneSpec:
        p_default = self.config.default_probability
        # Draw only when the option is used, so existing scenarios keep their exact poses.
        if p_default > 0 and rng.random() < p_default:
            return self.default(spec, ctx=ctx)
        pose = ctx.subject(spec.subject.id).sample_pose(rng)
        return spec.replace(subject=replace(spec.subject, pose=_plain(pose)))

    def default(self, spec: SceneSpec, *, ctx: SceneContext) -> SceneSpec:
        pose = ctx.subject(spec.subject.id).default_pose()
        return spec.replace(subject=replace(spec.subject, pose=_plain(pose)))


def _plain(v: Any) -> Any:
    """JSON types only (numpy scalars -> Python), so poses round-trip through metadata records."""
    if isinstance(v, dict):
        return {str(k): _plain(x) for k, x in v.items()}
    if isinstance(v, list | tuple | np.ndarray):
        return [_plain(x) for x in v]
    if isinstance(v, np.generic):
        return v.item()
    return v
