"""An on-disk cache of baked procedural animals: the posing model, the render meshes and the coat materials.

Building one cat or dog (SDF-meshed head and torso, lofted limbs, the 512 x 512 coat atlas) takes ~0.3-0.5 s,
and every render worker process needs every subject of its pool, so a 137-subject scenario cost each worker
~50 s before this cache. An entry is keyed by the sha256 of everything that determines the result:

- the subject's id, seed, `Anatomy` and `Coat` values;
- the source text of the modules that build it (quadruped.py, coats.py, geometry.py, base.py), so any code
  change invalidates old entries by itself (they read no environment variables: keep it that way);
- the drsynth, numpy and trimesh versions and this file's format version.

Where: `$DRSYNTH_SUBJECT_CACHE` (a folder), default `~/.cache/drsynth/subjects`; `DRSYNTH_SUBJECT_CACHE=off`
disables it. Entries are written to a temporary file and renamed, so concurrent workers never read half an
entry; an unreadable or corrupt entry is logged, rebuilt and rewritten, never fatal. An entry is ~1.5 MB;
nothing is evicted (delete the folder to reclaim the space; old code versions' entries are never read again).

Format: one `.npz` per entry holding the arrays (deduplicated by content) and a pickled skeleton that refers to
them. The skeleton is read with an unpickler that only admits drsynth subject classes, numpy scalars and plain
containers, so an entry cannot run code.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import importlib
import io
import json
import logging
import os
import pickle
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import trimesh

from drsynth import __version__
from drsynth.fsutil import atomic_write_bytes

if TYPE_CHECKING:
    from drsynth.subjects.base import Subject, SurfaceMaterial
    from drsynth.subjects.quadruped import QuadrupedModel, QuadrupedSubject

log = logging.getLogger(__name__)

ENV = "DRSYNTH_SUBJECT_CACHE"
OFF_VALUES = {"off", "0", "false", "no", "none", "disabled"}
FORMAT_VERSION = 1
#: Modules whose source determines a baked quadruped.
SOURCE_MODULES = (
    "drsynth.subjects.quadruped",
    "drsynth.subjects.coats",
    "drsynth.subjects.geometry",
    "drsynth.subjects.base",
)

Baked = tuple["QuadrupedModel", dict[str, trimesh.Trimesh], dict[str, "SurfaceMaterial"]]


def cache_dir() -> Path | None:
    """The cache folder, or None when `DRSYNTH_SUBJECT_CACHE` switches the cache off."""
    env = os.environ.get(ENV, "").strip()
    if env.lower() in OFF_VALUES:
        return None
    if env:
        return Path(env).expanduser()
    try:
        return Path.home() / ".cache" / "drsynth" / "subjects"
    except RuntimeError:  # no home folder (some container users): no cache rather than a failure
        return None


@functools.cache
def _sources() -> str:
    """sha256 of the builder modules' source."""
    h = hashlib.sha256()
    for name in SOURCE_MODULES:
        path = importlib.import_module(name).__file__
        assert path is not None
        h.update(name.encode() + b"\0" + Path(path).read_bytes() + b"\0")
    return h.hexdigest()


def subject_key(subject: QuadrupedSubject) -> str:
    """sha256 (hex) of everything the baked subject depends on."""
    desc = {
        "format": FORMAT_VERSION,
        "drsynth": __version__,
        "numpy": np.__version__,
        "trimesh": trimesh.__version__,
        "sources": _sources(),
        "id": subject.id,
        "seed": int(subject.seed),
        "anatomy": dataclasses.asdict(subject.anatomy),
        "coat": dataclasses.asdict(subject.coat),
    }
    # json writes floats with repr (shortest exact round trip), so equal keys mean equal values.
    return hashlib.sha256(json.dumps(desc, sort_keys=True, default=repr).encode()).hexdigest()


def entry_path(root: Path, key: str) -> Path:
    return root / key[:2] / f"{key}.npz"


# ---------------------------------------------------------------------------------------------- build


def build_quadruped(subject: QuadrupedSubject) -> Baked:
    """Bake a subject without the cache: its posing model, then meshes and materials from `paint_coat`."""
    from drsynth.subjects.coats import paint_coat
    from drsynth.subjects.quadruped import QuadrupedModel

    model = QuadrupedModel(subject.anatomy)
    meshes, materials = paint_coat(model, subject.coat, key=subject.id, seed=subject.seed)
    return model, meshes, materials


def bake_quadruped(subject: QuadrupedSubject) -> Baked:
    """The baked subject: loaded from the cache when there, else built (and stored when the cache is on)."""
    root = cache_dir()
    if root is None:
        return build_quadruped(subject)
    key = subject_key(subject)
    path = entry_path(root, key)
    if path.exists():
        try:
            return _decode(path.read_bytes(), key)
        except Exception as e:  # noqa: BLE001 - any unreadable entry is rebuilt, never fatal
            log.warning(
                "subject cache: ignoring unreadable entry %s for %s (%s); rebuilding", path, subject.id, e
            )
    baked = build_quadruped(subject)
    try:
        atomic_write_bytes(path, _encode(baked, key))
    except Exception as e:  # noqa: BLE001 - a read-only or full disk only costs the rebuild next time
        log.warning("subject cache: could not write %s for %s (%s)", path, subject.id, e)
    return baked


def prebake(subjects: Iterable[Subject], *, offset: float = 0.0) -> int:
    """Bake (or load) every procedural animal in `subjects`, starting at fraction `offset` of the list and
    wrapping around. Workers given offsets 0, 1/n, ... build disjoint parts of a cold cache first and load
    the rest from entries the others wrote meanwhile. Returns how many subjects were prepared."""
    from drsynth.subjects.quadruped import QuadrupedSubject

    todo = [s for s in subjects if isinstance(s, QuadrupedSubject)]
    if not todo:
        return 0
    start = int(offset * len(todo)) % len(todo)
    for s in todo[start:] + todo[:start]:
        s._ensure_built()
    return len(todo)


# ---------------------------------------------------------------------------------------------- format
# The skeleton is a pickle in which every numpy array and trimesh mesh is replaced by a persistent id: arrays
# go to the npz (once per distinct content), meshes become (vertices, faces, vertex normals, UVs, metadata),
# exactly the fields the renderer reads.


class _Pickler(pickle.Pickler):
    def __init__(self, file: io.BytesIO) -> None:
        super().__init__(file, protocol=pickle.HIGHEST_PROTOCOL)
        self.arrays: list[np.ndarray] = []
        self._by_digest: dict[tuple, int] = {}
        self._meshes: dict[int, int] = {}  # id(mesh) -> record number: a mesh shared by model and parts

    def persistent_id(self, obj: Any) -> Any:
        if isinstance(obj, np.ndarray):
            a = np.ascontiguousarray(obj)
            if a.dtype.hasobject:
                raise TypeError(f"cannot cache an object array of shape {a.shape}")
            d = (a.dtype.str, a.shape, hashlib.sha1(a.tobytes()).digest())
            if d not in self._by_digest:
                self._by_digest[d] = len(self.arrays)
                self.arrays.append(a)
            return ("array", self._by_digest[d])
        if isinstance(obj, trimesh.Trimesh):
            if id(obj) in self._meshes:
                return ("mesh_ref", self._meshes[id(obj)])
            self._meshes[id(obj)] = len(self._meshes)
            uv = getattr(obj.visual, "uv", None)
            return (
                "mesh",
                self._meshes[id(obj)],
                np.asarray(obj.vertices),
                np.asarray(obj.faces),
                np.asarray(obj.vertex_normals),
                None if uv is None else np.asarray(uv),
                dict(obj.metadata),
            )
        return None


_SAFE_BUILTINS = {"dict", "list", "tuple", "set", "frozenset", "int", "float", "str", "bytes", "bool"}
_SAFE_NUMPY = {"scalar", "dtype", "_reconstruct", "ndarray"}


class _Unpickler(pickle.Unpickler):
    def __init__(self, data: bytes, arrays: Callable[[int], np.ndarray]) -> None:
        super().__init__(io.BytesIO(data))
        self._array = arrays
        self._meshes: dict[int, trimesh.Trimesh] = {}

    def find_class(self, module: str, name: str) -> Any:
        ok = (
            module.startswith("drsynth.subjects.")
            or (module == "builtins" and name in _SAFE_BUILTINS)
            or (module.split(".")[0] == "numpy" and name in _SAFE_NUMPY)
            or (module == "collections" and name == "OrderedDict")
        )
        if not ok:
            raise pickle.UnpicklingError(f"subject cache: {module}.{name} is not allowed in an entry")
        return super().find_class(module, name)

    def persistent_load(self, pid: Any) -> Any:
        kind = pid[0]
        if kind == "array":
            return self._array(pid[1])
        if kind == "mesh_ref":
            return self._meshes[pid[1]]
        if kind == "mesh":
            _, number, v, f, n, uv, meta = pid
            mesh = trimesh.Trimesh(
                v,
                f,
                vertex_normals=n,
                visual=None if uv is None else trimesh.visual.TextureVisuals(uv=uv),
                process=False,
            )
            mesh.metadata.update(meta)
            self._meshes[number] = mesh
            return mesh
        raise pickle.UnpicklingError(f"subject cache: unknown record kind {kind!r}")


class _Rebuilt:
    """Stands in for a model attribute that cannot be stored (the SDF closures): the first call builds the
    model afresh and delegates, so a cached model behaves exactly like a built one."""

    def __init__(self, model: QuadrupedModel, name: str) -> None:
        self._model, self._name, self._fn = model, name, None

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if self._fn is None:
            from drsynth.subjects.quadruped import QuadrupedModel

            m = self._model
            self._fn = getattr(QuadrupedModel(m.a, detail=m.detail), self._name)
        return self._fn(*args, **kwargs)


def _encode(baked: Baked, key: str) -> bytes:
    model, meshes, materials = baked
    state = {k: v for k, v in vars(model).items() if not callable(v)}
    rebuilt = sorted(k for k, v in vars(model).items() if callable(v))
    buf = io.BytesIO()
    p = _Pickler(buf)
    p.dump({"key": key, "model": state, "rebuilt": rebuilt, "meshes": meshes, "materials": materials})
    arrays = {f"a{i}": a for i, a in enumerate(p.arrays)}
    out = io.BytesIO()
    np.savez(out, skeleton=np.frombuffer(buf.getvalue(), np.uint8), **arrays)
    return out.getvalue()


def _decode(data: bytes, key: str) -> Baked:
    from drsynth.subjects.quadruped import QuadrupedModel

    with np.load(io.BytesIO(data), allow_pickle=False) as npz:
        arrays: dict[int, np.ndarray] = {}

        def array(i: int) -> np.ndarray:
            # Equal contents were stored once; each use gets its own array, as in a freshly built subject.
            if i not in arrays:
                arrays[i] = npz[f"a{i}"]
                return arrays[i]
            return arrays[i].copy()

        doc = _Unpickler(npz["skeleton"].tobytes(), array).load()
    if doc.get("key") != key:
        raise ValueError(f"entry holds key {str(doc.get('key'))[:12]}..., expected {key[:12]}...")
    model = QuadrupedModel.__new__(QuadrupedModel)  # restored, not rebuilt: that is the point
    vars(model).update(doc["model"])
    for name in doc["rebuilt"]:
        setattr(model, name, _Rebuilt(model, name))
    return model, doc["meshes"], doc["materials"]
