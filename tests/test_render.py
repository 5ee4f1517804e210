"""Rendering: determinism, measured occlusion, toon style, the render folder (resume, contract) and the CLI."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from render_toys import toy_context, toy_scenario

from drsynth.errors import ConfigError, RenderError
from drsynth.render_job import SAMPLES_DIR, SampleRenderer, render_range, render_samples

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def scenario():
    return toy_scenario()


@pytest.fixture(scope="module")
def worker(scenario):
    w = SampleRenderer(scenario, ctx=toy_context(scenario))
    yield w
    w.close()


def _jpeg(sample, q=90) -> bytes:
    return sample.jpeg(q)


def test_same_index_gives_identical_jpeg_and_record(scenario, worker):
    a = worker.render(5)
    b = worker.render(5)  # same process, caches warm
    fresh = list(render_samples(scenario, [5], ctx=toy_context(scenario)))  # a second renderer
    assert _jpeg(a) == _jpeg(b)
    assert a.record == b.record
    img, rec = fresh[0]
    assert np.array_equal(np.asarray(img), a.image) and rec == a.record
    assert not np.array_equal(worker.render(6).image, a.image)


def test_record_contract(worker):
    r = worker.render(1).record
    for key in [
        "key", "index", "seed", "class", "label", "subject", "pose", "camera", "lights", "sky", "occluders",
        "materials", "style", "visible_fraction", "bbox", "image_size", "scenario", "drsynth_version",
    ]:  # fmt: skip
        assert key in r, key
    assert r["key"] == "000000001" and r["class"] == "dog" and r["label"] == 1
    assert set(r["subject"]) == {"id", "class", "breed", "source"}
    x0, y0, x1, y1 = r["bbox"]
    assert 0 <= x0 < x1 <= 64 and 0 <= y0 < y1 <= 64
    assert 0 < r["visible_fraction"] <= 1
    json.dumps(r)  # plain JSON


def test_image_shows_varied_scenes(worker):
    imgs = [worker.render(i).image for i in range(6)]
    assert all(im.shape == (64, 64, 3) and im.dtype == np.uint8 for im in imgs)
    means = [im.reshape(-1, 3).mean(0) for im in imgs]
    assert np.std(means, axis=0).max() > 5  # different skies/grounds/lights
    assert all(im.std() > 5 for im in imgs)  # not blank


def test_visible_mask_and_bbox_match(worker):
    spec_sample = worker.render(2)
    rec = spec_sample.record
    result = worker.renderer.render(*_describe(worker, 2))
    assert result.visible_fraction == pytest.approx(rec["visible_fraction"], abs=1e-6)
    ys, xs = np.nonzero(result.visible_mask)
    assert [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1] == rec["bbox"]
    assert (result.visible_mask <= result.subject_mask).all()


def _describe(worker, i):
    from drsynth.describe import describe_scene

    return describe_scene(
        worker.scenario, worker.ctx, i, randomizers=worker.randomizers, hidden_fraction=worker.renderer.hidden_fraction
    )


def test_occlusion_bound_holds_and_is_measured():
    crowded = {"count": [3, 4], "size": [0.6, 1.2], "distance": [0.5, 1.2], "height": [0.2, 0.8]}
    bounded = toy_scenario(randomizers={"occluders": {**crowded, "max_hidden_fraction": 0.3, "max_tries": 200}})
    free = bounded.with_overrides()  # same but unbounded:
    free = type(free).model_validate(
        {**free.model_dump(), "randomizers": {**free.model_dump()["randomizers"], "occluders": {**crowded, "max_hidden_fraction": 1.0}}}
    )
    ctx = toy_context(bounded)
    vis_bounded = [rec["visible_fraction"] for _, rec in render_samples(bounded, range(16), ctx=ctx)]
    recs_free = [rec for _, rec in render_samples(free, range(16), ctx=ctx)]
    vis_free = [r["visible_fraction"] for r in recs_free]
    assert min(vis_bounded) >= 0.7 - 1e-6
    assert min(vis_free) < 0.7  # the setting really occludes: the bound above was enforced, not lucky
    assert any(r["occluder_tries"] == 1 for r in recs_free)


def test_occlusion_retries_exhausted_is_a_clear_error():
    wall = {"count": [4, 4], "size": [3, 3], "aspect": [1, 1], "distance": [0, 0], "height": [0.3, 0.3]}
    sc = toy_scenario(randomizers={"occluders": {**wall, "max_hidden_fraction": 0.05, "max_tries": 3}})
    with pytest.raises(RenderError, match=r"in 3 tries \(seed 7, index 0"):
        list(render_samples(sc, [0], ctx=toy_context(sc)))


def test_toon_style_renders_flat_with_ink(scenario):
    toon = scenario.with_overrides(style="toon", image_size=96)
    pbr = scenario.with_overrides(image_size=96)
    ctx = toy_context(scenario)
    (t_img, t_rec), = render_samples(toon, [3], ctx=ctx)
    (p_img, _), = render_samples(pbr, [3], ctx=ctx)
    t, p = np.asarray(t_img), np.asarray(p_img)
    assert t_rec["style"] == "toon"
    dark = lambda im: (im.max(axis=2) < 30).mean()  # noqa: E731
    assert dark(t) > dark(p) + 0.01  # ink outlines
    # cel shading: far fewer distinct colours than the shaded render
    assert len(np.unique(t.reshape(-1, 3), axis=0)) < 0.7 * len(np.unique(p.reshape(-1, 3), axis=0))


def test_render_folder_resume_and_sharding(scenario, tmp_path):
    ctx = toy_context(scenario)
    out = tmp_path / "render"
    s1 = render_range(scenario, out, start=0, count=4, ctx=ctx)
    assert (s1.rendered, s1.skipped) == (4, 0)
    manifest = json.loads((out / "render.json").read_text())
    assert manifest["classes"] == ["cat", "dog"] and manifest["seed"] == 7 and manifest["image_size"] == 64
    samples = out / SAMPLES_DIR
    first = (samples / "000000001.jpg").read_bytes()
    mtime = (samples / "000000001.json").stat().st_mtime_ns
    (samples / "000000002.json").unlink()  # as if interrupted before image 2 finished
    s2 = render_range(scenario, out, start=0, count=6, ctx=ctx)
    assert (s2.rendered, s2.skipped) == (3, 3)
    assert (samples / "000000001.json").stat().st_mtime_ns == mtime
    assert sorted(p.name for p in samples.iterdir()) == [f"{i:09d}.{e}" for i in range(6) for e in ("jpg", "json")]
    # a shard rendered on its own equals the same indices of the whole run
    other = tmp_path / "shard"
    render_range(scenario, other, start=1, count=1, ctx=ctx)
    assert (other / SAMPLES_DIR / "000000001.jpg").read_bytes() == first
    Image.open(io.BytesIO(first)).verify()


def test_render_folder_refuses_other_scenarios_and_unwritable_paths(scenario, tmp_path):
    ctx = toy_context(scenario)
    render_range(scenario, tmp_path / "r", count=1, ctx=ctx)
    with pytest.raises(ConfigError, match="different scenario"):
        render_range(scenario.with_overrides(seed=99), tmp_path / "r", count=1, ctx=ctx)
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(RenderError, match="not writable"):
        render_range(scenario, blocker / "out", count=1, ctx=ctx)
    with pytest.raises(ConfigError):
        render_range(scenario, tmp_path / "neg", start=-1, count=1, ctx=ctx)


def _cli(*args, cwd=REPO) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "drsynth", *args], cwd=cwd, capture_output=True, text=True, timeout=600)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--disable", "skies"], "unknown randomizer 'skies'"),
        (["--scenario", "nope.yaml"], "does not exist"),
        (["--size", "4"], "image_size"),
    ],
)
def test_cli_bad_input_is_one_line_and_exit_2(tmp_path, args, message):
    base = {"--scenario": "assets/scenarios/cats_dogs.yaml", "--count": "2", "--out": str(tmp_path / "o")}
    for k, _v in zip(args[::2], args[1::2], strict=True):
        base.pop(k, None)
    flat = [x for kv in base.items() for x in kv] + args
    res = _cli("render", *flat)
    assert res.returncode == 2
    assert message in res.stderr and "Traceback" not in res.stderr
    assert not (tmp_path / "o").exists()  # nothing half-written


def _one_breed_scenario(tmp_path) -> Path:
    import yaml

    from drsynth.subjects import cats, dogs

    data = yaml.safe_load((REPO / "assets/scenarios/cats_dogs.yaml").read_text())
    data["classes"] = {
        "cat": {"procedural": "cat", "breeds": cats.preset_names()[:2], "blends": 0},
        "dog": {"procedural": "dog", "breeds": dogs.preset_names()[:1], "blends": 0},
    }
    p = tmp_path / "small.yaml"
    p.write_text(yaml.safe_dump(data))
    return p


@pytest.mark.slow
def test_cli_render_and_preview_with_procedural_subjects(tmp_path):
    sc = _one_breed_scenario(tmp_path)
    out = tmp_path / "out"
    res = _cli("render", "--scenario", str(sc), "--count", "4", "--out", str(out), "--size", "64", "--workers", "2")
    assert res.returncode == 0, res.stderr
    assert "images/s" in res.stderr.splitlines()[-1]
    recs = [json.loads((out / SAMPLES_DIR / f"{i:09d}.json").read_text()) for i in range(4)]
    assert [r["class"] for r in recs] == ["cat", "dog", "cat", "dog"]
    again = _cli("render", "--scenario", str(sc), "--count", "4", "--out", str(out), "--size", "64", "--workers", "1")
    assert again.returncode == 0 and "4 already done" in again.stderr
    sheet = tmp_path / "sheet.png"
    res = _cli("preview", "--scenario", str(sc), "--out", str(sheet), "--by", "breed", "--size", "64")
    assert res.returncode == 0, res.stderr
    img = Image.open(sheet)
    assert img.width == 3 * 64  # one tile per breed: 2 cats + 1 dog


def test_corrupt_model_file_is_reported_and_a_class_without_subjects_fails(tmp_path):
    pytest.importorskip("drsynth.subjects.imported")
    models = tmp_path / "models"
    models.mkdir()
    (models / "broken.glb").write_bytes(b"glTF\x02\x00\x00\x00 definitely not a model")
    sc = tmp_path / "s.yaml"
    sc.write_text(f"classes:\n  cat: {{models_dir: {models}}}\n  dog: {{procedural: dog}}\n")
    res = _cli("render", "--scenario", str(sc), "--count", "2", "--out", str(tmp_path / "o"), "--size", "32")
    assert res.returncode == 2, res.stderr
    assert "broken.glb" in res.stderr  # the bad file is named
    assert "class 'cat' has no subject" in res.stderr and "Traceback" not in res.stderr
    assert not (tmp_path / "o").exists()  # nothing written


def test_multisampling_option(scenario):
    data = scenario.model_dump()
    data["render"]["msaa_samples"] = 4
    ms = type(scenario).model_validate(data)
    ctx = toy_context(scenario)
    (a, ra), = render_samples(ms, [4], ctx=ctx)
    (b, rb), = render_samples(scenario, [4], ctx=ctx)
    assert ra["class"] == rb["class"] and ra["subject"] == rb["subject"]
    assert abs(ra["visible_fraction"] - rb["visible_fraction"]) < 0.05
    assert not np.array_equal(np.asarray(a), np.asarray(b))  # anti-aliased differently
    assert np.abs(np.asarray(a, float) - np.asarray(b, float)).mean() < 12  # but the same scene


def test_shell_fur_gives_a_soft_larger_outline_and_stays_deterministic(scenario):
    """A furry coat is drawn as offset shells with random strands: the silhouette grows by about the fur
    length and gains partly covered (hairy) edge pixels; the same index still gives the same image."""
    data = scenario.with_overrides(image_size=128).model_dump()
    data["randomizers"]["occluders"]["enabled"] = False
    data["render"]["fur_shells"] = 3
    big = type(scenario).model_validate(data)
    plain_ctx, furry_ctx = toy_context(big), toy_context(big, fur=0.03)
    (p_img, p_rec), = render_samples(big, [5], ctx=plain_ctx)
    (f_img, f_rec), = render_samples(big, [5], ctx=furry_ctx)
    (f_again, _), = render_samples(big, [5], ctx=toy_context(big, fur=0.03))
    assert np.array_equal(np.asarray(f_img), np.asarray(f_again))
    assert p_rec["subject"] == f_rec["subject"] and p_rec["camera"] == f_rec["camera"]
    area = lambda b: (b[2] - b[0]) * (b[3] - b[1])  # noqa: E731
    assert area(f_rec["bbox"]) > area(p_rec["bbox"])
    changed = np.abs(np.asarray(f_img, float) - np.asarray(p_img, float)).max(axis=2) > 8
    assert changed.sum() > 150, changed.sum()  # the coat's surface and outline, not a few pixels
    # fur_shells 0 (the default) draws none, and the toon style never does: cartoons keep clean outlines
    data["render"]["fur_shells"] = 0
    (off_img, _), = render_samples(type(scenario).model_validate(data), [5], ctx=furry_ctx)
    assert np.array_equal(np.asarray(off_img), np.asarray(p_img))
    toon = big.with_overrides(style="toon")
    (t_plain, _), = render_samples(toon, [5], ctx=plain_ctx)
    (t_furry, _), = render_samples(toon, [5], ctx=furry_ctx)
    assert np.array_equal(np.asarray(t_plain), np.asarray(t_furry))


def test_sensor_blur_and_noise_are_measured_effects():
    """apply_sensor on a known image: the blur widens a step edge by its sigma (scaled with the image size),
    the noise has the configured sigma at mid-grey and more in bright areas, and the seed fixes the field."""
    from drsynth.render import apply_sensor
    from drsynth.scene_spec import SensorSpec

    img = np.zeros((256, 256, 3), np.float32)
    img[:, 128:] = 1.0
    blurred = apply_sensor(img, SensorSpec(blur_px=2.0))
    ramp = blurred[128, :, 0]
    width = np.count_nonzero((ramp > 0.16) & (ramp < 0.84))  # +-1 sigma of a Gaussian edge: ~2 sigma wide
    assert 3 <= width <= 5, width
    half = apply_sensor(img[::2, ::2].copy(), SensorSpec(blur_px=2.0))[64, :, 0]
    assert 1 <= np.count_nonzero((half > 0.16) & (half < 0.84)) <= 3  # sized for 256 px: half at 128 px

    grey = np.full((256, 256, 3), 0.5, np.float32)
    noisy = apply_sensor(grey, SensorSpec(noise=0.04, chroma_noise=0.35, noise_seed=3))
    assert abs(float((noisy - 0.5).std()) - 0.04) < 0.004
    assert np.array_equal(noisy, apply_sensor(grey, SensorSpec(noise=0.04, chroma_noise=0.35, noise_seed=3)))
    assert not np.array_equal(noisy, apply_sensor(grey, SensorSpec(noise=0.04, chroma_noise=0.35, noise_seed=4)))
    bright = apply_sensor(np.full_like(grey, 0.9), SensorSpec(noise=0.04, noise_seed=3))
    assert (bright - 0.9).std() > 1.15 * (noisy - 0.5).std()  # photon noise grows with brightness
    lum_only = apply_sensor(grey, SensorSpec(noise=0.04, chroma_noise=0.0, noise_seed=3))
    assert np.allclose(lum_only[..., 0], lum_only[..., 2])  # no chroma share: the same field in every channel
    assert np.array_equal(apply_sensor(grey, SensorSpec()), grey)  # the disabled sensor changes nothing


def test_sensor_randomizer_changes_pixels_not_the_scene(scenario):
    ctx = toy_context(scenario)
    assert not scenario.randomizers.sensor.enabled  # off by default (it lowered transfer: docs/benchmarks.md)
    off, scenario = scenario, scenario.with_overrides(enable=["sensor"])
    (on_img, on_rec), = render_samples(scenario, [2], ctx=ctx)
    (off_img, off_rec), = render_samples(off, [2], ctx=ctx)
    assert on_rec["sensor"]["noise"] > 0 and off_rec["sensor"] == {
        "blur_px": 0.0, "noise": 0.0, "chroma_noise": 0.0, "noise_seed": 0
    }  # fmt: skip
    same = ("subject", "pose", "camera", "lights", "sky", "occluders", "materials", "visible_fraction", "bbox")
    assert {k: on_rec[k] for k in same} == {k: off_rec[k] for k in same}
    a, b = np.asarray(on_img, float), np.asarray(off_img, float)
    assert not np.array_equal(a, b) and np.abs(a - b).mean() < 12  # the same scene, seen through a camera
    # high-frequency energy (a 1-pixel Laplacian) is lower after a lens blur (sized for 256 px: 1 px at 64 px)
    lap = lambda im: np.abs(im[1:-1, 1:-1] * 4 - im[:-2, 1:-1] - im[2:, 1:-1] - im[1:-1, :-2] - im[1:-1, 2:])  # noqa: E731
    blur_only = toy_scenario(randomizers={"sensor": {"enabled": True, "blur_px": [4, 4], "noise": [0, 0]}})
    (s_img, s_rec), = render_samples(blur_only, [2], ctx=ctx)
    assert s_rec["sensor"]["blur_px"] == 4.0 and s_rec["camera"] == off_rec["camera"]
    assert lap(np.asarray(s_img, float)).mean() < 0.8 * lap(b).mean()
    # cartoons have no lens or sensor
    (t_on, _), = render_samples(scenario.with_overrides(style="toon"), [2], ctx=ctx)
    (t_off, _), = render_samples(off.with_overrides(style="toon"), [2], ctx=ctx)
    assert np.array_equal(np.asarray(t_on), np.asarray(t_off))
