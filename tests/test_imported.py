"""Imported models: glTF/GLB/OBJ folders per class, normalisation, materials, skinning, bad files."""

from __future__ import annotations

import base64
import json
import math
import struct
from pathlib import Path

import numpy as np
import pytest

from drsynth.errors import AssetError
from drsynth.subjects import registry
from drsynth.subjects.base import parts_bounds
from drsynth.subjects.config import ClassSubjects
from drsynth.subjects.imported import CLASS_SIZES, load_models


# -- a tiny rigged, animated glTF built here ----------------------------------------------------------------
def _box(z0: float, z1: float, half: float = 0.1):
    """8 corners of a box spanning z0..z1 along z (the model is long along z, like glTF's +Z forward)."""
    return np.array(
        [[x, y, z] for z in (z0, z1) for y in (-half, half) for x in (-half, half)], dtype=np.float32
    )


BOX_FACES = np.array(
    [
        [0, 2, 1],
        [1, 2, 3],
        [4, 5, 6],
        [5, 7, 6],
        [0, 1, 4],
        [1, 5, 4],
        [2, 6, 3],
        [3, 6, 7],
        [0, 4, 2],
        [2, 4, 6],
        [1, 3, 5],
        [3, 7, 5],
    ],
    dtype=np.uint16,
)


def make_skinned_gltf(path: Path, *, glb: bool = False) -> dict:
    """Two bones along +z; the second turns 90 degrees about x over one second. Two boxes: the first bound
    to bone 0, the second to bone 1 (each vertex fully weighted to one bone)."""
    pos = np.concatenate([_box(0.0, 1.0), _box(1.0, 2.0)])
    faces = np.concatenate([BOX_FACES, BOX_FACES + 8]).astype(np.uint16)
    joints = np.zeros((16, 4), dtype=np.uint8)
    joints[8:, 0] = 1
    weights = np.zeros((16, 4), dtype=np.float32)
    weights[:, 0] = 1.0
    # inverse bind matrices: bone 0 at the origin, bone 1 at z = 1 (column-major)
    ibm = np.stack([np.eye(4), np.eye(4)]).astype(np.float32)
    ibm[1, 2, 3] = -1.0
    times = np.array([0.0, 1.0], dtype=np.float32)
    half = math.sqrt(0.5)
    rots = np.array([[0, 0, 0, 1], [half, 0, 0, half]], dtype=np.float32)
    blobs = [
        pos.tobytes(),
        faces.tobytes(),
        joints.tobytes(),
        weights.tobytes(),
        ibm.transpose(0, 2, 1).tobytes(),
        times.tobytes(),
        rots.tobytes(),
    ]
    views, offset = [], 0
    for b in blobs:
        views.append({"buffer": 0, "byteOffset": offset, "byteLength": len(b)})
        offset += len(b) + (-len(b) % 4)
    data = b"".join(b + b"\0" * (-len(b) % 4) for b in blobs)
    doc = {
        "asset": {"version": "2.0"},
        "scene": 0,
        "scenes": [{"nodes": [0, 2]}],
        "nodes": [
            {"name": "root", "children": [1]},
            {"name": "tip", "translation": [0, 0, 1]},
            {"name": "body", "mesh": 0, "skin": 0},
        ],
        "meshes": [
            {
                "primitives": [
                    {
                        "attributes": {"POSITION": 0, "JOINTS_0": 2, "WEIGHTS_0": 3},
                        "indices": 1,
                        "material": 0,
                    }
                ]
            }
        ],
        "materials": [
            {
                "name": "Brown",
                "pbrMetallicRoughness": {"baseColorFactor": [0.8, 0.8, 0.8, 1.0], "metallicFactor": 0.0},
            }
        ],
        "skins": [{"joints": [0, 1], "inverseBindMatrices": 4}],
        "animations": [
            {
                "name": "Wag",
                "channels": [{"sampler": 0, "target": {"node": 1, "path": "rotation"}}],
                "samplers": [{"input": 5, "output": 6}],
            }
        ],
        "accessors": [
            {
                "bufferView": 0,
                "componentType": 5126,
                "count": 16,
                "type": "VEC3",
                "min": pos.min(0).tolist(),
                "max": pos.max(0).tolist(),
            },
            {"bufferView": 1, "componentType": 5123, "count": len(faces) * 3, "type": "SCALAR"},
            {"bufferView": 2, "componentType": 5121, "count": 16, "type": "VEC4"},
            {"bufferView": 3, "componentType": 5126, "count": 16, "type": "VEC4"},
            {"bufferView": 4, "componentType": 5126, "count": 2, "type": "MAT4"},
            {
                "bufferView": 5,
                "componentType": 5126,
                "count": 2,
                "type": "SCALAR",
                "min": [0.0],
                "max": [1.0],
            },
            {"bufferView": 6, "componentType": 5126, "count": 2, "type": "VEC4"},
        ],
        "bufferViews": views,
        "buffers": [{"byteLength": len(data)}],
    }
    if glb:
        js = json.dumps(doc).encode()
        js += b" " * (-len(js) % 4)
        body = struct.pack("<II", len(js), 0x4E4F534A) + js + struct.pack("<II", len(data), 0x004E4942) + data
        path.write_bytes(b"glTF" + struct.pack("<II", 2, 12 + len(body)) + body)
    else:
        doc["buffers"][0]["uri"] = "data:application/octet-stream;base64," + base64.b64encode(data).decode()
        path.write_text(json.dumps(doc))
    return doc


def _all_vertices(subject, pose):
    pts = []
    for p in subject.parts(pose):
        v = np.c_[np.asarray(p.mesh.vertices), np.ones(len(p.mesh.vertices))] @ p.transform.T
        pts.append(v[:, :3])
    return np.concatenate(pts)


@pytest.mark.parametrize("glb", [False, True])
def test_tiny_skinned_gltf_imports_normalises_and_poses(tmp_path, glb):
    make_skinned_gltf(tmp_path / ("tail.glb" if glb else "tail.gltf"), glb=glb)
    errors = []
    (s,) = load_models(tmp_path, "dog", on_error=lambda p, r: errors.append((p, r)))
    assert not errors
    assert s.source == "imported" and s.breed.startswith("tail") and s.id.startswith("dog/model/")
    rest = _all_vertices(s, {"clip": "Wag", "time": 0.0})
    lo, hi = rest.min(0), rest.max(0)
    # Long along +Z in the file -> faces +X; 2 m is implausible for a dog -> scaled to 0.9 m; on the ground.
    assert hi[0] - lo[0] == pytest.approx(CLASS_SIZES["dog"][2], rel=1e-6)
    assert hi[0] - lo[0] > hi[2] - lo[2]
    assert lo[1] == pytest.approx(0.0, abs=1e-9)
    assert abs(lo[0] + hi[0]) < 1e-9 and abs(lo[2] + hi[2]) < 1e-9
    # At t = 1 the second box has turned 90 degrees about the joint: it now points straight down (the
    # normalisation shifts the model back onto the ground), so the model is as tall as the box is long.
    bent = _all_vertices(s, {"clip": "Wag", "time": 1.0})
    assert bent[:, 1].max() - bent[:, 1].min() == pytest.approx(1.1 * 0.45, rel=1e-6)
    # Halfway, slerp gives 45 degrees: the tip box reaches (1 / sqrt 2) of its length below the joint.
    mid = _all_vertices(s, {"clip": "Wag", "time": 0.5})
    drop = (mid[8:, 1].max() - mid[8:, 1].min()) / 0.45
    assert drop == pytest.approx(math.sqrt(0.5) + 0.2 * math.sqrt(0.5), rel=1e-6)
    # The first box (bone 0) never moves.
    k = len(rest) // 2
    assert np.allclose(np.sort(rest[:k], axis=0), np.sort(bent[:k], axis=0)) or np.allclose(
        rest[:8], bent[:8]
    )
    # Named placeholder material: exporter-default 0.8 grey called "Brown" becomes brown.
    mat = s.parts(s.default_pose())[0].material
    assert mat.base_color[0] > mat.base_color[2] and mat.base_color[0] < 0.6


def test_sampled_poses_are_deterministic_cached_and_keyed_per_pose(tmp_path):
    make_skinned_gltf(tmp_path / "tail.gltf")
    (s,) = load_models(tmp_path, "dog", on_error=lambda p, r: pytest.fail(r))
    poses = [s.sample_pose(np.random.default_rng(i)) for i in range(20)]
    assert poses == [s.sample_pose(np.random.default_rng(i)) for i in range(20)]
    assert all(p["clip"] == "Wag" and 0.0 <= p["time"] <= 1.0 for p in poses)
    assert s.default_pose() == {"clip": None, "time": 0.0}  # no clip named idle -> rest pose
    a, b = s.parts(poses[0]), s.parts(poses[0])
    assert a is b, "a repeated pose must come from the cache"
    distinct = {p["time"] for p in poses}
    keys = {s.parts(p)[0].key for p in poses}
    assert len(keys) == len(distinct) > 1


def test_shared_rigged_models_import_and_pose(shared):
    folder = shared("assets", "meshes", "dog")
    errors = []
    subjects = load_models(folder, "dog", on_error=lambda p, r: errors.append((p, r)))
    assert not errors and len(subjects) >= 3
    husky = next(s for s in subjects if "Husky" in s.breed)
    assert len(husky.describe()["clips"]) >= 5
    lo, hi = parts_bounds(husky.parts(husky.default_pose()))
    ext = hi - lo
    lo_ok, hi_ok, _ = CLASS_SIZES["dog"]
    assert lo_ok <= max(ext[0], ext[2]) <= hi_ok and ext[0] >= ext[2]
    rng = np.random.default_rng(0)
    seen = set()
    for _ in range(6):
        pose = husky.sample_pose(rng)
        verts = _all_vertices(husky, pose)
        seen.add(tuple(np.round(verts.mean(0), 4)))
        assert np.all(np.isfinite(verts))
    assert len(seen) > 2, "different clips / times must pose the mesh differently"


def test_shared_models_of_every_class_normalise(shared):
    for cls in ("cat", "dog", "car", "bicycle"):
        folder = shared("assets", "meshes", cls)
        errors = []
        subjects = load_models(folder, cls, on_error=lambda p, r, e=errors: e.append((p, r)))
        assert not errors and subjects
        lo_ok, hi_ok, _ = CLASS_SIZES[cls]
        for s in subjects:
            lo, hi = parts_bounds(s.parts(s.default_pose()))
            length = max(hi[0] - lo[0], hi[2] - lo[2])
            assert lo_ok <= length <= hi_ok, (s.breed, hi - lo)
            assert abs(lo[1]) < 1e-6, (s.breed, lo)
            for p in s.parts(s.default_pose()):
                assert len(p.mesh.visual.uv) == len(p.mesh.vertices)


def test_corrupt_and_unsupported_files_are_reported_by_name_and_skipped(tmp_path):
    make_skinned_gltf(tmp_path / "good.gltf")
    (tmp_path / "garbage.glb").write_bytes(b"this is not a model at all" * 10)
    good = (tmp_path / "good.gltf").read_text()
    (tmp_path / "truncated.gltf").write_text(good[: len(good) // 2])
    glb = tmp_path / "cut.glb"
    make_skinned_gltf(glb, glb=True)
    glb.write_bytes(glb.read_bytes()[:100])
    (tmp_path / "empty.obj").write_text("# nothing here\n")
    (tmp_path / "model.fbx").write_bytes(b"\0" * 16)
    (tmp_path / "notes.txt").write_text("not a model, ignored")
    errors = {}
    subjects = load_models(tmp_path, "cat", on_error=lambda p, r: errors.setdefault(Path(p).name, r))
    assert [s.breed for s in subjects] == ["good.gltf"]
    assert set(errors) == {"garbage.glb", "truncated.gltf", "cut.glb", "empty.obj", "model.fbx"}
    assert "truncated" in errors["cut.glb"]
    assert "fbx" in errors["model.fbx"]


def test_folder_without_loadable_models_is_a_clear_pool_error(tmp_path):
    (tmp_path / "broken.glb").write_bytes(b"nope")
    skipped = []
    cfg = ClassSubjects(models_dir=tmp_path)
    with pytest.raises(AssetError, match="no loadable model") as e:
        registry.build_pool("car", cfg, seed=0, on_skip=lambda p, r: skipped.append(p))
    assert str(tmp_path) in str(e.value)
    assert skipped == [str(tmp_path / "broken.glb")]
    with pytest.raises(AssetError, match="not a folder"):
        registry.build_pool("car", ClassSubjects(models_dir=tmp_path / "missing"), seed=0)


def test_procedural_and_imported_subjects_share_a_pool(tmp_path):
    make_skinned_gltf(tmp_path / "tail.gltf")
    pool = registry.build_pool("dog", ClassSubjects(procedural=None, models_dir=tmp_path), seed=0)
    cars = registry.build_pool(
        "car", ClassSubjects(procedural="car", breeds=["sedan"], models_dir=tmp_path), seed=0
    )
    assert [s.source for s in pool] == ["imported"]
    assert [s.source for s in cars] == ["procedural", "imported"]


def test_obj_with_mtl_keeps_its_colour_and_gets_uvs(tmp_path):
    verts = _box(-1.0, 1.0, 0.4)
    lines = ["mtllib car.mtl", "usemtl Paint"] + [f"v {x} {y} {z}" for x, y, z in verts]
    lines += [f"f {a + 1} {b + 1} {c + 1}" for a, b, c in BOX_FACES]
    (tmp_path / "car.obj").write_text("\n".join(lines) + "\n")
    (tmp_path / "car.mtl").write_text("newmtl Paint\nKd 0.8 0.1 0.1\n")
    (s,) = load_models(tmp_path, "car", on_error=lambda p, r: pytest.fail(r))
    parts = s.parts(s.default_pose())
    assert parts[0].material.base_color[0] > 0.7 > parts[0].material.base_color[1]
    assert len(parts[0].mesh.visual.uv) == len(parts[0].mesh.vertices)
    lo, hi = parts_bounds(parts)
    assert hi[0] - lo[0] == pytest.approx(4.4)  # 2 m long is below the car range: scaled to 4.4 m
    assert lo[1] == pytest.approx(0.0)


def test_vertex_coloured_gltf_becomes_one_part_per_colour(tmp_path):
    pos = _box(0.0, 4.0, 0.8)
    colors = np.zeros((8, 4), dtype=np.float32)
    colors[:, 3] = 1
    colors[:4, 0] = 1.0  # back half red
    colors[4:, 2] = 1.0  # front half blue
    faces = BOX_FACES
    blobs = [pos.tobytes(), colors.tobytes(), faces.tobytes()]
    data = b"".join(b + b"\0" * (-len(b) % 4) for b in blobs)
    offs = np.cumsum([0] + [len(b) + (-len(b) % 4) for b in blobs])
    doc = {
        "asset": {"version": "2.0"},
        "scenes": [{"nodes": [0]}],
        "nodes": [{"mesh": 0}],
        "meshes": [{"primitives": [{"attributes": {"POSITION": 0, "COLOR_0": 1}, "indices": 2}]}],
        "accessors": [
            {"bufferView": 0, "componentType": 5126, "count": 8, "type": "VEC3"},
            {"bufferView": 1, "componentType": 5126, "count": 8, "type": "VEC4"},
            {"bufferView": 2, "componentType": 5123, "count": 36, "type": "SCALAR"},
        ],
        "bufferViews": [
            {"buffer": 0, "byteOffset": int(o), "byteLength": len(b)}
            for o, b in zip(offs, blobs, strict=False)
        ],
        "buffers": [
            {
                "byteLength": len(data),
                "uri": "data:application/octet-stream;base64," + base64.b64encode(data).decode(),
            }
        ],
    }
    (tmp_path / "twotone.gltf").write_text(json.dumps(doc))
    (s,) = load_models(tmp_path, "car", on_error=lambda p, r: pytest.fail(r))
    parts = s.parts(s.default_pose())
    assert len(parts) >= 2
    colours = {tuple(np.round(p.material.base_color[:3], 1)) for p in parts}
    assert len(colours) >= 2


def test_textured_gltf_keeps_its_texture_and_uvs(tmp_path):
    import io

    from PIL import Image

    png = io.BytesIO()
    Image.fromarray(np.tile(np.array([[[200, 30, 30], [30, 30, 200]]], dtype=np.uint8), (8, 4, 1))).save(
        png, "PNG"
    )
    pos = _box(0.0, 0.5, 0.15)
    uv = np.stack([np.linspace(0, 1, 8), np.linspace(1, 0, 8)], -1).astype(np.float32)
    blobs = [pos.tobytes(), uv.tobytes(), BOX_FACES.tobytes()]
    data = b"".join(b + b"\0" * (-len(b) % 4) for b in blobs)
    offs = np.cumsum([0] + [len(b) + (-len(b) % 4) for b in blobs])
    doc = {
        "asset": {"version": "2.0"},
        "scenes": [{"nodes": [0]}],
        "nodes": [{"mesh": 0}],
        "meshes": [
            {"primitives": [{"attributes": {"POSITION": 0, "TEXCOORD_0": 1}, "indices": 2, "material": 0}]}
        ],
        "materials": [
            {
                "name": "Fur",
                "pbrMetallicRoughness": {
                    "baseColorTexture": {"index": 0},
                    "metallicFactor": 0.0,
                    "roughnessFactor": 0.9,
                },
            },
            {"name": "unused"},
        ],
        "textures": [{"source": 0}],
        "images": [{"uri": "data:image/png;base64," + base64.b64encode(png.getvalue()).decode()}],
        "accessors": [
            {"bufferView": 0, "componentType": 5126, "count": 8, "type": "VEC3"},
            {"bufferView": 1, "componentType": 5126, "count": 8, "type": "VEC2"},
            {"bufferView": 2, "componentType": 5123, "count": 36, "type": "SCALAR"},
        ],
        "bufferViews": [
            {"buffer": 0, "byteOffset": int(o), "byteLength": len(b)}
            for o, b in zip(offs, blobs, strict=False)
        ],
        "buffers": [
            {
                "byteLength": len(data),
                "uri": "data:application/octet-stream;base64," + base64.b64encode(data).decode(),
            }
        ],
    }
    (tmp_path / "kitten.gltf").write_text(json.dumps(doc))
    (s,) = load_models(tmp_path, "cat", on_error=lambda p, r: pytest.fail(r))
    (part,) = s.parts(s.default_pose())
    tex = part.material.base_color_texture
    assert tex is not None and tex.dtype == np.uint8 and tex.shape[:2] == (8, 8)
    assert part.material.roughness == pytest.approx(0.9) and part.material.metallic == 0.0
    assert part.texturable
    assert np.allclose(np.sort(part.mesh.visual.uv[:, 0]), np.sort(uv[:, 0]))
    # 0.5 m long is a plausible cat length: kept in metres, standing on the ground.
    lo, hi = parts_bounds(s.parts(s.default_pose()))
    assert hi[0] - lo[0] == pytest.approx(0.5) and lo[1] == pytest.approx(0.0)
