"""Randomizers and the scenario loop, without a renderer: determinism, ownership, bounds."""

from __future__ import annotations

import json

import numpy as np
import pytest
from render_toys import toy_context, toy_scenario

from drsynth import materials, skies
from drsynth.config import RANDOMIZER_NAMES
from drsynth.describe import build_randomizers, describe_scene
from drsynth.rng import image_rng
from drsynth.samplers import (
    Choice,
    Uniform,
    UniformInt,
    color_temperature_rgb,
    sample_hemisphere_elevation_deg,
)


def _spec(sc, ctx, i):
    return describe_scene(sc, ctx, i, randomizers=build_randomizers(sc))[0]


def test_same_index_same_spec_and_different_index_different_spec():
    sc = toy_scenario(randomizers={"subject_texture": {"enabled": True}})
    ctx = toy_context(sc)
    a = json.dumps(_spec(sc, ctx, 3).to_dict(), sort_keys=True)
    b = json.dumps(_spec(sc, ctx, 3).to_dict(), sort_keys=True)
    c = json.dumps(_spec(sc, ctx, 5).to_dict(), sort_keys=True)
    assert a == b
    assert a != c
    other_seed = sc.with_overrides(seed=8)
    assert json.dumps(_spec(other_seed, ctx, 3).to_dict(), sort_keys=True) != a


def test_per_randomizer_streams_are_independent_and_stable():
    a = image_rng(1, 2, "camera").random(4)
    assert np.array_equal(a, image_rng(1, 2, "camera").random(4))
    assert not np.array_equal(a, image_rng(1, 2, "lighting").random(4))
    assert not np.array_equal(a, image_rng(1, 3, "camera").random(4))
    with pytest.raises(ValueError):
        image_rng(-1, 0, "camera")


def _signature(spec) -> dict:
    """Per randomizer, the values it samples (not the ones derived from the subject's size)."""
    return {
        "subject": (spec.subject.id, spec.subject.breed),
        "pose": json.dumps(spec.subject.pose, sort_keys=True),
        "camera": (spec.camera.yfov_deg, spec.camera.elevation_deg, spec.camera.azimuth_deg, spec.camera.roll_deg),
        "lighting": (spec.lights, spec.ambient),
        "sky": spec.sky,
        "sensor": spec.sensor,
        "occluders": tuple((o.shape, o.rotation_euler_deg) for o in spec.occluders),
        "materials": (spec.ground.key, spec.ground.rotation_deg),
        "subject_texture": spec.subject.material,
    }


@pytest.mark.parametrize("name", RANDOMIZER_NAMES)
def test_switching_one_randomizer_changes_only_what_it_owns(name):
    on = toy_scenario(randomizers={"subject_texture": {"enabled": True}, "sensor": {"enabled": True}})
    off = on.with_overrides(disable=[name])
    ctx = toy_context(on, same_size=True)
    changed = False
    for i in range(8):
        a, b = _signature(_spec(on, ctx, i)), _signature(_spec(off, ctx, i))
        for key in a:
            if key != name:
                assert a[key] == b[key], f"disabling {name} changed {key} of image {i}"
        changed |= a[name] != b[name]
    assert changed, f"disabling {name} changed nothing it owns"


def test_class_overrides_change_only_their_class_and_randomizer():
    plain = toy_scenario()
    side = toy_scenario(
        class_overrides={"dog": {"camera": {"azimuth_deg": [80, 100], "azimuth_mirror_probability": 0.5}}}
    )
    ctx = toy_context(plain, same_size=True)
    azimuths = []
    for i in range(16):
        a, b = _signature(_spec(plain, ctx, i)), _signature(_spec(side, ctx, i))
        assert _signature(_spec(side, ctx, i)) == b  # deterministic
        if i % 2 == 0:  # cats: untouched
            assert a == b
            continue
        assert {k: v for k, v in a.items() if k != "camera"} == {k: v for k, v in b.items() if k != "camera"}
        az = b["camera"][2]
        assert 80 <= az <= 100 or 260 <= az <= 280
        azimuths.append(az)
    assert any(az < 180 for az in azimuths) and any(az > 180 for az in azimuths)  # both sides


def test_disabled_randomizers_give_fixed_defaults():
    sc = toy_scenario().with_overrides(disable=list(RANDOMIZER_NAMES))
    ctx = toy_context(sc)
    specs = [_spec(sc, ctx, i) for i in (0, 2, 4)]  # all cats
    sig = [_signature(s) for s in specs]
    assert all(s == sig[0] for s in sig)
    assert specs[0].subject.id == ctx.singles["cat"].id
    assert specs[0].occluders == () and len(specs[0].lights) == 1
    assert specs[0].ground.key == materials.DEFAULT_KEY and specs[0].subject.material is None


def test_sampled_values_respect_their_ranges():
    sc = toy_scenario(
        randomizers={
            "camera": {"yfov_deg": [30, 40], "elevation_deg": [10, 20], "distance": [1.0, 1.5]},
            "lighting": {"count": [2, 3], "color_temperature_k": [3000, 4000], "ambient": [0.1, 0.2]},
            "occluders": {"count": [2, 2], "shapes": ["box", "torus"], "distance": [1.0, 1.0]},
        }
    )
    ctx = toy_context(sc)
    for i in range(20):
        s = _spec(sc, ctx, i)
        assert 30 <= s.camera.yfov_deg <= 40 and 10 <= s.camera.elevation_deg <= 20
        assert 2 <= len(s.lights) <= 3 and s.lights[0].cast_shadow and not any(lt.cast_shadow for lt in s.lights[1:])
        assert all(3000 <= lt.color_temperature_k <= 4000 for lt in s.lights) and 0.1 <= s.ambient <= 0.2
        assert len(s.occluders) == 2 and {o.shape for o in s.occluders} <= {"box", "torus"}
        for o in s.occluders:
            d = np.hypot(o.position_m[0] - s.subject.center_m[0], o.position_m[2] - s.subject.center_m[2])
            assert d == pytest.approx(s.subject.radius_m, rel=1e-6)
        # the camera frames the subject: the aim point lies within a radius of its centre
        dist = np.linalg.norm(np.subtract(s.camera.target_m, s.subject.center_m))
        assert dist <= 0.3 * s.subject.radius_m + 1e-9
        assert s.subject.bounds_m[0][1] == pytest.approx(0.0, abs=1e-9)  # grounded


def test_samplers():
    rng = np.random.default_rng(0)
    xs = [Uniform(2.0, 3.0).sample(rng) for _ in range(500)]
    assert min(xs) >= 2.0 and max(xs) <= 3.0 and abs(np.mean(xs) - 2.5) < 0.05
    ks = [UniformInt(1, 3).sample(rng) for _ in range(300)]
    assert set(ks) == {1, 2, 3}
    picks = [Choice(("a", "b"), (0.0, 1.0)).sample(rng) for _ in range(50)]
    assert set(picks) == {"b"}
    els = [sample_hemisphere_elevation_deg(rng, 0, 90) for _ in range(4000)]
    # uniform over the hemisphere's area: half of it lies below 30 degrees elevation
    assert abs(np.mean(np.array(els) < 30) - 0.5) < 0.03
    for bad in (lambda: Uniform(3, 2), lambda: UniformInt(5, 1), lambda: Choice(()), lambda: Choice((1,), (1, 2))):
        with pytest.raises(ValueError):
            bad()
    warm, cold = color_temperature_rgb(2500), color_temperature_rgb(9500)
    assert warm[0] > warm[2] and cold[2] > cold[0]


def test_material_library_has_at_least_74_distinct_materials():
    keys = materials.library_keys()
    assert len(keys) >= 74 and len(set(keys)) == len(keys)
    textures = [materials.get_material(k).base_color_texture for k in keys]
    digests = {t.tobytes().__hash__() for t in textures}
    assert len(digests) == len(keys)  # all different
    assert all(t.shape == (materials.TEXTURE_SIZE, materials.TEXTURE_SIZE, 3) and t.dtype == np.uint8 for t in textures)
    # deterministic across calls (and processes: seeded by the key's crc32)
    materials.get_material.cache_clear()
    assert np.array_equal(materials.get_material(keys[5]).base_color_texture, textures[5])
    metals = [materials.get_material(k) for k in materials.library_keys(["metal"])]
    assert metals and all(m.metallic == 1.0 for m in metals)


def test_textures_tile_seamlessly():
    # opposite edges of a tileable texture are as similar as neighbouring columns inside it
    for key in ["noise-00", "marble-00", "wood-00", "cells-00", "sprinkles-00", "gradient-00"]:
        t = materials.get_material(key).base_color_texture.astype(float)
        seam = np.abs(t[:, 0] - t[:, -1]).mean()
        inner = np.abs(t[:, 100] - t[:, 101]).mean()
        assert seam <= 3 * inner + 4, key


def test_material_image_folder(tmp_path):
    from PIL import Image

    Image.fromarray(np.full((40, 30, 3), (200, 10, 10), np.uint8)).save(tmp_path / "red.png")
    (tmp_path / "notes.txt").write_text("not an image")
    keys = materials.image_keys(tmp_path)
    assert keys == ["image:red.png"]
    m = materials.get_material(keys[0], str(tmp_path))
    assert m.base_color_texture.shape == (256, 256, 3) and m.base_color_texture[0, 0, 0] == 200


def test_procedural_skies_cover_every_kind():
    sc = toy_scenario()
    ctx = toy_context(sc)
    kinds = set()
    for i in range(80):
        sky = _spec(sc, ctx, i).sky
        kinds.add(sky.kind)
        eq = skies.equirect(sky)
        assert eq.shape == (skies.EQUIRECT_H, skies.EQUIRECT_W, 3) and np.isfinite(eq).all()
    assert kinds == set(skies.PROCEDURAL_KINDS)


def test_hdr_sky_images(shared):
    folder = shared("assets", "skies")
    names = skies.image_names(folder)
    assert names
    from drsynth.scene_spec import SkySpec

    eq = skies.equirect(SkySpec(kind="image", image=names[0]), folder)
    assert eq.ndim == 3 and eq.min() >= 0 and eq.max() <= 1
    bg = skies.background(eq, np.eye(4), 50.0, 32)
    assert bg.shape == (32, 32, 3)
