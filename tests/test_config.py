"""Scenario configuration: presets load, overrides apply, and every bad input is one clear ConfigError."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from drsynth.config import RANDOMIZER_NAMES, load_scenario, parse_scenario
from drsynth.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]
PRESETS = REPO / "assets" / "scenarios"
BASE = {"classes": {"cat": {"procedural": "cat"}, "dog": {"procedural": "dog"}}}


@pytest.mark.parametrize("name", ["cats_dogs", "cats_dogs_bikes_cars"])
def test_presets_load(name):
    sc = load_scenario(PRESETS / f"{name}.yaml")
    assert sc.name == name
    assert sc.class_names[:2] == ["cat", "dog"]
    assert sc.image_size == 256
    assert sc.disabled == ["sensor", "subject_texture"]  # the paper's control: all on but subject texture, sensor


def test_overrides():
    sc = load_scenario(PRESETS / "cats_dogs.yaml", seed=5, image_size=64, disable=["sky", "occluders"], style="toon")
    assert (sc.seed, sc.image_size, sc.style) == (5, 64, "toon")
    assert sc.disabled == ["sky", "sensor", "occluders", "subject_texture"]
    assert not sc.randomizers.sky.enabled
    on = sc.with_overrides(enable=["subject_texture"])
    assert on.randomizers.subject_texture.enabled
    assert sc.class_of(0) == "cat" and sc.class_of(1) == "dog" and sc.class_of(7) == "dog"


def _write(tmp_path, data) -> Path:
    p = tmp_path / "s.yaml"
    p.write_text(yaml.safe_dump(data))
    return p


@pytest.mark.parametrize(
    "patch, expected",
    [
        ({"randomizers": {"lightning": {}}}, "unknown randomizer 'lightning'"),
        ({"randomizers": {"camera": {"distance": [3, 1]}}}, "randomizers.camera.distance: range must be [low, high]"),
        ({"randomizers": {"camera": {"yfov_deg": [10, 170]}}}, "randomizers.camera.yfov_deg: range must lie within"),
        ({"randomizers": {"camera": {"distance": "far"}}}, "randomizers.camera.distance"),
        ({"randomizers": {"camera": {"fov": [1, 2]}}}, "unknown key 'fov'"),
        ({"randomizers": {"occluders": {"max_hidden_fraction": 1.5}}}, "max_hidden_fraction"),
        ({"randomizers": {"occluders": {"shapes": ["box", "teapot"]}}}, "teapot"),
        ({"randomizers": {"sky": {"kinds": ["aurora"]}}}, "unknown sky kinds ['aurora']"),
        ({"randomizers": {"sky": {"image_dir": "no/such/skies"}}}, "randomizers.sky.image_dir folder"),
        ({"randomizers": {"materials": {"image_dir": "nope"}}}, "randomizers.materials.image_dir folder"),
        ({"randomizers": {"materials": {"families": ["velvet"]}}}, "unknown material families ['velvet']"),
        ({"classes": {"cat": {"procedural": "cow"}}}, "unknown generator 'cow'"),
        ({"classes": {"cat": {"models_dir": "missing_models"}}}, "classes.cat.models_dir folder"),
        ({"classes": {"cat": {}}}, "classes.cat needs"),
        ({"classes": {}}, "classes must list at least one class"),
        ({"seed": -1}, "seed"),
        ({"image_size": 8}, "image_size"),
        ({"style": "watercolour"}, "style"),
        ({"render": {"msaa_samples": 3}}, "render.msaa_samples"),
        ({"class_overrides": {"horse": {"camera": {}}}}, "class_overrides.horse: unknown class 'horse'"),
        ({"class_overrides": {"cat": {"cameras": {}}}}, "unknown randomizer 'cameras' at class_overrides.cat.cameras"),
        ({"class_overrides": {"cat": {"subject": {}}}}, "unknown randomizer 'subject'"),
        ({"class_overrides": {"cat": {"camera": {"fov": 3}}}}, "unknown key 'fov' at class_overrides.cat.camera.fov"),
        ({"class_overrides": {"cat": {"camera": {"distance": [3, 1]}}}}, "class_overrides.cat.camera.distance: range"),
        ({"class_overrides": {"cat": {"occluders": {"shapes": ["teapot"]}}}}, "class_overrides.cat.occluders.shapes"),
        ({"class_overrides": {"cat": {"occluders": {"enabled": False}}}}, "occluders.enabled cannot be set per class"),
        ({"class_overrides": {"cat": {"materials": {"families": ["wood"]}}}}, "families cannot be set per class"),
        ({"class_overrides": {"cat": "wide"}}, "class_overrides.cat"),
    ],
)
def test_bad_scenarios_are_clear_config_errors(tmp_path, patch, expected):
    data = {**BASE, **patch}
    path = _write(tmp_path, data)
    with pytest.raises(ConfigError) as err:
        load_scenario(path)
    assert expected in str(err.value)
    assert str(path) in str(err.value)  # names the file


def test_unknown_randomizer_lists_valid_ones():
    with pytest.raises(ConfigError) as err:
        parse_scenario({**BASE, "randomizers": {"clouds": {"enabled": False}}})
    for name in RANDOMIZER_NAMES:
        assert name in str(err.value)


def test_bad_overrides_and_files(tmp_path):
    with pytest.raises(ConfigError, match="unknown randomizer 'skies'; valid randomizers: subject, pose"):
        load_scenario(PRESETS / "cats_dogs.yaml", disable=["skies"])
    with pytest.raises(ConfigError, match="does not exist"):
        load_scenario(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("classes: [cat\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_scenario(bad)
    bad.write_text("- just\n- a list\n")
    with pytest.raises(ConfigError, match="expected a mapping"):
        load_scenario(bad)
    with pytest.raises(ConfigError, match="unknown classes"):
        load_scenario(PRESETS / "cats_dogs.yaml", classes=["cat", "horse"])


def test_relative_folders_resolve_against_the_yaml(tmp_path):
    (tmp_path / "skies").mkdir()
    (tmp_path / "skies" / "a.png").write_bytes(b"")
    sc = load_scenario(_write(tmp_path, {**BASE, "randomizers": {"sky": {"image_dir": "skies"}}}))
    assert sc.randomizers.sky.image_dir == (tmp_path / "skies").resolve()


def test_scenario_round_trips_through_json():
    sc = load_scenario(PRESETS / "cats_dogs.yaml", disable=["pose"])
    again = parse_scenario(sc.to_json())
    assert again == sc


def test_class_overrides_apply_to_their_class_only():
    sc = parse_scenario(
        {**BASE, "randomizers": {"camera": {"yfov_deg": [30, 40]}},
         "class_overrides": {"dog": {"camera": {"azimuth_deg": [45, 135]}, "occluders": {"count": 0}}}}
    )
    dog, cat = sc.randomizers_for("dog"), sc.randomizers_for("cat")
    assert cat == sc.randomizers
    assert dog.camera.azimuth_deg == (45.0, 135.0) and dog.occluders.count == (0, 0)
    assert dog.camera.yfov_deg == (30.0, 40.0)  # the rest stays scenario-wide
    assert dog.camera.distance == sc.randomizers.camera.distance and dog.lighting == sc.randomizers.lighting
    # --disable stays scenario-wide; --classes drops the other classes' overrides; JSON round trip
    off = sc.with_overrides(disable=["occluders"])
    assert not off.randomizers_for("dog").occluders.enabled and off.randomizers_for("dog").occluders.count == (0, 0)
    assert sc.with_overrides(classes=["cat"]).class_overrides == {}
    assert parse_scenario(sc.to_json()) == sc


def test_committed_vehicle_overrides_leave_animals_alone():
    sc = load_scenario(PRESETS / "cats_dogs_bikes_cars.yaml")
    assert set(sc.class_overrides) <= {"bicycle", "car"}
    for c in ("cat", "dog"):
        assert sc.randomizers_for(c) == sc.randomizers
