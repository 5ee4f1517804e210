"""The on-disk cache of baked procedural animals: bit-identical renders, invalidation, corruption, off switch."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from render_toys import two_breed_data

from drsynth.config import parse_scenario
from drsynth.render_job import render_samples
from drsynth.subjects import bake_cache, cats, dogs
from drsynth.subjects.bake_cache import ENV, cache_dir, entry_path, subject_key


@pytest.fixture
def cache(tmp_path, monkeypatch):
    root = tmp_path / "subjects"
    monkeypatch.setenv(ENV, str(root))
    return root


def _scenario():
    return parse_scenario(two_breed_data("bake-cache", seed=3, image_size=48), source="bake cache test")


def _render(n: int = 2) -> list[np.ndarray]:
    # render_samples builds a fresh context (new subject objects) each call: nothing is shared in memory.
    return [np.asarray(img) for img, _ in render_samples(_scenario(), range(n))]


def _cat():
    return cats.make_subjects("cat", breeds=["siamese"], blends=0, seed=0)[0]


def test_cached_subjects_render_bit_identical_images(cache, monkeypatch):
    monkeypatch.setenv(ENV, "off")
    uncached = _render()
    monkeypatch.setenv(ENV, str(cache))
    cold = _render()  # builds and writes the entries
    entries = sorted(cache.rglob("*.npz"))
    assert len(entries) == 2  # one cat, one dog
    warm = _render()  # loads them
    for a, b, c in zip(uncached, cold, warm, strict=True):
        assert np.array_equal(a, b) and np.array_equal(a, c)
    assert not np.array_equal(uncached[0], uncached[1])  # a cat and a dog: the comparison can fail


def test_loaded_subject_equals_built_subject(cache):
    built = bake_cache.build_quadruped(_cat())
    bake_cache.bake_quadruped(_cat())  # write
    loaded = bake_cache.bake_quadruped(_cat())  # read
    (m0, meshes0, mats0), (m1, meshes1, mats1) = built, loaded
    assert set(meshes0) == set(meshes1) and set(mats0) == set(mats1)
    for name, a in meshes0.items():
        b = meshes1[name]
        for field in ("vertices", "faces", "vertex_normals"):
            assert np.array_equal(getattr(a, field), getattr(b, field)), (name, field)
        assert np.array_equal(a.visual.uv, b.visual.uv)
    for kind, a in mats0.items():
        b = mats1[kind]
        for f in dataclasses.fields(a):
            x, y = getattr(a, f.name), getattr(b, f.name)
            if isinstance(x, np.ndarray):
                assert x.dtype == y.dtype and np.array_equal(x, y), (kind, f.name)
            else:
                assert x == y, (kind, f.name)
    # The posing model works the same, including the SDF closures that are rebuilt on first use.
    assert m0.keypoint_heights({"body.pitch": 0.3}) == m1.keypoint_heights({"body.pitch": 0.3})
    p = np.array([[0.0, 0.2, 0.0], [0.1, 0.3, 0.02]])
    assert np.array_equal(m0.torso_sdf(p), m1.torso_sdf(p))


def test_corrupt_entry_is_rebuilt_and_rewritten(cache, caplog):
    s = _cat()
    ref = bake_cache.bake_quadruped(s)
    path = entry_path(cache, subject_key(s))
    good = path.read_bytes()
    for bad in (b"", b"not an npz", good[: len(good) // 2]):
        path.write_bytes(bad)
        with caplog.at_level("WARNING", logger="drsynth.subjects.bake_cache"):
            again = bake_cache.bake_quadruped(_cat())
        assert "unreadable entry" in caplog.text
        caplog.clear()
        assert np.array_equal(again[2]["fur"].base_color_texture, ref[2]["fur"].base_color_texture)
        assert path.read_bytes() == good  # rewritten: the same content as the first time


def test_entry_of_another_key_is_not_used(cache):
    a, b = _cat(), dogs.make_subjects("dog", breeds=["beagle"], blends=0, seed=0)[0]
    bake_cache.bake_quadruped(a)
    # A misplaced file (say, copied by hand) under b's name: its recorded key does not match, so b is rebuilt.
    pa, pb = entry_path(cache, subject_key(a)), entry_path(cache, subject_key(b))
    pb.parent.mkdir(parents=True, exist_ok=True)
    pb.write_bytes(pa.read_bytes())
    _, _, mats = bake_cache.bake_quadruped(b)
    assert mats["fur"].key.startswith("dog/")


def test_key_follows_everything_that_shapes_the_subject(monkeypatch):
    s = _cat()
    k = subject_key(s)
    assert subject_key(_cat()) == k  # stable across objects (and processes: no hash())
    changes = [
        dataclasses.replace(s.coat, base=(0.5, 0.2, 0.1)),
        dataclasses.replace(s.coat, pattern="solid"),
    ]
    for coat in changes:
        t = _cat()
        t.coat = coat
        assert subject_key(t) != k
    t = _cat()
    t.anatomy = dataclasses.replace(t.anatomy, shoulder_height=t.anatomy.shoulder_height * 1.01)
    assert subject_key(t) != k
    t = _cat()
    t.seed += 1
    assert subject_key(t) != k
    # The builder modules' source is part of the key: edit one (here, pretend to) and every key changes.
    monkeypatch.setattr(bake_cache, "_sources", lambda: "0" * 64)
    assert subject_key(_cat()) != k


def test_cache_off_builds_without_writing(tmp_path, monkeypatch):
    monkeypatch.setenv(ENV, "off")
    assert cache_dir() is None
    monkeypatch.setenv("HOME", str(tmp_path))  # the default location would be under here
    model, meshes, mats = bake_cache.bake_quadruped(_cat())
    assert meshes and mats["fur"].base_color_texture is not None
    assert not any(tmp_path.rglob("*.npz"))
    monkeypatch.delenv(ENV)
    assert cache_dir() == tmp_path / ".cache" / "drsynth" / "subjects"


def test_unwritable_cache_is_not_fatal(tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("a file where the cache folder should be")
    monkeypatch.setenv(ENV, str(blocker / "subjects"))
    _, meshes, _ = bake_cache.bake_quadruped(_cat())
    assert meshes


def test_prebake_prepares_every_animal_from_any_offset(cache):
    pool = cats.make_subjects("cat", breeds=["siamese", "tuxedo"], blends=1, seed=0)
    assert bake_cache.prebake(pool, offset=0.5) == 3
    assert all(s._meshes is not None for s in pool)
    assert len(list(cache.rglob("*.npz"))) == 3


@pytest.mark.slow
def test_two_render_workers_prebake_into_the_shared_cache(cache, tmp_path, monkeypatch):
    from drsynth.describe import build_context
    from drsynth.render_job import SAMPLES_DIR, _should_prebake, render_range

    scenario = _scenario()
    ctx = build_context(scenario)
    assert _should_prebake(ctx, 8, 2) and not _should_prebake(ctx, 3, 2) and not _should_prebake(ctx, 8, 1)
    summary = render_range(scenario, tmp_path / "out", count=8, workers=2)
    assert summary.rendered == 8
    assert len(list(cache.rglob("*.npz"))) == 2  # the workers baked both subjects into the cache
    # Pixels as from an in-process render without the cache (JPEG-encoded the same way).
    from PIL import Image

    monkeypatch.setenv(ENV, "off")
    ref = _render(8)
    for i in range(8):
        img = np.asarray(Image.open(tmp_path / "out" / SAMPLES_DIR / f"{i:09d}.jpg"))
        assert np.abs(img.astype(int) - _jpeg_roundtrip(ref[i]).astype(int)).max() == 0


def _jpeg_roundtrip(a: np.ndarray, quality: int = 90) -> np.ndarray:
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(a).save(buf, format="JPEG", quality=quality)
    return np.asarray(Image.open(io.BytesIO(buf.getvalue())))
