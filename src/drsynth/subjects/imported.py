"""Imported models: glTF / GLB / OBJ files in one folder per class, normalised into `Subject`s.

Folder layout: `models_dir/` holds the files of one class (`*.glb`, `*.gltf` with its `.bin` and images
beside it, `*.obj` with its `.mtl` and images). Each file is one subject; its breed is the file name.

Normalisation (so any exporter's units and axes work):
- Up is +Y (the glTF convention; OBJ exporters default to it too).
- Forward: the longest horizontal axis of the model (in its default pose). A model long along Z faces +Z
  (glTF's "front faces +Z") and is turned to face +X; a model long along X is kept facing +X.
- Scale: the longest horizontal extent is kept when it is plausible in metres for the class
  (CLASS_SIZES: cat 0.3-1.1 m, dog 0.3-1.3 m, bicycle 1.0-2.8 m, car 2.5-7.0 m); otherwise the model is
  scaled to the class's typical size (cat 0.7, dog 0.9, bicycle 1.75, car 4.4 m). Unknown classes keep
  their units.
- Ground contact and centring: the default pose stands on y = 0, centred on the origin in x and z.

Materials are kept (base colour, metallic, roughness, textures, emissive, alpha mode, double-sidedness).
A model without materials, or with only exporter defaults (flat 0.8 grey) named after colours ("Grey",
"Pink", ...), gets the named colours or a class-typical material. Vertex colours are folded into
per-colour parts. Parts whose material name says glass, tyre, light, eye, nose... are not texturable.

Rigged glTF models (skins + animation clips) pose by linear blend skinning (`gltf_skin`): a pose is
{"clip": name, "time": seconds} with time on a 1/30 s grid, so posed meshes repeat and are cached; the
default pose is the first frame of a clip named "idle" (else the rest pose). Rigid node animations work
the same way without skinning.

A file that fails to load is reported by name through `on_error(path, reason)` and skipped.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path

import numpy as np
import trimesh

from drsynth.errors import AssetError
from drsynth.subjects import shapes as S
from drsynth.subjects.base import Part, Pose, Subject, SurfaceMaterial
from drsynth.subjects.gltf_skin import GltfAsset, GltfError, Primitive, decode_image, skin_vertices

MODEL_SUFFIXES = {".glb", ".gltf", ".obj"}
# Files that are clearly 3-D models in a format we do not read: reported, not silently ignored.
UNSUPPORTED_SUFFIXES = {
    ".fbx",
    ".blend",
    ".dae",
    ".3ds",
    ".max",
    ".ma",
    ".mb",
    ".usd",
    ".usdz",
    ".stl",
    ".ply",
    ".x3d",
}

# class -> (min plausible, max plausible, typical) longest horizontal extent in metres
CLASS_SIZES: dict[str, tuple[float, float, float]] = {
    "cat": (0.3, 1.1, 0.7),
    "dog": (0.3, 1.3, 0.9),
    "bicycle": (1.0, 2.8, 1.75),
    "car": (2.5, 7.0, 4.4),
}
# class -> material for models that have none: (rgb, metallic, roughness)
CLASS_MATERIALS: dict[str, tuple[tuple[float, float, float], float, float]] = {
    "cat": ((0.42, 0.36, 0.3), 0.0, 0.85),
    "dog": ((0.5, 0.36, 0.22), 0.0, 0.85),
    "bicycle": ((0.15, 0.15, 0.17), 0.3, 0.45),
    "car": ((0.55, 0.56, 0.6), 0.3, 0.35),
}
COLOUR_NAMES = {
    "black": (0.03, 0.03, 0.03),
    "white": (0.9, 0.9, 0.88),
    "grey": (0.45, 0.45, 0.45),
    "gray": (0.45, 0.45, 0.45),
    "darkgrey": (0.2, 0.2, 0.2),
    "lightgrey": (0.7, 0.7, 0.7),
    "pink": (0.9, 0.55, 0.6),
    "red": (0.7, 0.06, 0.05),
    "brown": (0.35, 0.22, 0.12),
    "darkbrown": (0.18, 0.1, 0.05),
    "lightbrown": (0.6, 0.42, 0.25),
    "beige": (0.8, 0.68, 0.5),
    "orange": (0.9, 0.45, 0.1),
    "yellow": (0.92, 0.8, 0.15),
    "green": (0.15, 0.5, 0.15),
    "blue": (0.1, 0.25, 0.7),
    "cream": (0.93, 0.88, 0.75),
    "tan": (0.7, 0.55, 0.38),
}
NOT_TEXTURABLE = re.compile(
    r"glass|window|tyre|tire|wheel|rubber|light|lamp|eye|pupil|iris|nose|teeth|tooth|tongue|claw|chrome|mirror",
    re.I,
)
FPS = 30.0


def load_models(folder: str | Path, class_name: str, on_error: Callable[[str, str], None]) -> list[Subject]:
    """Every loadable model file in `folder` as a subject of `class_name`; failures go to on_error."""
    folder = Path(folder)
    if not folder.is_dir():
        raise AssetError(
            f"models_dir for class '{class_name}' is not a folder: {folder}. Point subject.<class>.models_dir at a "
            "folder of .glb/.gltf/.obj files (one folder per class)."
        )
    out: list[Subject] = []
    for path in sorted(folder.iterdir(), key=lambda p: p.name.lower()):
        suffix = path.suffix.lower()
        if suffix in UNSUPPORTED_SUFFIXES:
            on_error(str(path), f"unsupported model format '{suffix}': convert it to glTF/GLB (or OBJ)")
            continue
        if suffix not in MODEL_SUFFIXES or not path.is_file():
            continue
        try:
            out.append(load_model(path, class_name))
        except Exception as e:  # noqa: BLE001 - any failure of a user's file is reported and the file skipped
            on_error(str(path), f"{type(e).__name__}: {e}")
    return out


def load_model(path: str | Path, class_name: str) -> Subject:
    path = Path(path)
    if path.suffix.lower() in (".glb", ".gltf"):
        return GltfSubject(GltfAsset.load(path), class_name)
    return MeshSubject(path, class_name)


# ----------------------------------------------------------------------------------------------------------
# Normalisation and materials
# ----------------------------------------------------------------------------------------------------------
def normalisation(bounds: np.ndarray, class_name: str) -> np.ndarray:
    """4x4 matrix taking a model (bounds in its own frame, +Y up) to the subject frame: forward +X, ground
    y = 0, centred in x/z, plausible size for the class (see the module docstring)."""
    lo, hi = bounds
    ext = hi - lo
    if not np.all(np.isfinite(ext)) or ext.max() <= 0:
        raise AssetError("model has no extent (empty or degenerate geometry)")
    centre = (lo + hi) / 2
    m = np.eye(4)
    m[:3, 3] = [-centre[0], -lo[1], -centre[2]]
    long_z = ext[2] > ext[0]
    if long_z:  # +Z forward -> +X
        m = trimesh.transformations.rotation_matrix(np.pi / 2, [0, 1, 0]) @ m
    length = float(max(ext[0], ext[2]))
    scale = 1.0
    if class_name in CLASS_SIZES:
        lo_ok, hi_ok, typical = CLASS_SIZES[class_name]
        if not lo_ok <= length <= hi_ok:
            scale = typical / length
    return np.diag([scale, scale, scale, 1.0]) @ m


def _default_material(class_name: str, key: str) -> SurfaceMaterial:
    rgb, metallic, rough = CLASS_MATERIALS.get(class_name, ((0.6, 0.6, 0.6), 0.0, 0.6))
    return SurfaceMaterial(
        key=f"import/default/{class_name}/{key}", base_color=(*rgb, 1.0), metallic=metallic, roughness=rough
    )


def _named_colour(name: str) -> tuple[float, float, float] | None:
    n = re.sub(r"[^a-z]", "", (name or "").lower())
    for word in sorted(COLOUR_NAMES, key=len, reverse=True):
        if n.startswith(word) or n.endswith(word):
            return COLOUR_NAMES[word]
    return None


def _placeholder_colour(name: str, class_name: str, index: int) -> tuple[float, float, float]:
    """A colour for an exporter-default material: from its name ("Grey", "Wheel", "Window"), else the
    class colour in a shade that differs per material so parts stay distinguishable."""
    named = _named_colour(name)
    if named is not None:
        return named
    if re.search(r"wheel|tire|tyre|rubber", name, re.I):
        return (0.04, 0.04, 0.04)
    if re.search(r"glass|window", name, re.I):
        return (0.05, 0.06, 0.08)
    if re.search(r"light|lamp", name, re.I):
        return (0.9, 0.88, 0.8)
    base = np.asarray(CLASS_MATERIALS.get(class_name, ((0.6, 0.6, 0.6), 0.0, 0.0))[0])
    shade = (1.0, 0.3, 0.65, 0.15)[index % 4]
    return tuple(float(c) for c in np.clip(base * shade, 0, 1))


def _is_placeholder(rgb, has_texture: bool) -> bool:
    """Blender's default 0.8 grey (or pure white) with no texture: the exporter's stand-in, not a choice."""
    return not has_texture and (np.allclose(rgb, 0.8, atol=0.01) or np.allclose(rgb, 1.0, atol=0.01))


def _gltf_materials(asset: GltfAsset, class_name: str, key: str) -> list[tuple[SurfaceMaterial, bool]]:
    """(material, texturable) per glTF material index."""
    out = []
    images: dict[int, np.ndarray] = {}

    def tex(info):
        if not info:
            return None
        t = asset.doc.get("textures", [])[info["index"]]
        src = t.get("source")
        if src is None:
            return None
        if src not in images:
            images[src] = decode_image(asset, src)
        return images[src]

    for i, m in enumerate(asset.doc.get("materials", [])):
        pbr = m.get("pbrMetallicRoughness", {})
        f = list(pbr.get("baseColorFactor", [1.0, 1.0, 1.0, 1.0]))
        base_tex = tex(pbr.get("baseColorTexture"))
        rgb = f[:3]
        name = m.get("name", "")
        alpha_mode = m.get("alphaMode", "OPAQUE")
        if _is_placeholder(rgb, base_tex is not None):
            rgb = _placeholder_colour(name, class_name, i)
        out.append(
            (
                SurfaceMaterial(
                    key=f"import/{key}/mat{i}",
                    base_color=(*(float(c) for c in rgb), float(f[3]) if alpha_mode != "OPAQUE" else 1.0),
                    metallic=float(pbr.get("metallicFactor", 1.0))
                    if "metallicRoughnessTexture" not in pbr
                    else 0.0,
                    roughness=float(pbr.get("roughnessFactor", 1.0)),
                    base_color_texture=base_tex,
                    normal_texture=tex(m.get("normalTexture")),
                    emissive=tuple(float(c) for c in m.get("emissiveFactor", [0.0, 0.0, 0.0])),
                    alpha_mode=alpha_mode if alpha_mode in ("OPAQUE", "MASK", "BLEND") else "OPAQUE",
                    double_sided=bool(m.get("doubleSided", False)),
                ),
                not NOT_TEXTURABLE.search(name),
            )
        )
    return out


def _colour_groups(
    colors: np.ndarray, faces: np.ndarray, max_groups: int = 24
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Faces grouped by (quantised) vertex colour: [(rgb, face indices)], for models coloured per vertex."""
    fc = colors[faces][:, :, :3].mean(1)
    q = np.round(fc * 12) / 12
    keys, inv = np.unique(q, axis=0, return_inverse=True)
    inv = inv.reshape(-1)
    if len(keys) > max_groups:  # too many colours: keep the most common, fold the rest into the nearest
        counts = np.bincount(inv, minlength=len(keys))
        top = np.argsort(counts)[::-1][:max_groups]
        d = np.linalg.norm(keys[:, None] - keys[top][None], axis=2)
        inv = top[np.argmin(d, axis=1)][inv]
    return [(fc[inv == k].mean(0), np.nonzero(inv == k)[0]) for k in np.unique(inv)]


def _tint(m: SurfaceMaterial, rgb, key: str) -> SurfaceMaterial:
    c = m.base_color
    return SurfaceMaterial(
        key=f"{m.key}/{key}",
        base_color=(c[0] * rgb[0], c[1] * rgb[1], c[2] * rgb[2], c[3]),
        metallic=m.metallic,
        roughness=m.roughness,
        base_color_texture=m.base_color_texture,
        normal_texture=m.normal_texture,
        emissive=m.emissive,
        alpha_mode=m.alpha_mode,
        double_sided=m.double_sided,
    )


def _mesh(verts, faces, normals, uv) -> trimesh.Trimesh:
    if uv is None:  # box-projected UVs so a texture randomizer can still dress the model
        n = normals if normals is not None else S.smooth_normals(verts, faces)
        uv = S.box_uv(verts, n, 0.5)
    return S.make_mesh(verts, faces, uv, normals)


# ----------------------------------------------------------------------------------------------------------
# Subjects
# ----------------------------------------------------------------------------------------------------------
class _Piece:
    """A primitive (or a colour group of one) with its material, ready to pose."""

    def __init__(
        self,
        name: str,
        node: int,
        skin: int | None,
        prim: Primitive,
        faces: np.ndarray,
        material: SurfaceMaterial,
        texturable: bool,
    ):
        self.name = name
        self.node = node
        self.skin = skin
        # Keep only the vertices these faces use.
        used = np.unique(faces)
        remap = np.full(len(prim.positions), -1)
        remap[used] = np.arange(len(used))
        self.faces = remap[faces]
        self.positions = prim.positions[used]
        self.normals = None if prim.normals is None else prim.normals[used]
        # Models without UVs get box-projected ones from the rest pose, fixed for every pose (so a texture
        # moves with the skin instead of swimming over it).
        if prim.uv is not None:
            self.uv = prim.uv[used]
        else:
            n = self.normals if self.normals is not None else S.smooth_normals(self.positions, self.faces)
            self.uv = S.box_uv(self.positions, n, 0.5 * float(np.ptp(self.positions, axis=0).max() or 1.0))
        self.joints = None if prim.joints is None else prim.joints[used]
        self.weights = None if prim.weights is None else prim.weights[used]
        self.material = material
        self.texturable = texturable
        self.static_mesh: trimesh.Trimesh | None = None

    @property
    def skinned(self) -> bool:
        return self.skin is not None and self.joints is not None


class GltfSubject(Subject):
    """A glTF/GLB model; rigged or node-animated models pose by clip and time."""

    source = "imported"

    def __init__(self, asset: GltfAsset, class_name: str, *, cache_size: int = 256):
        self.asset = asset
        self.class_name = class_name
        self.breed = asset.path.name
        self.id = f"{class_name}/model/{asset.path.name}"
        key = f"{asset.path.resolve()}"
        mats = _gltf_materials(asset, class_name, key)
        self.pieces: list[_Piece] = []
        for node, mi, skin in asset.mesh_nodes:
            for prim in asset.primitives[mi]:
                if prim.material is not None and prim.material < len(mats):
                    mat, texturable = mats[prim.material]
                else:
                    mat, texturable = _default_material(class_name, key), True
                base = f"n{node}m{mi}p{prim.index}"
                groups = [(None, np.arange(len(prim.faces)))]
                if prim.colors is not None and np.ptp(prim.colors[:, :3], axis=0).max() > 0.02:
                    groups = _colour_groups(prim.colors, prim.faces)
                for g, (rgb, fidx) in enumerate(groups):
                    m = mat if rgb is None else _tint(mat, rgb, f"c{g}")
                    self.pieces.append(
                        _Piece(f"{base}c{g}", node, skin, prim, prim.faces[fidx], m, texturable)
                    )
        if not self.pieces:
            raise GltfError("no triangle geometry in the default scene")
        self.clips = [c for c in asset.clips if c.channels and c.duration > 0]
        self._clip_index = {c.name: asset.clips.index(c) for c in self.clips}
        self._cache: OrderedDict = OrderedDict()
        self._cache_size = cache_size
        idle = next((c.name for c in self.clips if "idle" in c.name.lower()), None)
        self._default = {"clip": idle, "time": 0.0}
        # Normalise from the default pose.
        pts = []
        for _, verts, _, transform in self._posed(self._default):
            pts.append(trimesh.transform_points(verts, transform) if transform is not None else verts)
        allp = np.concatenate(pts)
        self.normalise = normalisation(np.stack([allp.min(0), allp.max(0)]), class_name)

    def default_pose(self) -> Pose:
        return dict(self._default)

    def sample_pose(self, rng: np.random.Generator) -> Pose:
        if not self.clips:
            return {"clip": None, "time": 0.0}
        clip = self.clips[int(rng.integers(len(self.clips)))]
        frames = max(int(clip.duration * FPS), 0)
        return {"clip": clip.name, "time": round(int(rng.integers(frames + 1)) / FPS, 4)}

    def _world(self, pose: Pose) -> np.ndarray:
        clip = pose.get("clip")
        if clip is not None and clip not in self._clip_index:
            raise AssetError(f"{self.id}: no animation clip {clip!r}; clips: {sorted(self._clip_index)}")
        idx = None if clip is None else self._clip_index[clip]
        return self.asset.world_matrices(idx, float(pose.get("time", 0.0)))

    def _skin_batches(self) -> dict[int, tuple[Primitive, list[tuple[_Piece, int, int]]]]:
        """All skinned pieces of one skin concatenated, so a pose skins them in one vectorised call."""
        if not hasattr(self, "_batches"):
            batches: dict[int, list[_Piece]] = {}
            for p in self.pieces:
                if p.skinned:
                    batches.setdefault(p.skin, []).append(p)
            self._batches = {}
            for skin, ps in batches.items():
                sizes = np.cumsum([0] + [len(p.positions) for p in ps])
                normals = None
                if all(p.normals is not None for p in ps):
                    normals = np.concatenate([p.normals for p in ps])
                prim = Primitive(
                    0,
                    0,
                    np.concatenate([p.positions for p in ps]),
                    np.zeros((0, 3), dtype=np.int64),
                    normals,
                    joints=np.concatenate([p.joints for p in ps]),
                    weights=np.concatenate([p.weights for p in ps]),
                )
                self._batches[skin] = (
                    prim,
                    [(p, int(a), int(b)) for p, a, b in zip(ps, sizes[:-1], sizes[1:], strict=True)],
                )
        return self._batches

    def _posed(self, pose: Pose):
        """(piece, vertices, normals, node transform or None for skinned) for every piece."""
        world = self._world(pose)
        posed: dict[int, tuple] = {}
        for skin, (prim, members) in self._skin_batches().items():
            v, n = skin_vertices(prim, self.asset.skin_matrices(skin, world))
            for p, a, b in members:
                posed[id(p)] = (p, v[a:b], None if n is None else n[a:b], None)
        return [posed.get(id(p)) or (p, p.positions, p.normals, world[p.node]) for p in self.pieces]

    def parts(self, pose: Pose) -> list[Part]:
        clip = pose.get("clip")
        time = round(float(pose.get("time", 0.0)) * FPS) / FPS
        cache_key = (clip, time)
        if cache_key in self._cache:
            self._cache.move_to_end(cache_key)
            return self._cache[cache_key]
        parts = []
        for p, v, n, transform in self._posed({"clip": clip, "time": time}):
            if transform is None:  # skinned: geometry depends on the pose
                mesh = _mesh(v, p.faces, n, p.uv)
                key = f"{self.id}/{p.name}@{clip}:{time:.4f}"
                parts.append(
                    Part(
                        key=key,
                        mesh=mesh,
                        transform=self.normalise,
                        material=p.material,
                        texturable=p.texturable,
                    )
                )
            else:
                if p.static_mesh is None:
                    p.static_mesh = _mesh(v, p.faces, n, p.uv)
                parts.append(
                    Part(
                        key=f"{self.id}/{p.name}",
                        mesh=p.static_mesh,
                        transform=self.normalise @ transform,
                        material=p.material,
                        texturable=p.texturable,
                    )
                )
        self._cache[cache_key] = parts
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return parts

    def describe(self) -> dict:
        d = super().describe()
        d["clips"] = [c.name for c in self.clips]
        return d


class MeshSubject(Subject):
    """A static model read by trimesh (OBJ + MTL): one rigid pose."""

    source = "imported"

    def __init__(self, path: Path, class_name: str):
        self.class_name = class_name
        self.breed = path.name
        self.id = f"{class_name}/model/{path.name}"
        key = f"{path.resolve()}"
        scene = trimesh.load(path, force="scene")
        self._parts: list[Part] = []
        raw = []
        for node in scene.graph.nodes_geometry:
            transform, geom_name = scene.graph[node]
            g = scene.geometry[geom_name]
            if not isinstance(g, trimesh.Trimesh) or not len(g.faces):
                continue
            raw.append((f"{node}", g, np.asarray(transform, dtype=np.float64)))
        if not raw:
            raise AssetError(f"{path.name}: no triangle geometry")
        pts = np.concatenate([trimesh.transform_points(g.vertices, t) for _, g, t in raw])
        self.normalise = normalisation(np.stack([pts.min(0), pts.max(0)]), class_name)
        for i, (name, g, t) in enumerate(raw):
            for j, (mesh, mat, texturable) in enumerate(_trimesh_parts(g, class_name, f"{key}/{i}")):
                self._parts.append(
                    Part(
                        key=f"{self.id}/{name}/{j}",
                        mesh=mesh,
                        transform=self.normalise @ t,
                        material=mat,
                        texturable=texturable,
                    )
                )

    def default_pose(self) -> Pose:
        return {}

    def sample_pose(self, rng: np.random.Generator) -> Pose:
        return {}

    def parts(self, pose: Pose) -> list[Part]:
        return self._parts


def _trimesh_parts(g: trimesh.Trimesh, class_name: str, key: str):
    """[(mesh, material, texturable)] for one trimesh geometry, keeping its material or colours."""
    verts = np.asarray(g.vertices, dtype=np.float64)
    faces = np.asarray(g.faces, dtype=np.int64)
    normals = np.asarray(g.vertex_normals, dtype=np.float64)
    vis = g.visual
    if isinstance(vis, trimesh.visual.ColorVisuals) and vis.kind in ("face", "vertex"):
        if vis.kind == "vertex":
            colors = np.asarray(vis.vertex_colors, dtype=np.float64) / 255.0
        else:
            fcol = np.asarray(vis.face_colors, dtype=np.float64) / 255.0
            colors = np.zeros((len(verts), 4))
            colors[faces.reshape(-1)] = np.repeat(fcol, 3, axis=0)
        out = []
        for k, (rgb, fidx) in enumerate(_colour_groups(colors, faces)):
            m = SurfaceMaterial(
                key=f"import/{key}/c{k}", base_color=(*(float(c) for c in rgb), 1.0), roughness=0.7
            )
            out.append((_mesh(verts, faces[fidx], normals, None), m, True))
        return out
    uv = getattr(vis, "uv", None)
    mat = getattr(vis, "material", None)
    name = getattr(mat, "name", "") or ""
    surface = _default_material(class_name, key)
    if isinstance(mat, trimesh.visual.material.PBRMaterial):
        f = np.asarray(
            mat.baseColorFactor if mat.baseColorFactor is not None else [255, 255, 255, 255], dtype=np.float64
        )
        f = f / 255.0 if f.max() > 1.0 else f
        img = (
            None
            if mat.baseColorTexture is None
            else np.ascontiguousarray(np.asarray(mat.baseColorTexture.convert("RGB")))
        )
        surface = SurfaceMaterial(
            key=f"import/{key}/pbr",
            base_color=(*(float(c) for c in f[:3]), 1.0),
            metallic=float(mat.metallicFactor or 0.0),
            roughness=float(mat.roughnessFactor if mat.roughnessFactor is not None else 0.6),
            base_color_texture=img,
        )
    elif isinstance(mat, trimesh.visual.material.SimpleMaterial):
        d = np.asarray(mat.diffuse, dtype=np.float64)[:3] / 255.0
        img = None if mat.image is None else np.ascontiguousarray(np.asarray(mat.image.convert("RGB")))
        if not _is_placeholder(d, img is not None) or _named_colour(name) is not None:
            rgb = _placeholder_colour(name, class_name, 0) if _is_placeholder(d, img is not None) else d
            surface = SurfaceMaterial(
                key=f"import/{key}/simple",
                base_color=(*(float(c) for c in rgb), 1.0),
                roughness=0.6,
                base_color_texture=img,
            )
    if uv is not None and len(uv) != len(verts):
        uv = None
    return [
        (
            _mesh(verts, faces, normals, None if uv is None else np.asarray(uv, dtype=np.float64)),
            surface,
            not NOT_TEXTURABLE.search(name),
        )
    ]
