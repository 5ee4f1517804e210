"""Subject randomizer: which subject of the image's class is shown (one per class when disabled: the
single-breed ablation). Also turns a posed subject into grounded world geometry for the other randomizers."""

from __future__ import annotations

import contextlib
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np

from drsynth.randomizers.base import Randomizer, RandomizerConfig, SceneContext
from drsynth.scene_spec import SceneSpec, SubjectSpec
from drsynth.subjects.base import Part, Subject


class SubjectConfig(RandomizerConfig):
    """The pools themselves are the scenario's `classes`; disabled keeps each class's `single` subject."""


class SubjectRandomizer(Randomizer):
    name = "subject"

    def sample(self, spec: SceneSpec, *, rng: np.random.Generator, ctx: SceneContext) -> SceneSpec:
        pool = ctx.pools[spec.class_name]
        return spec.replace(subject=_describe(pool[int(rng.integers(0, len(pool)))]))

    def default(self, spec: SceneSpec, *, ctx: SceneContext) -> SceneSpec:
        return spec.replace(subject=_describe(ctx.singles[spec.class_name]))


def _describe(s: Subject) -> SubjectSpec:
    return SubjectSpec(id=s.id, class_name=s.class_name, breed=s.breed, source=s.source)


@dataclass(frozen=True)
class PosedSubject:
    """A subject's parts in one pose, lifted so its lowest point touches the ground (y = 0).

    world_from_subject: the grounding transform (a lift along +Y) applied to every part.
    """

    parts: list[Part]
    world_from_subject: np.ndarray
    bounds: np.ndarray  # 2 x 3, world frame
    center: np.ndarray
    radius: float
    #: bounding sphere of the parts the subject names as its head (`Subject.head_parts`), or None
    head_center: np.ndarray | None = None
    head_radius: float | None = None


_HULLS: OrderedDict[str, np.ndarray] = OrderedDict()  # Part.key -> its convex hull's vertices
_MAX_CACHED = 4096


def _extreme_points(key: str, mesh) -> np.ndarray:
    """The vertices that can be extreme along any direction (the convex hull's): transforming only these
    gives exact posed bounds. Always this same set for a key (never "all vertices first, hull later"), so
    bounds, and hence images, do not depend on which images a worker rendered before."""
    v = _HULLS.get(key)
    if v is not None:
        _HULLS.move_to_end(key)
        return v
    v = np.asarray(mesh.vertices, dtype=np.float64)
    if len(v) >= 64:
        with contextlib.suppress(Exception):  # degenerate (flat) parts keep every vertex
            v = np.asarray(mesh.convex_hull.vertices, dtype=np.float64)  # a subset of the mesh's vertices
    _HULLS[key] = v
    if len(_HULLS) > _MAX_CACHED:
        _HULLS.popitem(last=False)
    return v


def pose_subject(subject: Subject, pose: dict) -> PosedSubject:
    parts = subject.parts(pose)
    lo, hi = np.full(3, np.inf), np.full(3, -np.inf)
    head_lo, head_hi = np.full(3, np.inf), np.full(3, -np.inf)
    head_names = set(subject.head_parts)
    for p in parts:
        v = _extreme_points(p.key, p.mesh)
        if not len(v):
            continue
        t = np.asarray(p.transform, dtype=np.float64)
        # Element-wise (not BLAS) so each vertex's result is bit-identical whether all vertices or only the
        # hull's are transformed: the same image must come out whichever worker saw the part first.
        w = v[:, 0:1] * t[:3, 0] + v[:, 1:2] * t[:3, 1] + v[:, 2:3] * t[:3, 2] + t[:3, 3]
        lo = np.minimum(lo, w.min(0))
        hi = np.maximum(hi, w.max(0))
        if head_names and p.key.rsplit("#", 1)[-1] in head_names:
            head_lo = np.minimum(head_lo, w.min(0))
            head_hi = np.maximum(head_hi, w.max(0))
    if not np.all(np.isfinite(lo)):
        raise ValueError(f"subject {subject.id} has no geometry in pose {pose}")
    lift = np.eye(4)
    lift[1, 3] = -lo[1]
    lo, hi = lo + lift[:3, 3], hi + lift[:3, 3]
    center = (lo + hi) / 2
    head_center = head_radius = None
    if np.all(np.isfinite(head_lo)):
        head_lo, head_hi = head_lo + lift[:3, 3], head_hi + lift[:3, 3]
        head_center, head_radius = (head_lo + head_hi) / 2, float(np.linalg.norm(head_hi - head_lo) / 2)
    return PosedSubject(
        parts, lift, np.stack([lo, hi]), center, float(np.linalg.norm(hi - lo) / 2), head_center, head_radius
    )
