"""The one small interface between subjects (procedural breeds, vehicles, imported models) and the renderer.

A `Subject` is a described thing of one class that can be posed. Given a pose it returns `Part`s: meshes in the
subject's own frame with a 4x4 transform and a surface material. The renderer uploads a part's mesh once per
`Part.key` and only moves it afterwards, so a subject whose pose only moves rigid parts costs nothing per
image; a subject whose geometry changes with the pose (linear blend skinning) gives a key per pose.

Subject frame (OpenGL convention, like pyrender): +Y is up, the ground is y = 0, the subject stands on it in
its default pose, centred on the origin in x/z, facing +X (head or front towards +X). Units are metres.
The renderer re-grounds every posed subject (lowest point to y = 0), so poses need not.

Poses are plain JSON-serialisable dicts (joint name -> radians, or {"clip": name, "time": seconds}) so every
image's metadata records the pose it was rendered with.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import trimesh

Pose = dict[str, Any]
"""A JSON-serialisable pose: joint -> radians for procedural subjects; {"clip", "time"} for rigged ones."""


@dataclass(frozen=True, eq=False)
class SurfaceMaterial:
    """A render-ready metallic-roughness material (glTF semantics; colours are floats in [0, 1]).

    `key` identifies the material for caching GPU textures: equal keys must mean equal content.
    Textures are uint8 arrays (H x W x 3 or 4); the normal map is tangent-space, glTF convention.
    """

    key: str
    base_color: tuple[float, float, float, float] = (1.0, 1.0, 1.0, 1.0)
    metallic: float = 0.0
    roughness: float = 0.7
    base_color_texture: np.ndarray | None = field(default=None, repr=False)
    normal_texture: np.ndarray | None = field(default=None, repr=False)
    emissive: tuple[float, float, float] = (0.0, 0.0, 0.0)
    alpha_mode: Literal["OPAQUE", "MASK", "BLEND"] = "OPAQUE"
    double_sided: bool = False
    fur_length: float = 0.0  # metres; > 0: the renderer adds shell fur of this length along the normals


@dataclass(frozen=True, eq=False)
class Part:
    """One mesh of a subject, placed in the subject frame.

    key: geometry cache key. Parts with equal keys must have identical `mesh` (vertices, faces, UVs).
    mesh: triangles in the part's own frame; UVs in `mesh.visual.uv` when the material is textured.
    transform: 4x4 float matrix, part frame -> subject frame.
    texturable: whether the "subject texture" randomizer may replace this part's material (False for eyes,
        glass, tyres... so a "wooden dog" still has eyes).
    fur_scale: multiplies the material's shell-fur length on this part.
    """

    key: str
    mesh: trimesh.Trimesh = field(repr=False)
    transform: np.ndarray = field(repr=False)
    material: SurfaceMaterial
    texturable: bool = True
    fur_scale: float = 1.0  # times the material's fur_length on this part (short fur on faces and ears)


class Subject(ABC):
    """A subject of one class that can be posed and turned into parts.

    Implementations hold their (cached) geometry; they do no I/O after construction and draw randomness
    only from the generator they are given.
    """

    #: stable unique id, e.g. "cat/procedural/siamese" or "dog/model/Husky.glb"
    id: str
    #: the class label this subject renders as ("cat", "dog", "bicycle", "car")
    class_name: str
    #: the group reported per breed / per model ("siamese", "Husky.glb"); the ablation keeps one per class
    breed: str
    #: where it came from
    source: Literal["procedural", "imported"]
    #: names of the parts (the text after "#" in `Part.key`) that make up the head, for portrait framing;
    #: empty = no head (vehicles, imported models)
    head_parts: tuple[str, ...] = ()

    @abstractmethod
    def default_pose(self) -> Pose:
        """The subject's default stance (the pose randomizer switched off)."""

    @abstractmethod
    def sample_pose(self, rng: np.random.Generator) -> Pose:
        """A random plausible pose (within joint limits, or a random clip and time), from `rng` only."""

    @abstractmethod
    def parts(self, pose: Pose) -> list[Part]:
        """The subject's parts in the given pose."""

    def describe(self) -> dict[str, Any]:
        """What goes into each image's metadata record about the subject (not the pose)."""
        return {"id": self.id, "class": self.class_name, "breed": self.breed, "source": self.source}


def parts_bounds(parts: list[Part]) -> np.ndarray:
    """Axis-aligned bounds (2 x 3: min, max) of posed parts in the subject frame."""
    lo = np.full(3, np.inf)
    hi = np.full(3, -np.inf)
    for p in parts:
        if not len(p.mesh.vertices):
            continue
        # The transformed corners of the part's own AABB bound the part; good enough for framing.
        corners = trimesh.bounds.corners(p.mesh.bounds)
        cv = trimesh.transform_points(corners, p.transform)
        lo = np.minimum(lo, cv.min(axis=0))
        hi = np.maximum(hi, cv.max(axis=0))
    if not np.all(np.isfinite(lo)):
        raise ValueError("subject has no geometry")
    return np.stack([lo, hi])
