"""A small glTF 2.0 reader with node animation and linear blend skinning (numpy only).

trimesh loads glTF geometry but neither animates nor skins it, so imported rigged models are read here:
GLB or .gltf (embedded data URIs or files beside it), accessors (strided, normalised, sparse), the node
hierarchy (TRS or matrix), triangle primitives with POSITION / NORMAL / TEXCOORD_0 / COLOR_0 / JOINTS_0 /
WEIGHTS_0, materials (metallic-roughness), skins and animation clips (translation / rotation / scale
channels; LINEAR, STEP and CUBICSPLINE samplers).

Posing follows the glTF spec: a clip overrides node TRS at time t, world matrices follow the hierarchy, a
skinned primitive's vertices become sum_i w_i * world(joint_i) @ inverseBind(joint_i) @ v (the skinned
node's own transform is ignored), and every other mesh follows its node's world matrix.
"""

from __future__ import annotations

import base64
import io
import json
import struct
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote

import numpy as np

_COMPONENT = {
    5120: np.int8,
    5121: np.uint8,
    5122: np.int16,
    5123: np.uint16,
    5125: np.uint32,
    5126: np.float32,
}
_NCOMP = {"SCALAR": 1, "VEC2": 2, "VEC3": 3, "VEC4": 4, "MAT2": 4, "MAT3": 9, "MAT4": 16}
_NORM = {np.int8: 127.0, np.uint8: 255.0, np.int16: 32767.0, np.uint16: 65535.0, np.uint32: 4294967295.0}


class GltfError(ValueError):
    """The file is not a glTF 2.0 asset this reader can use (message says why)."""


@dataclass
class Primitive:
    """One triangle primitive of a mesh, in its node's space."""

    mesh_index: int
    index: int
    positions: np.ndarray
    faces: np.ndarray
    normals: np.ndarray | None = None
    uv: np.ndarray | None = None
    colors: np.ndarray | None = None
    joints: np.ndarray | None = None
    weights: np.ndarray | None = None
    material: int | None = None


@dataclass
class Channel:
    node: int
    path: str  # translation | rotation | scale
    times: np.ndarray
    values: np.ndarray  # (k, n); for CUBICSPLINE the key values only
    interpolation: str
    tangents: np.ndarray | None = None  # CUBICSPLINE (k, 2, n): in / out tangents


@dataclass
class Clip:
    name: str
    channels: list[Channel]
    duration: float


@dataclass
class Skin:
    joints: np.ndarray
    inverse_bind: np.ndarray  # (j, 4, 4)


@dataclass
class GltfAsset:
    path: Path
    doc: dict
    buffers: list[bytes] = field(repr=False)
    translation: np.ndarray = field(repr=False)  # (n, 3) rest TRS per node
    rotation: np.ndarray = field(repr=False)  # (n, 4) x y z w
    scale: np.ndarray = field(repr=False)
    matrix: list[np.ndarray | None] = field(repr=False)
    parents: np.ndarray = field(repr=False)
    order: list[int] = field(repr=False)  # nodes, parents before children
    mesh_nodes: list[tuple[int, int, int | None]] = field(repr=False)  # (node, mesh, skin)
    primitives: dict[int, list[Primitive]] = field(repr=False)
    skins: list[Skin] = field(repr=False)
    clips: list[Clip] = field(repr=False)

    # -- loading -----------------------------------------------------------------------------------------
    @classmethod
    def load(cls, path: str | Path) -> GltfAsset:
        path = Path(path)
        raw = path.read_bytes()
        if raw[:4] == b"glTF":
            doc, bin_chunk = _parse_glb(raw)
        else:
            try:
                doc = json.loads(raw.decode("utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError) as e:
                raise GltfError(f"neither GLB nor glTF JSON ({e})") from e
            bin_chunk = None
        if not isinstance(doc, dict) or str(doc.get("asset", {}).get("version", "")).split(".")[0] != "2":
            raise GltfError("not a glTF 2.0 asset (asset.version must be 2.x)")
        if "KHR_draco_mesh_compression" in doc.get("extensionsRequired", []):
            raise GltfError("Draco-compressed meshes are not supported; export without compression")
        buffers = []
        for i, b in enumerate(doc.get("buffers", [])):
            uri = b.get("uri")
            if uri is None:
                if bin_chunk is None:
                    raise GltfError(f"buffer {i} has no uri and the file has no GLB binary chunk")
                buffers.append(bin_chunk)
            elif uri.startswith("data:"):
                buffers.append(base64.b64decode(uri.split(",", 1)[1]))
            else:
                f = path.parent / unquote(uri)
                if not f.is_file():
                    raise GltfError(f"buffer file {uri!r} not found beside {path.name}")
                buffers.append(f.read_bytes())
        asset = cls._from_doc(path, doc, buffers)
        return asset

    @classmethod
    def _from_doc(cls, path: Path, doc: dict, buffers: list[bytes]) -> GltfAsset:
        nodes = doc.get("nodes", [])
        n = len(nodes)
        t = np.zeros((n, 3))
        r = np.tile([0.0, 0.0, 0.0, 1.0], (n, 1))
        s = np.ones((n, 3))
        mats: list[np.ndarray | None] = [None] * n
        parents = np.full(n, -1)
        for i, nd in enumerate(nodes):
            if "matrix" in nd:
                mats[i] = np.asarray(nd["matrix"], dtype=np.float64).reshape(4, 4).T
            t[i] = nd.get("translation", t[i])
            r[i] = nd.get("rotation", r[i])
            s[i] = nd.get("scale", s[i])
            for c in nd.get("children", []):
                if parents[c] != -1:
                    raise GltfError(f"node {c} has two parents")
                parents[c] = i
        order = _topological(parents)
        asset = cls(
            path=path,
            doc=doc,
            buffers=buffers,
            translation=t,
            rotation=r,
            scale=s,
            matrix=mats,
            parents=parents,
            order=order,
            mesh_nodes=[],
            primitives={},
            skins=[],
            clips=[],
        )
        scene_nodes = set(_scene_nodes(doc, parents))
        for i, nd in enumerate(nodes):
            if "mesh" in nd and i in scene_nodes:
                asset.mesh_nodes.append((i, nd["mesh"], nd.get("skin")))
        for mi in {m for _, m, _ in asset.mesh_nodes}:
            asset.primitives[mi] = asset._read_mesh(mi)
        for sk in doc.get("skins", []):
            joints = np.asarray(sk["joints"], dtype=np.int64)
            if "inverseBindMatrices" in sk:
                ibm = asset.accessor(sk["inverseBindMatrices"]).reshape(-1, 4, 4).transpose(0, 2, 1)
            else:
                ibm = np.tile(np.eye(4), (len(joints), 1, 1))
            asset.skins.append(Skin(joints=joints, inverse_bind=ibm.astype(np.float64)))
        for k, anim in enumerate(doc.get("animations", [])):
            asset.clips.append(asset._read_clip(k, anim))
        return asset

    def accessor(self, index: int) -> np.ndarray:
        """Accessor `index` as a float64 (or integer for indices / joints) array of shape (count, n)."""
        a = self.doc["accessors"][index]
        dtype = np.dtype(_COMPONENT[a["componentType"]]).newbyteorder("<")
        n = _NCOMP[a["type"]]
        count = a["count"]
        if "bufferView" in a:
            bv = self.doc["bufferViews"][a["bufferView"]]
            buf = self.buffers[bv["buffer"]]
            off = bv.get("byteOffset", 0) + a.get("byteOffset", 0)
            item = dtype.itemsize * n
            stride = bv.get("byteStride") or item
            need = off + stride * (count - 1) + item if count else off
            if need > len(buf):
                raise GltfError(f"accessor {index} reads past the end of buffer {bv['buffer']}")
            if a["type"] in ("MAT2", "MAT3") and dtype.itemsize < 4:
                raise GltfError("padded small-integer matrices are not supported")
            arr = np.ndarray(
                (count, n), dtype=dtype, buffer=buf, offset=off, strides=(stride, dtype.itemsize)
            ).copy()
        else:
            arr = np.zeros((count, n), dtype=dtype)
        if "sparse" in a:
            sp = a["sparse"]
            ib = self.doc["bufferViews"][sp["indices"]["bufferView"]]
            idt = np.dtype(_COMPONENT[sp["indices"]["componentType"]])
            idx = np.frombuffer(
                self.buffers[ib["buffer"]],
                idt,
                sp["count"],
                ib.get("byteOffset", 0) + sp["indices"].get("byteOffset", 0),
            )
            vb = self.doc["bufferViews"][sp["values"]["bufferView"]]
            vals = np.frombuffer(
                self.buffers[vb["buffer"]],
                dtype,
                sp["count"] * n,
                vb.get("byteOffset", 0) + sp["values"].get("byteOffset", 0),
            )
            arr = arr.copy()
            arr[idx.astype(np.int64)] = vals.reshape(-1, n)
        if a.get("normalized") and dtype.type in _NORM:
            return np.maximum(arr.astype(np.float64) / _NORM[dtype.type], -1.0)
        return arr.astype(np.float64) if dtype.kind == "f" else arr

    def _read_mesh(self, mi: int) -> list[Primitive]:
        out = []
        for k, p in enumerate(self.doc["meshes"][mi].get("primitives", [])):
            if p.get("mode", 4) != 4:
                continue  # points / lines / strips are not surfaces we can render
            at = p.get("attributes", {})
            if "POSITION" not in at:
                continue
            pos = self.accessor(at["POSITION"])[:, :3].astype(np.float64)
            if "indices" in p:
                idx = self.accessor(p["indices"]).reshape(-1).astype(np.int64)
            else:
                idx = np.arange(len(pos))
            if len(idx) % 3 or (len(idx) and (idx.max() >= len(pos) or idx.min() < 0)):
                raise GltfError(f"mesh {mi} primitive {k}: bad triangle indices")
            prim = Primitive(
                mesh_index=mi, index=k, positions=pos, faces=idx.reshape(-1, 3), material=p.get("material")
            )
            if "NORMAL" in at:
                prim.normals = self.accessor(at["NORMAL"])[:, :3].astype(np.float64)
            if "TEXCOORD_0" in at:
                prim.uv = self.accessor(at["TEXCOORD_0"])[:, :2].astype(np.float64)
            if "COLOR_0" in at:
                c = self.accessor(at["COLOR_0"]).astype(np.float64)
                if c.max() > 1.0:  # un-normalised integer colours
                    c = c / 255.0
                prim.colors = np.concatenate([c, np.ones((len(c), 1))], 1)[:, :4] if c.shape[1] == 3 else c
            if "JOINTS_0" in at and "WEIGHTS_0" in at:
                prim.joints = self.accessor(at["JOINTS_0"]).astype(np.int64)
                w = self.accessor(at["WEIGHTS_0"]).astype(np.float64)
                total = w.sum(1, keepdims=True)
                prim.weights = np.where(total > 0, w / np.where(total > 0, total, 1.0), 0.0)
            out.append(prim)
        return out

    def _read_clip(self, k: int, anim: dict) -> Clip:
        channels = []
        duration = 0.0
        for ch in anim.get("channels", []):
            tgt = ch.get("target", {})
            if "node" not in tgt or tgt.get("path") not in ("translation", "rotation", "scale"):
                continue  # morph weights / pointer animations do not move geometry we pose
            smp = anim["samplers"][ch["sampler"]]
            times = self.accessor(smp["input"]).reshape(-1).astype(np.float64)
            vals = self.accessor(smp["output"]).astype(np.float64)
            n = 4 if tgt["path"] == "rotation" else 3
            vals = vals.reshape(-1, n)
            interp = smp.get("interpolation", "LINEAR")
            tangents = None
            if interp == "CUBICSPLINE":
                v3 = vals.reshape(len(times), 3, n)
                tangents = v3[:, [0, 2]]
                vals = v3[:, 1]
            if len(times) == 0 or len(vals) != len(times):
                raise GltfError(f"animation {k}: sampler input/output counts differ")
            channels.append(Channel(tgt["node"], tgt["path"], times, vals, interp, tangents))
            duration = max(duration, float(times[-1]))
        return Clip(name=anim.get("name") or f"clip{k}", channels=channels, duration=duration)

    # -- posing ------------------------------------------------------------------------------------------
    def world_matrices(self, clip: int | None = None, time: float = 0.0) -> np.ndarray:
        """World matrices (n x 4 x 4) of all nodes at `time` of clip `clip` (None: the rest pose)."""
        t, r, s = self.translation.copy(), self.rotation.copy(), self.scale.copy()
        animated = set()
        if clip is not None:
            for ch in self.clips[clip].channels:
                v = _sample(ch, time)
                {"translation": t, "rotation": r, "scale": s}[ch.path][ch.node] = v
                animated.add(ch.node)
        local = _trs_matrices(t, r, s)
        for i, m in enumerate(self.matrix):
            if m is not None and i not in animated:
                local[i] = m
        world = np.empty_like(local)
        for i in self.order:
            p = self.parents[i]
            world[i] = local[i] if p < 0 else world[p] @ local[i]
        return world

    def skin_matrices(self, skin: int, world: np.ndarray) -> np.ndarray:
        sk = self.skins[skin]
        return world[sk.joints] @ sk.inverse_bind


def skin_vertices(prim: Primitive, joint_matrices: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """Linear blend skinning of one primitive (vectorised): (positions, normals) in model space."""
    j = np.clip(prim.joints, 0, len(joint_matrices) - 1)
    jm = joint_matrices[:, :3, :]  # the bottom row is always (0, 0, 0, 1)
    blend = prim.weights[:, 0, None, None] * jm[j[:, 0]]
    for k in range(1, j.shape[1]):
        blend += prim.weights[:, k, None, None] * jm[j[:, k]]
    pos = (blend[:, :, :3] @ prim.positions[:, :, None])[:, :, 0] + blend[:, :, 3]
    nrm = None
    if prim.normals is not None:
        nrm = (blend[:, :, :3] @ prim.normals[:, :, None])[:, :, 0]
        nrm /= np.maximum(np.linalg.norm(nrm, axis=1, keepdims=True), 1e-12)
    return pos, nrm


# -- helpers -----------------------------------------------------------------------------------------------
def _parse_glb(raw: bytes) -> tuple[dict, bytes | None]:
    if len(raw) < 20:
        raise GltfError("GLB file is truncated (shorter than its header)")
    magic, version, length = struct.unpack("<4sII", raw[:12])
    if version != 2:
        raise GltfError(f"GLB version {version}, expected 2")
    if length > len(raw):
        raise GltfError(f"GLB file is truncated ({len(raw)} of {length} bytes)")
    off = 12
    doc, binary = None, None
    while off + 8 <= length:
        clen, ctype = struct.unpack("<II", raw[off : off + 8])
        chunk = raw[off + 8 : off + 8 + clen]
        if len(chunk) != clen:
            raise GltfError("GLB chunk runs past the end of the file")
        if ctype == 0x4E4F534A:
            try:
                doc = json.loads(chunk.decode("utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError) as e:
                raise GltfError(f"GLB JSON chunk is not valid JSON ({e})") from e
        elif ctype == 0x004E4942 and binary is None:
            binary = chunk
        off += 8 + clen  # chunk lengths include their padding
    if doc is None:
        raise GltfError("GLB file has no JSON chunk")
    return doc, binary


def _topological(parents: np.ndarray) -> list[int]:
    n = len(parents)
    depth = np.zeros(n, dtype=np.int64)
    for i in range(n):
        d, p = 0, parents[i]
        while p >= 0:
            d += 1
            p = parents[p]
            if d > n:
                raise GltfError("node hierarchy has a cycle")
        depth[i] = d
    return [int(i) for i in np.argsort(depth, kind="stable")]


def _scene_nodes(doc: dict, parents: np.ndarray) -> list[int]:
    """Nodes of the default scene (all nodes when the file names no scene)."""
    scenes = doc.get("scenes")
    if not scenes:
        return list(range(len(parents)))
    roots = scenes[doc.get("scene", 0)].get("nodes", [])
    children: dict[int, list[int]] = {}
    for i, p in enumerate(parents):
        children.setdefault(int(p), []).append(i)
    out, stack = [], list(roots)
    while stack:
        i = stack.pop()
        out.append(i)
        stack.extend(children.get(i, []))
    return out


def _quat_to_matrix(q: np.ndarray) -> np.ndarray:
    q = q / np.maximum(np.linalg.norm(q, axis=-1, keepdims=True), 1e-12)
    x, y, z, w = q[..., 0], q[..., 1], q[..., 2], q[..., 3]
    m = np.empty(q.shape[:-1] + (3, 3))
    m[..., 0, 0] = 1 - 2 * (y * y + z * z)
    m[..., 0, 1] = 2 * (x * y - z * w)
    m[..., 0, 2] = 2 * (x * z + y * w)
    m[..., 1, 0] = 2 * (x * y + z * w)
    m[..., 1, 1] = 1 - 2 * (x * x + z * z)
    m[..., 1, 2] = 2 * (y * z - x * w)
    m[..., 2, 0] = 2 * (x * z - y * w)
    m[..., 2, 1] = 2 * (y * z + x * w)
    m[..., 2, 2] = 1 - 2 * (x * x + y * y)
    return m


def _trs_matrices(t: np.ndarray, r: np.ndarray, s: np.ndarray) -> np.ndarray:
    m = np.zeros((len(t), 4, 4))
    m[:, :3, :3] = _quat_to_matrix(r) * s[:, None, :]
    m[:, :3, 3] = t
    m[:, 3, 3] = 1.0
    return m


def _sample(ch: Channel, time: float) -> np.ndarray:
    times, vals = ch.times, ch.values
    if time <= times[0] or len(times) == 1:
        return vals[0]
    if time >= times[-1]:
        return vals[-1]
    k = int(np.searchsorted(times, time, side="right") - 1)
    t0, t1 = times[k], times[k + 1]
    u = (time - t0) / max(t1 - t0, 1e-12)
    if ch.interpolation == "STEP":
        return vals[k]
    if ch.interpolation == "CUBICSPLINE" and ch.tangents is not None:
        dt = t1 - t0
        p0, p1 = vals[k], vals[k + 1]
        m0, m1 = ch.tangents[k, 1] * dt, ch.tangents[k + 1, 0] * dt
        u2, u3 = u * u, u * u * u
        v = (2 * u3 - 3 * u2 + 1) * p0 + (u3 - 2 * u2 + u) * m0 + (-2 * u3 + 3 * u2) * p1 + (u3 - u2) * m1
        return v / np.linalg.norm(v) if ch.path == "rotation" else v
    if ch.path == "rotation":
        return _slerp(vals[k], vals[k + 1], u)
    return vals[k] + (vals[k + 1] - vals[k]) * u


def _slerp(a: np.ndarray, b: np.ndarray, u: float) -> np.ndarray:
    d = float(np.dot(a, b))
    if d < 0:
        b, d = -b, -d
    if d > 0.9995:
        q = a + (b - a) * u
        return q / np.linalg.norm(q)
    th = np.arccos(np.clip(d, -1, 1))
    return (np.sin((1 - u) * th) * a + np.sin(u * th) * b) / np.sin(th)


def decode_image(asset: GltfAsset, image_index: int) -> np.ndarray:
    """An image of the asset as a uint8 array (H x W x 3 or 4)."""
    from PIL import Image

    img = asset.doc["images"][image_index]
    if "bufferView" in img:
        bv = asset.doc["bufferViews"][img["bufferView"]]
        data = asset.buffers[bv["buffer"]][
            bv.get("byteOffset", 0) : bv.get("byteOffset", 0) + bv["byteLength"]
        ]
    elif img.get("uri", "").startswith("data:"):
        data = base64.b64decode(img["uri"].split(",", 1)[1])
    else:
        data = (asset.path.parent / unquote(img["uri"])).read_bytes()
    im = Image.open(io.BytesIO(data))
    im = im.convert("RGBA" if im.mode in ("RGBA", "LA", "P") else "RGB")
    return np.ascontiguousarray(np.asarray(im))
