"""Camera randomizer: a position uniform over a band of the upper hemisphere around the subject, at a
distance relative to the subject's size, aimed at it with a small random offset (so it lands at varied image
positions), with a random field of view and roll. Disabled = one fixed three-quarter view."""

from __future__ import annotations

import math

import numpy as np
from pydantic import Field

from drsynth.randomizers.base import Randomizer, RandomizerConfig, Range, SceneContext, uniform
from drsynth.samplers import direction_from_angles, sample_hemisphere_elevation_deg
from drsynth.scene_spec import CameraSpec, SceneSpec


class CameraConfig(RandomizerConfig):
    """distance: multiples of the framing distance, at which the subject's bounding sphere just fills the
    vertical field of view (so one config frames cats and cars alike).
    aim_offset: how far the aim point moves off the subject centre, in subject radii (in the image plane).
    elevation_deg: sampled uniformly over the hemisphere's surface within this band.
    azimuth_mirror_probability: the chance that the sampled azimuth is mirrored to the subject's other side
    (azimuth -> -azimuth; subjects face +X, so 90 and 270 are the side views): with a side band such as
    [45, 135] both sides are seen.
    portrait_probability: the chance of a head-and-shoulders view, as people photograph animals: the camera
    frames a sphere around the subject's head and front (subjects with a head; others keep the full view),
    with `distance` and `aim_offset` relative to that sphere."""

    distance: Range(0.3, 50.0) = (0.8, 2.0)
    elevation_deg: Range(-10.0, 90.0) = (2.0, 75.0)
    azimuth_deg: Range(-360.0, 720.0) = (0.0, 360.0)
    yfov_deg: Range(5.0, 120.0) = (25.0, 60.0)
    aim_offset: Range(0.0, 2.0) = (0.0, 0.3)
    roll_deg: Range(-180.0, 180.0) = (-8.0, 8.0)
    azimuth_mirror_probability: float = Field(0.0, ge=0.0, le=1.0)
    portrait_probability: float = Field(0.0, ge=0.0, le=1.0)


FIXED = dict(distance=1.5, elevation_deg=15.0, azimuth_deg=35.0, yfov_deg=40.0)


class CameraRandomizer(Randomizer):
    name = "camera"
    config: CameraConfig

    def sample(self, spec: SceneSpec, *, rng: np.random.Generator, ctx: SceneContext) -> SceneSpec:
        c = self.config
        yfov = uniform(c.yfov_deg).sample(rng)
        factor = uniform(c.distance).sample(rng)
        elevation = sample_hemisphere_elevation_deg(rng, *c.elevation_deg)
        azimuth = uniform(c.azimuth_deg).sample(rng) % 360.0
        offset = uniform(c.aim_offset).sample(rng)
        offset_angle = float(rng.uniform(0.0, 2 * math.pi))
        roll = uniform(c.roll_deg).sample(rng)
        # Drawn last and only when used, so scenarios without mirroring keep their exact views.
        if c.azimuth_mirror_probability > 0 and rng.random() < c.azimuth_mirror_probability:
            azimuth = (360.0 - azimuth) % 360.0
        portrait = c.portrait_probability > 0 and rng.random() < c.portrait_probability
        return spec.replace(
            camera=place_camera(spec, yfov, factor, elevation, azimuth, offset, offset_angle, roll, portrait=portrait)
        )

    def default(self, spec: SceneSpec, *, ctx: SceneContext) -> SceneSpec:
        f = FIXED
        return spec.replace(
            camera=place_camera(spec, f["yfov_deg"], f["distance"], f["elevation_deg"], f["azimuth_deg"], 0, 0, 0)
        )


def place_camera(
    spec: SceneSpec,
    yfov_deg: float,
    distance_factor: float,
    elevation_deg: float,
    azimuth_deg: float,
    offset: float,
    offset_angle: float,
    roll_deg: float,
    *,
    portrait: bool = False,
) -> CameraSpec:
    center = np.asarray(spec.subject.center_m, dtype=float)
    radius = float(spec.subject.radius_m)
    portrait = portrait and spec.subject.head_center_m is not None  # subjects without a head keep the full view
    if portrait:
        center, radius = portrait_sphere(center, np.asarray(spec.subject.head_center_m), spec.subject.head_radius_m)
    distance = distance_factor * radius / math.sin(math.radians(yfov_deg) / 2)
    view_dir = direction_from_angles(elevation_deg, azimuth_deg)
    position = center + view_dir * distance
    # Offset the aim point in the image plane, so the subject lands away from the image centre.
    forward = -view_dir
    right = np.cross(forward, [0.0, 1.0, 0.0])
    right /= max(np.linalg.norm(right), 1e-9)
    up = np.cross(right, forward)
    target = center + offset * radius * (math.cos(offset_angle) * right + math.sin(offset_angle) * up)
    return CameraSpec(
        position_m=_t(position),
        target_m=_t(target),
        roll_deg=float(roll_deg),
        yfov_deg=float(yfov_deg),
        distance_m=float(distance),
        elevation_deg=float(elevation_deg),
        azimuth_deg=float(azimuth_deg),
        portrait=portrait,
    )


def portrait_sphere(body_center: np.ndarray, head_center: np.ndarray, head_radius: float) -> tuple[np.ndarray, float]:
    """A sphere around the head and the front of the body (head and shoulders): its centre a third of the
    way from the head towards the body centre, large enough to hold the whole head."""
    center = head_center + (body_center - head_center) / 3.0
    radius = float(np.linalg.norm(head_center - center)) + float(head_radius)
    return center, radius


def _t(v) -> tuple[float, float, float]:
    return (float(v[0]), float(v[1]), float(v[2]))
