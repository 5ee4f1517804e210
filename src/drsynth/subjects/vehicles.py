"""What the bicycle and car generators share: rigid assemblies posed by moving groups, paint variants,
materials, tyre textures, splines and preset blending.

A vehicle is built once (lazily, on first use) into `Piece`s: a mesh in the subject frame belonging to a
rigid *group* ("body", "steer", "front_wheel", ...) with a material *slot*. A pose only computes one 4x4
transform per group, so posing costs nothing and the renderer uploads each piece once (its `Part.key` is
the subject id + piece name). Pose key "paint" picks one of the subject's paint variants: a vehicle comes
in several colours without rebuilding geometry.
"""

from __future__ import annotations

import dataclasses
import math
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field, fields

import numpy as np
import trimesh

from drsynth.errors import ConfigError
from drsynth.subjects.base import Part, Pose, Subject, SurfaceMaterial

Rgb = tuple[float, float, float]


@dataclass(frozen=True)
class Piece:
    """A mesh of a vehicle in the subject frame, moved with its rigid `group`, drawn with material `slot`."""

    group: str
    name: str
    mesh: trimesh.Trimesh = field(repr=False)
    slot: str
    texturable: bool = True


@dataclass(frozen=True)
class Rig:
    """A built vehicle: its pieces, fixed materials per slot, and paint variants (slot -> material)."""

    pieces: list[Piece]
    materials: dict[str, SurfaceMaterial]
    paint_variants: list[dict[str, SurfaceMaterial]]
    info: dict[str, np.ndarray] = field(default_factory=dict)


class VehicleSubject(Subject):
    """A procedural vehicle built from a spec into a `Rig`; subclasses say how groups move with the pose."""

    source = "procedural"

    def __init__(self, *, class_name: str, breed: str, spec, generator: str, blend_of: tuple | None = None):
        self.class_name = class_name
        self.breed = breed
        self.id = f"{class_name}/procedural/{breed}"
        self.spec = spec
        self.generator = generator
        self.blend_of = blend_of
        self._rig: Rig | None = None

    # -- to implement -------------------------------------------------------------------------------------
    def _build(self) -> Rig:
        raise NotImplementedError

    def _group_transforms(self, pose: Pose) -> dict[str, np.ndarray]:
        raise NotImplementedError

    # -- shared -------------------------------------------------------------------------------------------
    @property
    def rig(self) -> Rig:
        if self._rig is None:
            self._rig = self._build()
        return self._rig

    def paint_count(self) -> int:
        return max(1, len(self.rig.paint_variants))

    def parts(self, pose: Pose) -> list[Part]:
        rig = self.rig
        groups = self._group_transforms(pose)
        variant = int(pose.get("paint", 0)) % self.paint_count()
        paint = rig.paint_variants[variant] if rig.paint_variants else {}
        out = []
        for p in rig.pieces:
            mat = paint.get(p.slot) or rig.materials[p.slot]
            out.append(
                Part(
                    key=f"{self.id}/{p.name}",
                    mesh=p.mesh,
                    transform=groups.get(p.group, _EYE),
                    material=mat,
                    texturable=p.texturable,
                )
            )
        return out

    def describe(self) -> dict:
        d = super().describe()
        d["generator"] = self.generator
        if self.blend_of:
            d["blend_of"] = list(self.blend_of)
        return d


_EYE = np.eye(4)


# -- transforms ------------------------------------------------------------------------------------------
def translation(p: Sequence[float]) -> np.ndarray:
    m = np.eye(4)
    m[:3, 3] = p
    return m


def rotation(axis: Sequence[float], angle: float, pivot: Sequence[float] = (0.0, 0.0, 0.0)) -> np.ndarray:
    """4x4 rotation by `angle` (radians, right-handed) about `axis` through `pivot`."""
    return trimesh.transformations.rotation_matrix(
        angle, np.asarray(axis, dtype=float), np.asarray(pivot, dtype=float)
    )


# -- curves ----------------------------------------------------------------------------------------------
def spline(points: np.ndarray, samples: int = 8) -> np.ndarray:
    """A Catmull-Rom curve through `points` (n x d), `samples` points per segment, ends included."""
    p = np.asarray(points, dtype=np.float64)
    if len(p) < 3:
        return np.linspace(p[0], p[-1], samples + 1)
    ext = np.concatenate([2 * p[:1] - p[1:2], p, 2 * p[-1:] - p[-2:-1]])
    t = np.linspace(0.0, 1.0, samples, endpoint=False)[:, None]
    out = []
    for i in range(1, len(ext) - 2):
        p0, p1, p2, p3 = ext[i - 1], ext[i], ext[i + 1], ext[i + 2]
        out.append(
            0.5
            * (
                (2 * p1)
                + (-p0 + p2) * t
                + (2 * p0 - 5 * p1 + 4 * p2 - p3) * t**2
                + (-p0 + 3 * p1 - 3 * p2 + p3) * t**3
            )
        )
    out.append(p[-1:])
    return np.concatenate(out)


def bezier(p0, p1, p2, n: int = 16) -> np.ndarray:
    """A quadratic Bezier curve (n points)."""
    t = np.linspace(0.0, 1.0, n)[:, None]
    p0, p1, p2 = (np.asarray(p, dtype=np.float64) for p in (p0, p1, p2))
    return (1 - t) ** 2 * p0 + 2 * (1 - t) * t * p1 + t**2 * p2


# -- materials -------------------------------------------------------------------------------------------
def material(
    name: str,
    rgb: Sequence[float],
    *,
    metallic: float = 0.0,
    roughness: float = 0.6,
    emissive: Rgb = (0.0, 0.0, 0.0),
    base_color_texture: np.ndarray | None = None,
    normal_texture: np.ndarray | None = None,
    texture_key: str = "",
) -> SurfaceMaterial:
    """A SurfaceMaterial whose key is derived from its content (equal keys <=> equal content)."""
    c = tuple(float(np.clip(v, 0.0, 1.0)) for v in rgb[:3])
    key = (
        f"vehicle/{name}/{c[0]:.3f},{c[1]:.3f},{c[2]:.3f}/m{metallic:.2f}/r{roughness:.2f}"
        f"/e{emissive[0]:.2f},{emissive[1]:.2f},{emissive[2]:.2f}"
    )
    if texture_key:
        key += f"/t:{texture_key}"
    return SurfaceMaterial(
        key=key,
        base_color=(*c, 1.0),
        metallic=float(metallic),
        roughness=float(roughness),
        emissive=tuple(float(e) for e in emissive),
        base_color_texture=base_color_texture,
        normal_texture=normal_texture,
    )


def jitter_rgb(rng: np.random.Generator, rgb: Sequence[float], amount: float = 0.06) -> Rgb:
    """A colour near `rgb` (same hue family), for paint variety between subjects."""
    c = np.asarray(rgb, dtype=np.float64)
    scale = np.exp(rng.normal(0.0, amount * 2))
    c = c * scale + rng.normal(0.0, amount * 0.5, 3)
    return tuple(float(v) for v in np.clip(c, 0.01, 0.97))


def stable_seed(*parts: object) -> int:
    """A seed from names (crc32; never Python's salted hash)."""
    return zlib.crc32("/".join(str(p) for p in parts).encode())


# -- textures --------------------------------------------------------------------------------------------
_TEXTURES: dict[str, np.ndarray] = {}


def cached_texture(key: str, make) -> np.ndarray:
    """Textures are shared by every subject that asks for the same key (built once per process)."""
    if key not in _TEXTURES:
        _TEXTURES[key] = make()
    return _TEXTURES[key]


def normal_map_from_height(height: np.ndarray, strength: float) -> np.ndarray:
    """A tangent-space normal map (uint8, glTF convention) from a height field in [0, 1]."""
    gy, gx = np.gradient(height.astype(np.float64))
    n = np.stack([-gx * strength, -gy * strength, np.ones_like(height)], -1)
    n /= np.linalg.norm(n, axis=-1, keepdims=True)
    return np.clip((n * 0.5 + 0.5) * 255 + 0.5, 0, 255).astype(np.uint8)


def tyre_textures(kind: str, wall_rgb: Sequence[float] | None, repeats: int) -> tuple[np.ndarray, np.ndarray]:
    """(base colour, normal) textures for a tyre whose UVs run u round the wheel and v round the section.

    kind: "slick" (fine sipes) or "knobby"; wall_rgb: a coloured sidewall (gumwall) or None. `repeats` tread
    periods round the wheel (the texture is made to tile exactly that many times across u in [0, 1]).
    """
    key = f"tyre/{kind}/{None if wall_rgb is None else tuple(round(c, 3) for c in wall_rgb)}/{repeats}"

    def make():
        w, h = 1024, 64
        u = np.linspace(0, 1, w, endpoint=False)[None, :]
        v = np.linspace(0, 1, h, endpoint=False)[:, None]
        # v: 0 = inner rim edge, 0.5 = opposite side of the section through the tread... the tread is the
        # part of the section farthest from the axle, which the wheel builders put at v in [0.3, 0.7].
        tread = (v > 0.3) & (v < 0.7)
        base = np.full((h, w, 3), 0.055)
        if wall_rgb is not None:
            wall = ~((v > 0.22) & (v < 0.78)) & np.ones_like(u, dtype=bool)
            base[wall] = np.asarray(wall_rgb)
        phase = (u * repeats) % 1.0
        if kind == "knobby":
            height = ((phase < 0.45) & tread) * 1.0 + 0.0 * v
            base[(phase < 0.45) & tread] *= 1.4
        else:
            height = ((np.abs(np.sin(phase * np.pi * 2 + v * 12)) > 0.93) & tread) * -0.5 + 0.0 * v
        img = np.clip(base * 255, 0, 255).astype(np.uint8)
        return np.concatenate([img, normal_map_from_height(height, 3.0)], axis=-1)

    both = cached_texture(key, make)
    # Separate contiguous arrays: GL uploads ignore numpy strides.
    return (
        cached_texture(key + "/base", lambda: np.ascontiguousarray(both[..., :3])),
        cached_texture(key + "/normal", lambda: np.ascontiguousarray(both[..., 3:])),
    )


# -- presets and blends ----------------------------------------------------------------------------------
def check_breeds(kind: str, requested: list[str] | None, presets: dict) -> list[str]:
    names = list(presets)
    if requested is None:
        return names
    unknown = [b for b in requested if b not in presets]
    if unknown:
        raise ConfigError(
            f"unknown {kind} preset(s) {unknown} in subject.breeds; known {kind} presets: {names}. "
            "Fix the scenario's breeds list (or leave it out for all presets)."
        )
    if not requested:
        raise ConfigError(f"subject.breeds for {kind} is empty; name at least one of {names} or leave it out")
    return list(requested)


def blend_specs(a, b, t: float, rng: np.random.Generator, *, jitter: float = 0.04):
    """A spec between dataclass specs `a` and `b`: floats interpolated at `t` and jittered by about
    +-`jitter` (relative), ints rounded, everything else (style flags, shapes) taken from the nearer one."""
    out = {}
    for f in fields(a):
        va, vb = getattr(a, f.name), getattr(b, f.name)
        if isinstance(va, bool) or not isinstance(va, int | float) or isinstance(va, str):
            out[f.name] = va if t < 0.5 else vb
        elif isinstance(va, int):
            out[f.name] = int(round(va + (vb - va) * t))
        else:
            v = va + (vb - va) * t
            out[f.name] = float(v * (1.0 + rng.uniform(-jitter, jitter)))
    return dataclasses.replace(a, **out)


def lerp(a: float, b: float, t: float) -> float:
    return a + (b - a) * t


def deg(x: float) -> float:
    return math.radians(x)
