"""A frozen, JSON-serialisable description of one scene (Kubric's "describe, then render").

Randomizers fill a `SceneSpec` field by field (each returns a new spec via `dataclasses.replace`); `render.py`
realises it. The spec alone (plus the subject pool) re-renders the image, so it goes into every metadata
record. Units are in the field names; angles in degrees; positions in metres in the world frame
(+Y up, ground y = 0, the subject centred on the origin facing +X).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal

Vec3 = tuple[float, float, float]
Style = Literal["pbr", "toon"]


@dataclass(frozen=True)
class MaterialUse:
    """A material from the library (`materials.py`) applied to an object.

    key: library key ("marble-03", "plain-default", "image:bark.jpg").
    tile_m: world size of one texture repeat (ground only; meshes use their own UVs).
    rotation_deg: rotation of the texture on the ground.
    """

    key: str
    tile_m: float = 1.0
    rotation_deg: float = 0.0


@dataclass(frozen=True)
class SubjectSpec:
    id: str
    class_name: str
    breed: str
    source: str
    pose: dict[str, Any] = field(default_factory=dict)
    #: the subject-texture material for its texturable parts (None = the subject's own materials)
    material: MaterialUse | None = None
    #: posed and grounded bounds (min, max) in the world frame, and the bounding-sphere centre and radius
    bounds_m: tuple[Vec3, Vec3] | None = None
    center_m: Vec3 | None = None
    radius_m: float | None = None
    #: the head's bounding sphere in the world frame (subjects with a head), for portrait framing
    head_center_m: Vec3 | None = None
    head_radius_m: float | None = None


@dataclass(frozen=True)
class CameraSpec:
    position_m: Vec3
    target_m: Vec3
    roll_deg: float
    yfov_deg: float
    #: the sampled parameters the position came from (recorded for analysis)
    distance_m: float
    elevation_deg: float
    azimuth_deg: float
    #: framed on the head and shoulders (camera.portrait_probability) rather than the whole subject
    portrait: bool = False


@dataclass(frozen=True)
class LightSpec:
    """A directional light shining from (elevation, azimuth) towards the subject."""

    elevation_deg: float
    azimuth_deg: float
    intensity: float
    color_temperature_k: float
    color: Vec3
    cast_shadow: bool


@dataclass(frozen=True)
class SkySpec:
    """A background: a procedural kind with its parameters, or an equirectangular image.

    kind: "gradient", "sunset", "clouds", "overcast", "solid", "noise", "stripes" or "image".
    colors: the palette (sRGB floats) of procedural kinds.
    noise_seed: seed of the procedural noise (so the spec reproduces the sky).
    image: file name inside the scenario's sky image folder (kind "image").
    yaw_deg: rotation of the sky around +Y. exposure_ev: brightness of image skies (HDR tone mapping).
    """

    kind: str
    colors: tuple[Vec3, ...] = ()
    noise_seed: int = 0
    params: dict[str, float] = field(default_factory=dict)
    image: str | None = None
    yaw_deg: float = 0.0
    exposure_ev: float = 0.0


@dataclass(frozen=True)
class SensorSpec:
    """Lens blur and sensor noise applied to the finished render (`render.apply_sensor`).

    blur_px: Gaussian sigma in pixels of a 256-pixel image; noise: noise sigma at mid-grey, intensity in [0, 1];
    chroma_noise: colour share of the noise; noise_seed: seed of the noise field (so the spec reproduces it).
    """

    blur_px: float = 0.0
    noise: float = 0.0
    chroma_noise: float = 0.0
    noise_seed: int = 0


@dataclass(frozen=True)
class OccluderSpec:
    """A primitive volume near the subject. `size_m` scales the unit shape along its own axes."""

    shape: str
    position_m: Vec3
    rotation_euler_deg: Vec3
    size_m: Vec3
    material: MaterialUse = MaterialUse("plain-default")


@dataclass(frozen=True)
class SceneSpec:
    index: int
    seed: int
    class_name: str
    label: int
    image_size: int
    style: Style = "pbr"
    subject: SubjectSpec | None = None
    camera: CameraSpec | None = None
    lights: tuple[LightSpec, ...] = ()
    ambient: float = 0.25
    sky: SkySpec | None = None
    #: None = no sensor effects (specs recorded before the sensor randomizer existed)
    sensor: SensorSpec | None = None
    ground: MaterialUse = MaterialUse("plain-default", tile_m=1.0)
    occluders: tuple[OccluderSpec, ...] = ()
    #: how many occluder layouts were drawn before one hid at most the allowed fraction of the subject
    occluder_tries: int = 0

    def replace(self, **changes: Any) -> SceneSpec:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON types only (tuples become lists)."""
        return _plain(dataclasses.asdict(self))


def _plain(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_plain(v) for v in obj]
    if hasattr(obj, "item") and not isinstance(obj, str):  # numpy scalars
        return obj.item()
    return obj
