"""Procedural cats and dogs: presets, geometry, coats, poses and joint limits."""

from __future__ import annotations

import numpy as np
import pytest

from drsynth.errors import ConfigError
from drsynth.subjects import cats, dogs
from drsynth.subjects.base import Subject, parts_bounds
from drsynth.subjects.config import ClassSubjects
from drsynth.subjects.geometry import merged_for_checks
from drsynth.subjects.quadruped import JOINT_LIMITS, POSE_FAMILIES, QuadrupedModel, sample_quadruped_pose
from drsynth.subjects.registry import build_pool

GENERATORS = {"cat": cats, "dog": dogs}
# Plausible bounds of a standing animal (height to the top of the head/ears, nose-to-tail length), metres.
SIZE_BOUNDS = {"cat": ((0.15, 0.6), (0.25, 1.3)), "dog": ((0.15, 1.5), (0.3, 2.4))}


@pytest.mark.parametrize("species", ["cat", "dog"])
def test_at_least_30_presets_and_they_differ(species):
    mod = GENERATORS[species]
    names = mod.preset_names()
    assert len(names) >= 30 and len(set(names)) == len(names)
    subs = mod.make_subjects(species, breeds=None, blends=0, seed=0)
    assert [s.breed for s in subs] == names
    assert all(isinstance(s, Subject) and s.class_name == species and s.source == "procedural" for s in subs)
    assert len({s.id for s in subs}) == len(subs)
    # Every breed differs from every other in shape or coat.
    sigs = {(s.anatomy, s.coat) for s in subs}
    assert len(sigs) == len(subs)
    heights = [s.anatomy.shoulder_height for s in subs]
    assert max(heights) / min(heights) > (1.3 if species == "cat" else 3.0)


@pytest.mark.parametrize("species", ["cat", "dog"])
def test_every_preset_builds_closed_parts_within_size_bounds(species):
    mod = GENERATORS[species]
    (h_lo, h_hi), (l_lo, l_hi) = SIZE_BOUNDS[species]
    for s in mod.make_subjects(species, breeds=None, blends=0, seed=0):
        model = QuadrupedModel(s.anatomy, detail=0.5)  # geometry only: fast, same topology rules
        for pg in model.parts:
            m = merged_for_checks(pg.mesh)
            assert m.is_watertight, f"{s.breed}/{pg.name} is not closed"
            assert m.volume > 0, f"{s.breed}/{pg.name} is inside out"
        tf = model.bone_transforms({})
        lo = np.full(3, np.inf)
        hi = -lo
        for pg in model.parts:
            v = pg.mesh.vertices @ tf[pg.bone][:3, :3].T + tf[pg.bone][:3, 3]
            lo, hi = np.minimum(lo, v.min(0)), np.maximum(hi, v.max(0))
        height, length = hi[1] - max(lo[1], 0.0), hi[0] - lo[0]
        assert h_lo <= height <= h_hi, f"{s.breed}: height {height:.2f} m"
        assert l_lo <= length <= l_hi, f"{s.breed}: length {length:.2f} m"
        assert lo[1] > -0.05 * height, f"{s.breed}: default stance sinks {lo[1]:.3f} m below the ground"


def test_parts_are_textured_cached_and_move_only_with_pose():
    s = cats.make_subjects("cat", breeds=["siamese"], blends=0, seed=3)[0]
    rest = s.parts(s.default_pose())
    names = [p.key for p in rest]
    assert len(names) == len(set(names)) and len(rest) > 20
    fur = [p for p in rest if p.texturable]
    assert fur and all(p.material.base_color_texture is not None for p in fur)
    assert {p.material.key for p in fur} == {fur[0].material.key}  # one atlas per breed
    eyes = [p for p in rest if "eye" in p.key]
    assert len(eyes) == 2 and not any(p.texturable for p in eyes)
    for p in fur:
        uv = p.mesh.visual.uv
        assert uv.shape == (len(p.mesh.vertices), 2) and uv.min() >= 0 and uv.max() <= 1
    posed = s.parts(s.sample_pose(np.random.default_rng(1)))
    assert [p.key for p in posed] == names
    assert all(a.mesh is b.mesh for a, b in zip(rest, posed, strict=True)), (
        "geometry must be reused across poses"
    )
    assert any(not np.allclose(a.transform, b.transform) for a, b in zip(rest, posed, strict=True))


def test_shell_fur_length_follows_fluff_and_dogs_get_half():
    from drsynth.subjects.coats import fur_length

    cat = cats.make_subjects("cat", breeds=["siamese"], blends=0, seed=3)[0]
    dog = dogs.make_subjects("dog", breeds=["dachshund"], blends=0, seed=3)[0]
    for s, species in ((cat, "cat"), (dog, "dog")):
        coat = next(p for p in s.parts(s.default_pose()) if p.texturable).material
        assert coat.fur_length == pytest.approx(fur_length(s.model.a.fluff, species))
    assert fur_length(0.5, "dog") == pytest.approx(0.5 * fur_length(0.5, "cat")) == pytest.approx(0.0045)


@pytest.mark.parametrize(
    "species,breed", [("cat", "domestic_shorthair_tabby"), ("dog", "dachshund"), ("dog", "great_dane")]
)
def test_random_poses_respect_joint_limits_and_touch_the_ground(species, breed):
    s = GENERATORS[species].make_subjects(species, breeds=[breed], blends=0, seed=0)[0]
    model = s.model
    rng = np.random.default_rng(7)
    seen = set()
    for _ in range(40):
        pose = s.sample_pose(rng)
        seen.add(pose["family"])
        for k, v in pose.items():
            if k in JOINT_LIMITS:
                lo, hi = JOINT_LIMITS[k]
                assert lo - 1e-9 <= v <= hi + 1e-9, f"{k}={v} outside [{lo}, {hi}]"
        b = parts_bounds_model(model, pose)
        # After re-grounding, the tail never hangs below the body (it would lift the animal off the ground).
        body = model.lowest_y(pose, [p.name for p in model.parts if not p.name.startswith("tail")])
        assert model.lowest_y(pose, [f"tail{i}" for i in range(5)]) >= body - 1e-3
        assert np.all(np.isfinite(b))
    assert len(seen) >= 4
    for fam in POSE_FAMILIES:
        pose = sample_quadruped_pose(model, np.random.default_rng(2), family=fam)
        assert pose["family"] == fam


def parts_bounds_model(model, pose):
    tf = model.bone_transforms({k: v for k, v in pose.items() if k in JOINT_LIMITS})
    return np.concatenate(
        [(pg.mesh.bounds @ tf[pg.bone][:3, :3].T + tf[pg.bone][:3, 3]) for pg in model.parts]
    )


def test_sitting_keeps_front_paws_and_rump_on_the_ground():
    s = dogs.make_subjects("dog", breeds=["labrador_yellow"], blends=0, seed=0)[0]
    model = s.model
    pose = sample_quadruped_pose(model, np.random.default_rng(0), family="sit")
    kh = model.keypoint_heights(pose)
    floor = model.lowest_y(pose)
    assert pose["body.pitch"] > 0.2  # front up
    assert min(kh["fl_paw"], kh["fr_paw"]) - floor < 0.05 * model.H


def test_poses_are_deterministic_and_default_is_the_stance():
    s = dogs.make_subjects("dog", breeds=["beagle"], blends=0, seed=0)[0]
    a = s.sample_pose(np.random.default_rng(5))
    b = s.sample_pose(np.random.default_rng(5))
    assert a == b
    rest = s.parts(s.default_pose())
    b0 = parts_bounds(rest)
    assert b0[0][1] > -0.03 and b0[1][1] > 0.3


def test_blends_are_between_presets_and_reproducible():
    a = cats.make_subjects("cat", breeds=["persian", "siamese"], blends=4, seed=11)
    b = cats.make_subjects("cat", breeds=["persian", "siamese"], blends=4, seed=11)
    assert len(a) == 6
    assert [s.id for s in a] == [s.id for s in b]
    assert [s.anatomy for s in a] == [s.anatomy for s in b]
    lo = min(a[0].anatomy.muzzle_frac, a[1].anatomy.muzzle_frac)
    hi = max(a[0].anatomy.muzzle_frac, a[1].anatomy.muzzle_frac)
    for s in a[2:]:
        assert s.breed.startswith("blend:")
        assert lo * 0.8 <= s.anatomy.muzzle_frac <= hi * 1.2


def test_unknown_breed_is_a_config_error_and_registry_builds_pools():
    with pytest.raises(ConfigError, match="known presets"):
        dogs.make_subjects("dog", breeds=["dragon"], blends=0, seed=0)
    pool = build_pool("dog", ClassSubjects(procedural="dog", breeds=["pug", "beagle"], blends=2), seed=1)
    assert len(pool) == 4 and {s.class_name for s in pool} == {"dog"}


def test_pose_randomizer_default_probability_keeps_default_stances():
    from drsynth.config import parse_scenario
    from drsynth.describe import build_context, build_randomizers, describe_scene

    def poses(p_default):
        sc = parse_scenario(
            {
                "name": "t",
                "classes": {"cat": {"procedural": "cat", "breeds": ["siamese"]}},
                "randomizers": {"pose": {"default_probability": p_default}, "occluders": {"enabled": False}},
            }
        )
        ctx, rz = build_context(sc), build_randomizers(sc)
        return [describe_scene(sc, ctx, i, randomizers=rz)[0].subject.pose for i in range(12)]

    assert all(p == {"family": "default"} for p in poses(1.0))
    random = poses(0.0)
    assert all(p["family"] != "default" for p in random)
    half = poses(0.5)
    assert 0 < sum(p == {"family": "default"} for p in half) < 12


def test_portrait_framing_aims_at_the_head_and_comes_closer():
    from drsynth.config import parse_scenario
    from drsynth.describe import build_context, build_randomizers, describe_scene

    def specs(p_portrait):
        sc = parse_scenario(
            {
                "name": "t",
                "classes": {"cat": {"procedural": "cat", "breeds": ["siamese"]}},
                "randomizers": {
                    "camera": {"portrait_probability": p_portrait, "aim_offset": [0.0, 0.0]},
                    "occluders": {"enabled": False},
                },
            }
        )
        ctx, rz = build_context(sc), build_randomizers(sc)
        return [describe_scene(sc, ctx, i, randomizers=rz)[0] for i in range(6)]

    full, portrait = specs(0.0), specs(1.0)
    for f, p in zip(full, portrait, strict=True):
        head = np.asarray(p.subject.head_center_m)
        assert p.subject.head_radius_m < p.subject.radius_m
        assert not f.camera.portrait and p.camera.portrait
        # Same view direction and distance factor, but framed on a smaller sphere nearer the head.
        assert p.camera.distance_m < f.camera.distance_m
        assert np.linalg.norm(np.asarray(p.camera.target_m) - head) < np.linalg.norm(
            np.asarray(f.camera.target_m) - head
        )
    assert [s.camera for s in specs(1.0)] == [s.camera for s in portrait]  # deterministic


def test_dogs_pant_in_some_sampled_poses_and_never_in_the_default_stance():
    """The open mouth and tongue are parts shown only when the pose says so; cats never pant."""
    dog = dogs.make_subjects("dog", breeds=["labrador_yellow"], blends=0, seed=0)[0]
    rng = np.random.default_rng(0)
    states = [dog.sample_pose(rng)["mouth_open"] for _ in range(40)]
    assert 0 < sum(states) < len(states)
    names = lambda pose: {p.key.rsplit("#", 1)[1] for p in dog.parts(pose)}  # noqa: E731
    assert not {"mouth", "tongue"} & names(dog.default_pose())
    open_pose = next(dog.sample_pose(np.random.default_rng(i)) for i in range(100) if _pants(dog, i))
    shown = [p for p in dog.parts(open_pose) if p.key.endswith(("#tongue", "#mouth"))]
    assert len(shown) == 2 and not any(p.texturable for p in shown)
    tongue = next(p for p in shown if p.key.endswith("#tongue"))
    r, g, b, _ = tongue.material.base_color
    assert r > 0.7 and r > g + 0.3 and r > b + 0.3  # pink
    # The tongue hangs below the nose and in front of the mouth, and does not ground the animal.
    model = dog.model
    nose = next(pg for pg in model.parts if pg.name == "nose").mesh.bounds
    tongue_b = next(pg for pg in model.parts if pg.name == "tongue").mesh.bounds
    assert tongue_b[0][1] < nose[0][1] and tongue_b[1][0] > nose[0][0]
    pose = {k: v for k, v in open_pose.items() if k in JOINT_LIMITS}
    solid = [pg.name for pg in model.parts if pg.name not in ("mouth", "tongue")]
    assert model.lowest_y(pose) == model.lowest_y(pose, solid)
    cat = cats.make_subjects("cat", breeds=["siamese"], blends=0, seed=0)[0]
    assert "mouth_open" not in cat.sample_pose(np.random.default_rng(0))
    assert not any(pg.name == "tongue" for pg in cat.model.parts)


def _pants(subject, seed: int) -> bool:
    return bool(subject.sample_pose(np.random.default_rng(seed))["mouth_open"])
