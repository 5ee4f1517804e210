"""`drsynth curate`: score renders, keep the best of each class, and package only those."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import shared_path
from dataset_fixtures import make_render_dir
from PIL import Image

from drsynth import curate as cu
from drsynth.errors import ConfigError, DatasetError
from drsynth.package import package

CAT, DOG = 281, 151  # one class of each ImageNet group


class BrightnessClassifier:
    """A deterministic stand-in for the ImageNet network: the brighter the image, the more mass its
    class's group gets, so which renders a curation keeps can be computed independently."""

    def probabilities(self, images: list[np.ndarray]) -> np.ndarray:
        out = np.full((len(images), 1000), 0.0, np.float64)
        for i, im in enumerate(images):
            b = float(np.asarray(im, np.float64).mean()) / 255.0
            out[i, CAT] = out[i, DOG] = b / 2
            out[i, 0] = 1.0 - b
        return out


def _brightness(path) -> float:
    return float(np.asarray(Image.open(path).convert("RGB"), np.float64).mean()) / 255.0


def test_select_keeps_the_best_of_each_class():
    scored = [
        cu.ScoredRender(f"{i:03d}", "cat" if i % 2 else "dog", s)
        for i, s in enumerate([0.9, 0.1, 0.5, 0.7, 0.5, 0.3])
    ]
    # dogs (even): 000 0.9, 002 0.5, 004 0.5 -> the best two are 000 and 002 (the tie goes to the lower key)
    # cats (odd): 001 0.1, 003 0.7, 005 0.3 -> 003 and 005
    assert cu.select(scored, 0.6) == {"000", "002", "003", "005"}
    assert cu.select(scored, 0.01) == {"000", "003"}  # at least one per class
    assert cu.select(scored, 1.0) == {s.key for s in scored}
    for bad in (0.0, -0.5, 1.5):
        with pytest.raises(DatasetError, match="keep fraction"):
            cu.select(scored, bad)


def test_curate_then_package_only_the_kept(tmp_path):
    src = make_render_dir(tmp_path / "render", 24)
    curation, paths = cu.curate(src, tmp_path / "cur", keep_fraction=0.5, classifier=BrightnessClassifier())
    records = {p.stem: json.loads(p.read_text()) for p in (src / "samples").glob("*.json")}
    for cls in ("cat", "dog"):
        keys = sorted(
            (k for k, r in records.items() if r["class"] == cls),
            key=lambda k: -_brightness(src / "samples" / f"{k}.jpg"),
        )
        assert {k for k in keys[:6]} <= curation.kept and not set(keys[6:]) & curation.kept
        assert curation.classes[cls]["rendered"] == 12 and curation.classes[cls]["kept"] == 6
        assert curation.classes[cls]["mean_score_kept"] > curation.classes[cls]["mean_score_dropped"]
        breeds = curation.classes[cls]["breeds"]
        assert set(breeds) == {"breed0", "breed1", "breed2"}
        assert (
            sum(b["rendered"] for b in breeds.values()) == 12 and sum(b["kept"] for b in breeds.values()) == 6
        )
        fractions = [b["kept_fraction"] for b in breeds.values()]
        assert fractions == sorted(fractions)  # least kept first
    data = json.loads(paths["json"].read_text())
    assert data["kind"] == "drsynth-curation" and len(data["kept"]) == 12 and len(data["scores"]) == 24
    assert Image.open(paths["sheet"]).size[1] > 0 and "tiny" in paths["html"].read_text()

    result = package(
        src, str(tmp_path / "ds"), shard_size=5, progress=False, card=False, curation=tmp_path / "cur"
    )
    m = result.manifest
    assert m.num_samples == 12 and m.counts == {"cat": 6, "dog": 6}
    assert m.source["curation"]["kept"] == 12 and m.source["curation"]["rendered"] == 24
    index = (tmp_path / "ds" / "index.tsv").read_text()
    assert all(k in index for k in curation.kept)
    assert not any(k in index for k in set(records) - curation.kept)

    make_render_dir(src, 4, start=24)  # renders finished after the curation: never scored, left out
    again = package(src, str(tmp_path / "ds2"), progress=False, card=False, curation=tmp_path / "cur")
    assert again.manifest.num_samples == 12 and again.manifest.source["curation"]["unscored_left_out"] == 4


def test_package_refuses_a_curation_of_other_renders(tmp_path):
    big = make_render_dir(tmp_path / "big", 24)
    cu.curate(big, tmp_path / "cur", keep_fraction=0.5, classifier=BrightnessClassifier())
    small = make_render_dir(tmp_path / "small", 6)  # lacks most kept keys
    with pytest.raises(DatasetError, match="do not hold"):
        package(small, str(tmp_path / "ds"), progress=False, card=False, curation=tmp_path / "cur")
    assert not (tmp_path / "ds" / "dataset.json").exists()
    other_seed = make_render_dir(tmp_path / "seed7", 24, seed=7)
    with pytest.raises(DatasetError, match="seed"):
        package(other_seed, str(tmp_path / "ds"), progress=False, card=False, curation=tmp_path / "cur")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(DatasetError, match="unreadable"):
        package(big, str(tmp_path / "ds"), progress=False, card=False, curation=bad)
    bad.write_text(json.dumps({"kept": ["000000000"]}))
    with pytest.raises(DatasetError, match="not a drsynth curation"):
        package(big, str(tmp_path / "ds"), progress=False, card=False, curation=bad)
    with pytest.raises(DatasetError, match="not found"):
        package(big, str(tmp_path / "ds"), progress=False, card=False, curation=tmp_path / "none.json")
    assert not (tmp_path / "ds" / "dataset.json").exists()


def test_a_damaged_render_is_one_error_and_nothing_is_written(tmp_path):
    src = make_render_dir(tmp_path / "render", 8)
    (src / "samples" / "000000005.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(DatasetError, match="000000005"):
        cu.curate(src, tmp_path / "cur", classifier=BrightnessClassifier())
    assert not (tmp_path / "cur").exists()


def test_curate_refuses_classes_without_group_and_writes_nothing(tmp_path):
    src = make_render_dir(tmp_path / "render", 6, classes=("cat", "giraffe"))
    with pytest.raises(ConfigError, match="giraffe"):
        cu.curate(src, tmp_path / "cur", classifier=BrightnessClassifier())
    assert not (tmp_path / "cur").exists()


def test_curate_and_package_commands_with_imagenet_weights(tmp_path, capsys):
    from drsynth.cli import main

    weights = shared_path("weights", "mobilenet_v2_imagenet.pth")
    src = make_render_dir(tmp_path / "render", 24)
    for argv in (
        ["curate", "--src", str(src), "--keep", "0.25", "--weights", str(weights)],
        [
            "package",
            "--src",
            str(src),
            "--dest",
            str(tmp_path / "ds"),
            "--curation",
            str(src / "curation"),
            "--no-card",
        ],
    ):
        try:
            main(argv)
        except SystemExit as e:
            assert e.code in (0, None)
    data = json.loads((src / "curation" / "curation.json").read_text())
    assert len(data["kept"]) == 6 and all(0.0 <= v <= 1.0 for v in data["scores"].values())
    manifest = json.loads((tmp_path / "ds" / "dataset.json").read_text())
    assert manifest["num_samples"] == 6 and manifest["source"]["curation"]["weights"] == str(weights)
    with pytest.raises(SystemExit) as e:
        main(["curate", "--src", str(src), "--keep", "2", "--weights", str(weights)])
    assert e.value.code == 2 and "keep fraction" in capsys.readouterr().err


# --- in the pipeline and the studies ------------------------------------------------------------------------


def test_plan_curates_the_training_renders_only(tmp_path):
    from drsynth.presets import RunConfig, preset
    from drsynth.runplan import plan_run, render_jobs

    cfg = preset(
        "ci",
        store_uri=str(tmp_path),
        studies=["transfer"],
        images_per_class=4,
        test_images_per_class=2,
        curate_keep=0.5,
        curate_weights="/w.pth",
    )
    plan = plan_run(cfg)
    train, test = plan.dataset("synth-control"), plan.dataset("test-synthetic")
    assert (train.count, train.curate_keep, train.curate_weights) == (16, 0.5, "/w.pth")  # 4 / 0.5 per class
    assert (test.count, test.curate_keep) == (4, 0.0)  # test domains stay as rendered
    assert {(j["curate_keep"], j["curate_weights"]) for j in render_jobs(plan, "synth-control")} == {
        (0.5, "/w.pth")
    }
    uncurated = plan_run(preset("ci", store_uri=str(tmp_path), studies=["transfer"], images_per_class=4))
    assert uncurated.dataset("synth-control").uri != train.uri  # another dataset: another URI
    params = cfg.pipeline_parameters()
    assert (
        params["curate_keep"] == 0.5 and RunConfig.from_parameters(**params).study.curate_weights == "/w.pth"
    )
    assert RunConfig.from_parameters(**(params | {"curate_weights": "default"})).study.curate_weights is None

    scenario = tmp_path / "giraffes.yaml"
    scenario.write_text("name: g\nclasses:\n  cat: {procedural: cat}\n  giraffe: {procedural: dog}\n")
    with pytest.raises(ConfigError, match="giraffe.*set curate_keep to 0"):
        plan_run(
            preset(
                "ci", store_uri=str(tmp_path), studies=["transfer"], scenario=str(scenario), curate_keep=0.5
            )
        )


@pytest.mark.slow
def test_package_step_curates_and_keeps_the_sheet(tmp_path):
    from drsynth import steps
    from drsynth.data import read_manifest
    from drsynth.presets import preset
    from drsynth.runplan import plan_run, render_jobs

    weights = shared_path("weights", "mobilenet_v2_imagenet.pth")
    cfg = preset(
        "ci",
        store_uri=str(tmp_path / "store"),
        studies=["transfer"],
        images_per_class=3,
        test_images_per_class=2,
        curate_keep=0.5,
        curate_weights=str(weights),
    )
    plan = plan_run(cfg)
    renders = []
    for i, job in enumerate(render_jobs(plan, "synth-control")):
        steps.render_shard(job, tmp_path / f"r{i}")
        renders.append(tmp_path / f"r{i}")
    out = steps.package_dataset(renders, tmp_path / "pkg")
    assert out["num_samples"] == 6 and out["counts"] == {"cat": 3, "dog": 3}  # of 12 rendered
    assert read_manifest(out["uri"]).source["curation"]["rendered"] == 12
    assert (tmp_path / "pkg" / "curation" / "curation.png").is_file()


def test_curate_will_not_replace_a_folder_of_other_files(tmp_path):
    src = make_render_dir(tmp_path / "render", 8)
    with pytest.raises(DatasetError, match="holds other files"):
        cu.curate(src, src, classifier=BrightnessClassifier())  # --out pointed at the render folder itself
    assert len(list((src / "samples").glob("*.jpg"))) == 8
    (tmp_path / "a_file").write_text("x")
    with pytest.raises(DatasetError, match="is a file or holds other files"):
        cu.curate(src, tmp_path / "a_file", classifier=BrightnessClassifier())
    assert (tmp_path / "a_file").read_text() == "x"
    first, _ = cu.curate(src, tmp_path / "cur", keep_fraction=0.5, classifier=BrightnessClassifier())
    again, _ = cu.curate(src, tmp_path / "cur", keep_fraction=0.25, classifier=BrightnessClassifier())
    assert len(again.kept) == 2 and len(json.loads((tmp_path / "cur" / "curation.json").read_text())["kept"]) == 2
