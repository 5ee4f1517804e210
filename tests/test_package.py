"""Packaging render folders into datasets: round trips (folder and real S3), atomicity, resume, faults."""

from __future__ import annotations

import json
import os
import signal
import tarfile
from pathlib import Path

import pytest
import torch
from dataset_fixtures import make_render_dir

from drsynth.data import open_dataset, read_manifest
from drsynth.errors import DatasetError, StoreError
from drsynth.local_store import start_local_store
from drsynth.package import package
from drsynth.shards import MANIFEST_NAME
from drsynth.storage import RetryPolicy, open_store

FAST_RETRY = RetryPolicy(attempts=3, base_delay_s=0.05, max_delay_s=0.1)


def _read_all(uri: str, cache: Path, **kw) -> list[dict]:
    return list(open_dataset(uri, cache_dir=cache, retry=FAST_RETRY, **kw))


def test_package_to_folder_roundtrip(tmp_path: Path) -> None:
    src = make_render_dir(tmp_path / "render", 20, classes=("cat", "dog", "car"), unfinished=2)
    result = package(src, tmp_path / "ds", shard_size=8, progress=False)
    m = result.manifest
    assert result.shards_uploaded == 3 and result.shards_resumed == 0
    assert result.unfinished == ("000000020", "000000021")
    assert m.num_samples == 20 and m.classes == ["cat", "dog", "car"]
    assert m.counts == {"cat": 7, "dog": 7, "car": 6}
    assert m.image_size == 32 and m.seed == 0 and m.scenario_name == "tiny" and m.scenario["name"] == "tiny"
    assert [s.count for s in m.shards] == [8, 8, 4]
    assert [s.name for s in m.shards] == [f"shards/data-00000{i}.tar" for i in range(3)]
    assert m.shards[1].first_key == "000000008" and m.shards[1].last_key == "000000015"
    assert m.source["kind"] == "render" and m.source["unfinished_samples_left_out"] == 2
    assert m.drsynth_version and m.created.endswith("Z")
    assert sorted(m.card) == ["README.md", "card/contact_sheet.png", "card/parameters.png"]
    readme = (tmp_path / "ds" / "README.md").read_text()
    assert "| cat | 0 | 7 |" in readme and "card/parameters.png" in readme
    # WebDataset layout: <key>.jpg + <key>.json per sample, in key order
    with tarfile.open(tmp_path / "ds" / m.shards[0].name) as t:
        names = t.getnames()
    assert names[:4] == ["000000000.jpg", "000000000.json", "000000001.jpg", "000000001.json"]
    # manifest is valid JSON on disk, written by the pydantic model
    assert json.loads((tmp_path / "ds" / MANIFEST_NAME).read_text())["format"] == "drsynth-dataset/1"

    samples = _read_all(result.uri, tmp_path / "cache")
    assert [s["__key__"] for s in samples] == [f"{i:09d}" for i in range(20)]
    first = samples[0]
    assert first["image"].mode == "RGB" and first["image"].size == (32, 32)
    assert first["label"] == 0 and first["class"] == "cat" and first["meta"]["camera"]["distance_m"] > 0
    original = json.loads((src / "samples" / "000000005.json").read_text())
    assert samples[5]["meta"] == original


def test_shards_are_reproducible(tmp_path: Path) -> None:
    src = make_render_dir(tmp_path / "render", 10)
    a = package(src, tmp_path / "a", shard_size=4, progress=False, card=False).manifest
    b = package(src, tmp_path / "b", shard_size=4, progress=False, card=False).manifest
    assert [s.sha256 for s in a.shards] == [s.sha256 for s in b.shards]


def test_committed_dataset_is_immutable_unless_overwrite(tmp_path: Path) -> None:
    src = make_render_dir(tmp_path / "render", 10)
    dest = tmp_path / "ds"
    package(src, dest, shard_size=4, progress=False, card=False)
    with pytest.raises(DatasetError, match="already holds a committed dataset.*--overwrite"):
        package(src, dest, shard_size=4, progress=False, card=False)
    src2 = make_render_dir(tmp_path / "render2", 6, seed=1)
    result = package(src2, dest, shard_size=4, progress=False, card=False, overwrite=True)
    assert result.manifest.num_samples == 6 and result.manifest.seed == 1
    # the third shard of the old dataset is gone, the two others were replaced
    assert sorted(p.name for p in (dest / "shards").iterdir()) == ["data-000000.tar", "data-000001.tar"]
    assert len(_read_all(result.uri, tmp_path / "cache")) == 6


def test_resume_skips_good_shards_and_replaces_bad_ones(tmp_path: Path) -> None:
    src = make_render_dir(tmp_path / "render", 12)
    dest = tmp_path / "ds"
    first = package(src, dest, shard_size=4, progress=False, card=False)
    # simulate an interrupted run: no manifest, one shard damaged, plus a stale shard from other settings
    (dest / MANIFEST_NAME).unlink()
    with pytest.raises(DatasetError, match="no dataset.json: packaging did not finish.*resume"):
        read_manifest(first.uri)
    bad = dest / first.manifest.shards[1].name
    bad.write_bytes(bad.read_bytes()[:-100])
    (dest / "shards" / "data-000009.tar").write_bytes(b"stale")
    again = package(src, dest, shard_size=4, progress=False, card=False)
    assert (again.shards_resumed, again.shards_uploaded) == (2, 1)
    assert again.manifest.shards == first.manifest.shards
    assert not (dest / "shards" / "data-000009.tar").exists()
    assert len(_read_all(again.uri, tmp_path / "cache")) == 12


def test_corrupt_shard_in_folder_is_refused(tmp_path: Path) -> None:
    src = make_render_dir(tmp_path / "render", 8)
    result = package(src, tmp_path / "ds", shard_size=4, progress=False, card=False)
    shard = tmp_path / "ds" / result.manifest.shards[1].name
    data = bytearray(shard.read_bytes())
    data[600] ^= 0xFF  # inside the first image
    shard.write_bytes(bytes(data))
    with pytest.raises(DatasetError, match=r"shard .*data-000001\.tar is corrupt.*--overwrite"):
        _read_all(result.uri, tmp_path / "cache")


def test_several_render_ranges_package_together(tmp_path: Path) -> None:
    a = make_render_dir(tmp_path / "r0", 5, start=0)
    b = make_render_dir(tmp_path / "r1", 5, start=5)
    result = package([a, b], tmp_path / "ds", shard_size=4, progress=False, card=False)
    assert result.manifest.num_samples == 10 and len(result.manifest.source["paths"]) == 2
    other = make_render_dir(tmp_path / "r2", 3, start=20, seed=7)
    with pytest.raises(DatasetError, match="different (scenario|seed)"):
        package([a, other], tmp_path / "ds2", progress=False, card=False)
    dup = make_render_dir(tmp_path / "r3", 3, start=4)
    with pytest.raises(DatasetError, match="sample key 00000000[4-6] is present in both"):
        package([a, dup], tmp_path / "ds3", progress=False, card=False)


def test_bad_render_folders_give_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="render.json is missing.*import-images"):
        package(tmp_path, tmp_path / "ds", progress=False)
    src = make_render_dir(tmp_path / "render", 4)
    rec = src / "samples" / "000000003.json"
    record = json.loads(rec.read_text())
    rec.write_text(json.dumps({**record, "label": 0}))  # class dog has label 1
    with pytest.raises(DatasetError, match=r"000000003\.json: label 0 disagrees with class 'dog'"):
        package(src, tmp_path / "ds", progress=False, card=False)
    assert not (tmp_path / "ds" / MANIFEST_NAME).exists()
    rec.write_text(json.dumps({**record, "class": "horse"}))
    with pytest.raises(DatasetError, match=r"'class' must be one of \['cat', 'dog'\].*got 'horse'"):
        package(src, tmp_path / "ds", progress=False, card=False)
    (src / "samples" / "000000003.jpg").unlink()
    with pytest.raises(DatasetError, match="has no image 000000003.jpg"):
        package(src, tmp_path / "ds", progress=False, card=False)


def test_s3_roundtrip_and_cache(s3_uri: str, tmp_path: Path) -> None:
    src = make_render_dir(tmp_path / "render", 16)
    result = package(src, s3_uri, shard_size=6, progress=False, retry=FAST_RETRY)
    assert result.uri == s3_uri and result.shards_uploaded == 3
    store = open_store(s3_uri)
    keys = {o.key for o in store.list()}
    assert {
        MANIFEST_NAME,
        "index.tsv",
        "README.md",
        "card/contact_sheet.png",
        "shards/data-000002.tar",
    } <= keys
    cache = tmp_path / "cache"
    ds = open_dataset(s3_uri, cache_dir=cache, shuffle=True, seed=3, retry=FAST_RETRY)
    assert sorted(s["__key__"] for s in ds) == [f"{i:09d}" for i in range(16)]
    assert len(list((cache / "objects").glob("*.tar"))) == 3
    # DataLoader workers (forked after the manifest was read) each use their own connections
    loader = torch.utils.data.DataLoader(
        open_dataset(
            s3_uri, cache_dir=tmp_path / "cache2", retry=FAST_RETRY, transform=lambda s: s["__key__"]
        ),
        batch_size=None,
        num_workers=2,
    )
    assert sorted(loader) == [f"{i:09d}" for i in range(16)]
    # a second epoch reads the local cache: it works even with the shards gone from the server
    for shard in result.manifest.shards:
        store.delete(shard.name)
    ds.set_epoch(1)
    assert len(list(ds)) == 16


def test_s3_corrupt_shard_is_detected(s3_uri: str, tmp_path: Path) -> None:
    src = make_render_dir(tmp_path / "render", 8)
    result = package(src, s3_uri, shard_size=4, progress=False, card=False, retry=FAST_RETRY)
    store = open_store(s3_uri)
    name = result.manifest.shards[0].name
    data = bytearray(store.get_bytes(name))
    data[700] ^= 0x55
    store.put_bytes(name, bytes(data))
    cache = tmp_path / "cache"
    with pytest.raises(DatasetError, match=r"data-000000\.tar is corrupt: its sha256 is"):
        _read_all(s3_uri, cache)
    assert not list((cache / "objects").glob("*.tar")) or all(
        p.name != f"{result.manifest.shards[0].sha256}.tar" for p in (cache / "objects").glob("*.tar")
    ), "a bad download never enters the cache"


@pytest.mark.slow
def test_server_killed_during_upload_commits_nothing_then_resumes(
    s3_server_factory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from s3_server import use_store_env

    store_dir = tmp_path / "private-store"
    server = s3_server_factory(store_dir)
    use_store_env(monkeypatch, server)
    uri = "s3://killed/ds"
    src = make_render_dir(tmp_path / "render", 24)
    done: list[str] = []

    def kill_after_first(entry, uploaded) -> None:
        done.append(entry.name)
        if len(done) == 1:
            os.kill(server.pid, signal.SIGKILL)

    with pytest.raises(StoreError) as e:
        package(
            src,
            uri,
            shard_size=4,
            workers=1,
            progress=False,
            card=False,
            retry=FAST_RETRY,
            on_shard_done=kill_after_first,
        )
    msg = str(e.value)
    assert server.endpoint_url in msg and "after 3 attempts" in msg and "resumes" in msg
    assert done == ["shards/data-000000.tar"]

    # same folder, same port: the data survived the crash, and no manifest was written
    restarted = start_local_store(store_dir, port=server.s3_port)
    assert restarted.pid != server.pid
    with pytest.raises(DatasetError, match="not committed.*resume"):
        read_manifest(uri)
    result = package(src, uri, shard_size=4, workers=1, progress=False, card=False, retry=FAST_RETRY)
    assert result.shards_resumed >= 1 and result.shards_uploaded + result.shards_resumed == 6
    assert len(_read_all(uri, tmp_path / "cache")) == 24


def test_card_panels_come_from_the_records() -> None:
    from drsynth.dataset_card import _panels, flatten_record

    record = {
        "key": "000000001",
        "seed": 3,
        "class": "cat",
        "subject": {"id": "cat/x", "class": "cat", "breed": "manx"},
        "camera": {"distance_m": 2.5, "position": [1.0, 2.0, 3.0]},
        "lights": [{"intensity": 1.5, "cast_shadow": True}, {"intensity": 3.0, "cast_shadow": False}],
        "sky": {"kind": "hdr", "noise_seed": 12345},
        "occluders": [],
    }
    flat = flatten_record(record)
    assert flat["lights.count"] == [2.0] and flat["lights[].intensity"] == [1.5, 3.0]
    assert flat["lights[].cast_shadow"] == ["true", "false"] and flat["occluders.count"] == [0.0]
    assert "key" not in flat and "seed" not in flat and "camera.position" not in flat
    other = flatten_record(
        {**record, "class": "dog", "subject": {"breed": "boxer"}, "camera": {"distance_m": 4.0}}
    )
    names = [name for name, _ in _panels([flat, other])]
    assert names[:3] == ["class", "subject.breed", "camera.distance_m"]
    assert "sky.noise_seed" not in names and "subject.id" not in names and "subject.class" not in names
    assert "sky.kind" not in names, "a field that never varies says nothing"


@pytest.mark.slow
def test_short_outage_is_ridden_out_by_retries(
    s3_server_factory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The server dies after the first shard and is back a moment later: the backoff carries the upload."""
    import threading

    from s3_server import use_store_env

    store_dir = tmp_path / "flaky-store"
    server = s3_server_factory(store_dir)
    use_store_env(monkeypatch, server)
    src = make_render_dir(tmp_path / "render", 16)
    restarted = []

    def outage(entry, uploaded) -> None:
        if not restarted:
            os.kill(server.pid, signal.SIGKILL)
            restart = threading.Timer(
                0.5, lambda: restarted.append(start_local_store(store_dir, port=server.s3_port))
            )
            restart.start()
            restarted.append(restart)

    patient = RetryPolicy(attempts=10, base_delay_s=0.25, max_delay_s=2.0)
    result = package(
        src,
        "s3://flaky/ds",
        shard_size=4,
        workers=1,
        progress=False,
        card=False,
        retry=patient,
        on_shard_done=outage,
    )
    restarted[0].join()
    assert len(restarted) == 2 and restarted[1].pid != server.pid
    assert result.manifest.num_samples == 16
    assert len(_read_all("s3://flaky/ds", tmp_path / "cache")) == 16
