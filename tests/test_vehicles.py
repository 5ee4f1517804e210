"""Procedural bicycles and cars: every preset builds closed meshes of a plausible size, presets differ,
poses only move rigid parts, and everything is deterministic from the seed."""

from __future__ import annotations

import functools

import numpy as np
import pytest

from drsynth.errors import ConfigError
from drsynth.subjects import bicycles, cars, registry, shapes
from drsynth.subjects.base import parts_bounds
from drsynth.subjects.config import ClassSubjects

# (length along x, height, width) bounds in metres, per generator.
SIZE_BOUNDS = {
    "bicycle": ((1.0, 2.6), (0.6, 1.35), (0.3, 0.9)),
    "car": ((2.4, 6.5), (1.0, 2.9), (1.4, 2.5)),  # width includes the mirrors
}
GENERATORS = {"bicycle": bicycles, "car": cars}


@functools.cache
def _all_subjects(kind):
    # Built once per test run: subjects cache their geometry, and building every car takes seconds.
    return tuple(GENERATORS[kind].make_subjects(kind, breeds=None, blends=0, seed=0))


@pytest.mark.parametrize("kind", ["bicycle", "car"])
def test_every_preset_builds_closed_meshes_within_size_bounds(kind):
    (lx, ly, lz) = SIZE_BOUNDS[kind]
    subjects = _all_subjects(kind)
    assert len(subjects) == len(GENERATORS[kind].preset_names()) >= 12
    for s in subjects:
        parts = s.parts(s.default_pose())
        open_parts = [p.key for p in parts if not shapes.is_closed(p.mesh)]
        assert not open_parts, f"{s.breed}: parts with holes {open_parts}"
        lo, hi = parts_bounds(parts)
        ext = hi - lo
        assert lx[0] <= ext[0] <= lx[1], (s.breed, ext)
        assert ly[0] <= ext[1] <= ly[1], (s.breed, ext)
        assert lz[0] <= ext[2] <= lz[1], (s.breed, ext)
        assert abs(lo[1]) < 0.02, f"{s.breed} does not stand on the ground: min y {lo[1]}"
        # Centred on the origin in x/z and facing +x (longer than wide).
        assert abs(lo[0] + hi[0]) < 0.25 * ext[0] and abs(lo[2] + hi[2]) < 0.05
        assert ext[0] > ext[2]
        for p in parts:
            assert p.transform.shape == (4, 4)
            assert len(p.mesh.visual.uv) == len(p.mesh.vertices)
            assert np.all(np.isfinite(p.mesh.vertices))


@pytest.mark.parametrize("kind", ["bicycle", "car"])
def test_presets_differ(kind):
    subjects = _all_subjects(kind)
    signatures = []
    for s in subjects:
        parts = s.parts(s.default_pose())
        lo, hi = parts_bounds(parts)
        tris = sum(len(p.mesh.faces) for p in parts)
        signatures.append((tuple(np.round(hi - lo, 3)), tris))
    assert len(set(signatures)) == len(signatures), "two presets build the same vehicle"
    specs = [s.spec for s in subjects]
    assert len({repr(sp) for sp in specs}) == len(specs)


@pytest.mark.parametrize("kind", ["bicycle", "car"])
def test_pose_moves_only_rigid_parts_and_reuses_geometry(kind):
    s = _all_subjects(kind)[0]
    rest = s.parts(s.default_pose())
    rng = np.random.default_rng(1)
    pose = s.sample_pose(rng)
    assert pose == s.sample_pose(np.random.default_rng(1)), "pose must come from the generator only"
    posed = s.parts(pose)
    assert [p.key for p in rest] == [p.key for p in posed]
    # The same mesh objects: nothing is rebuilt per pose, only transforms (and paint) change.
    assert all(a.mesh is b.mesh for a, b in zip(rest, posed, strict=True))
    moved = [a.key for a, b in zip(rest, posed, strict=True) if not np.allclose(a.transform, b.transform)]
    front = {"bicycle": "front_wheel", "car": "wheel_f"}[kind]
    assert any(front in k for k in moved)
    # Steering only turns the front: the body stays put.
    assert all("body" not in k.rsplit("/", 1)[-1] for k in moved)
    steered = s.parts({**s.default_pose(), "steer": 0.4})
    wheel = next(p for p in steered if front in p.key)
    straight = next(p for p in rest if p.key == wheel.key)
    assert not np.allclose(wheel.transform[:3, :3], straight.transform[:3, :3])


@pytest.mark.parametrize("kind", ["bicycle", "car"])
def test_paint_variants_change_material_not_geometry(kind):
    s = _all_subjects(kind)[0]
    assert s.paint_count() > 1
    a = s.parts({**s.default_pose(), "paint": 0})
    b = s.parts({**s.default_pose(), "paint": 1})
    changed = [x.key for x, y in zip(a, b, strict=True) if x.material.key != y.material.key]
    assert changed and all(x.mesh is y.mesh for x, y in zip(a, b, strict=True))
    assert all(p.texturable for p in a if p.key in changed)


@pytest.mark.parametrize("kind", ["bicycle", "car"])
def test_blends_are_deterministic_and_between_presets(kind):
    gen = GENERATORS[kind]
    a = gen.make_subjects(kind, breeds=None, blends=4, seed=7)
    b = gen.make_subjects(kind, breeds=None, blends=4, seed=7)
    c = gen.make_subjects(kind, breeds=None, blends=4, seed=8)
    n = len(gen.preset_names())
    assert len(a) == n + 4
    assert [s.breed for s in a] == [s.breed for s in b]
    assert [repr(s.spec) for s in a] == [repr(s.spec) for s in b]
    assert [repr(s.spec) for s in a[n:]] != [repr(s.spec) for s in c[n:]]
    for s in a[n:]:
        assert s.describe()["blend_of"][0] in gen.preset_names()
        assert all(shapes.is_closed(p.mesh) for p in s.parts(s.default_pose()))


@pytest.mark.parametrize("kind", ["bicycle", "car"])
def test_unknown_preset_is_a_config_error(kind):
    with pytest.raises(ConfigError, match="known"):
        GENERATORS[kind].make_subjects(kind, breeds=["no-such-model"], blends=0, seed=0)


def test_registry_builds_vehicle_pools():
    pool = registry.build_pool(
        "bicycle", ClassSubjects(procedural="bicycle", breeds=["road", "bmx"], blends=1), seed=3
    )
    assert [s.breed for s in pool[:2]] == ["road", "bmx"] and len(pool) == 3
    assert all(s.class_name == "bicycle" and s.source == "procedural" for s in pool)
    assert len({s.id for s in pool}) == 3
    cars_pool = registry.build_pool("car", ClassSubjects(procedural="car", breeds=["sedan"]), seed=3)
    assert cars_pool[0].describe() == {
        "id": "car/procedural/sedan",
        "class": "car",
        "breed": "sedan",
        "source": "procedural",
        "generator": "car",
    }


def test_tandem_has_two_cranks_that_turn_together():
    s = bicycles.make_subjects("bicycle", breeds=["tandem"], blends=0, seed=0)[0]
    keys = {p.key.rsplit("/", 1)[-1] for p in s.parts(s.default_pose())}
    assert {"crank", "crank2", "pedal_r", "pedal2_r"} <= keys
    turned = {p.key.rsplit("/", 1)[-1]: p.transform for p in s.parts({**s.default_pose(), "crank": 1.0})}
    assert not np.allclose(turned["crank"], np.eye(4)) and not np.allclose(turned["crank2"], np.eye(4))


def test_vehicles_render_through_the_product_renderer():
    """One bicycle and one car go through the real renderer: visible, recorded, deterministic."""
    from drsynth.config import parse_scenario
    from drsynth.render_job import render_samples

    scenario = parse_scenario(
        {
            "name": "vehicles",
            "image_size": 64,
            "classes": {
                "bicycle": {"procedural": "bicycle", "breeds": ["road"]},
                "car": {"procedural": "car", "breeds": ["pickup"]},
            },
            "randomizers": {"occluders": {"enabled": False}},
        }
    )
    out = list(render_samples(scenario, [0, 1, 0]))
    (img_b, rec_b), (img_c, rec_c), (img_b2, _) = out
    assert rec_b["class"] == "bicycle" and rec_b["subject"]["breed"] == "road"
    assert rec_c["class"] == "car" and rec_c["subject"]["breed"] == "pickup"
    assert set(rec_b["pose"]) >= {"steer", "crank", "paint"} and set(rec_c["pose"]) >= {"steer", "paint"}
    for rec in (rec_b, rec_c):
        assert rec["visible_fraction"] > 0.5
        x0, y0, x1, y1 = rec["bbox"]
        assert x1 - x0 > 8 and y1 - y0 > 4
    assert np.array_equal(np.asarray(img_b), np.asarray(img_b2))
