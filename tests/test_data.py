"""The dataset reader: shuffling, class filter, worker splitting, train/val split, cache, image folders."""

from __future__ import annotations

import io
from collections import Counter
from pathlib import Path

import pytest
import torch
from dataset_fixtures import make_render_dir
from PIL import Image

from drsynth.data import (
    ImageFolderDataset,
    ShardedDataset,
    in_split,
    open_dataset,
    open_domain,
    open_image_folder,
    read_manifest,
)
from drsynth.errors import DatasetError
from drsynth.package import package


@pytest.fixture
def dataset(tmp_path: Path) -> str:
    """60 samples, 3 classes, 6 shards of 10."""
    src = make_render_dir(tmp_path / "render", 60, classes=("cat", "dog", "car"))
    return package(src, tmp_path / "ds", shard_size=10, progress=False, card=False).uri


def keys(ds) -> list[str]:
    return [s["__key__"] for s in ds]


def test_open_dataset_contract(dataset: str, tmp_path: Path) -> None:
    ds = open_dataset(dataset, cache_dir=tmp_path / "c")
    assert isinstance(ds, torch.utils.data.IterableDataset) and isinstance(ds, ShardedDataset)
    assert ds.classes == ["cat", "dog", "car"] and len(ds) == 60
    sample = next(iter(ds))
    assert set(sample) == {"__key__", "image", "label", "class", "meta"}
    assert isinstance(sample["image"], Image.Image) and sample["image"].mode == "RGB"
    assert sample["meta"]["key"] == sample["__key__"]
    assert keys(ds) == sorted(keys(ds)), "unshuffled order is key order"
    assert all(s["class"] == ds.classes[s["label"]] == s["meta"]["class"] for s in ds)


def test_shuffle_is_seeded_by_seed_and_epoch(dataset: str, tmp_path: Path) -> None:
    def order(seed: int, epoch: int) -> list[str]:
        ds = open_dataset(dataset, cache_dir=tmp_path / "c", shuffle=True, seed=seed, buffer_size=8)
        ds.set_epoch(epoch)
        return keys(ds)

    a = order(0, 0)
    assert sorted(a) == [f"{i:09d}" for i in range(60)]
    assert a == order(0, 0), "same seed and epoch: same order"
    assert a != order(0, 1) and a != order(1, 0)
    assert a != sorted(a)
    # shards are shuffled too: the first ten samples do not all come from the first shard
    assert {int(k) // 10 for k in a[:10]} != {0}


def test_class_filter_remaps_labels(dataset: str, tmp_path: Path) -> None:
    ds = open_dataset(dataset, cache_dir=tmp_path / "c", classes=["car", "cat"])
    assert ds.classes == ["car", "cat"] and len(ds) == 40
    got = list(ds)
    assert len(got) == 40 and {s["class"] for s in got} == {"car", "cat"}
    assert all(s["label"] == (0 if s["class"] == "car" else 1) for s in got)
    with pytest.raises(DatasetError, match=r"unknown: \['horse'\].*it has \['cat', 'dog', 'car'\]"):
        open_dataset(dataset, classes=["cat", "horse"])
    with pytest.raises(DatasetError, match="distinct"):
        open_dataset(dataset, classes=["cat", "cat"])


def test_train_val_split_is_deterministic_and_disjoint(dataset: str, tmp_path: Path) -> None:
    kw = {"cache_dir": tmp_path / "c", "val_fraction": 0.25}
    train = set(keys(open_dataset(dataset, split="train", **kw)))
    val = set(keys(open_dataset(dataset, split="val", **kw)))
    assert not train & val and len(train | val) == 60
    assert 5 <= len(val) <= 25, len(val)  # ~15 expected
    assert len(open_dataset(dataset, split="val", **kw)) == len(val)
    # a function of the key only: independent of shuffling and class filtering
    shuffled_val = set(keys(open_dataset(dataset, split="val", shuffle=True, seed=5, **kw)))
    assert shuffled_val == val
    cat_val = set(keys(open_dataset(dataset, split="val", classes=["cat"], **kw)))
    assert cat_val == {k for k in val if int(k) % 3 == 0}
    assert all(in_split(k, "val", 0.25) for k in val)
    with pytest.raises(DatasetError, match="split must be"):
        open_dataset(dataset, split="test")


# 6 shards of 10 split by shard; 2 shards of 40 split by shard for 2 workers and by sample for 3.
@pytest.mark.parametrize("shard_size", [10, 40])
@pytest.mark.parametrize("workers", [2, 3])
@pytest.mark.filterwarnings("ignore:This DataLoader will create")
def test_dataloader_workers_split_without_duplicates(tmp_path: Path, shard_size: int, workers: int) -> None:
    src = make_render_dir(tmp_path / "render", 60, classes=("cat", "dog", "car"))
    uri = package(src, tmp_path / "ds", shard_size=shard_size, progress=False, card=False).uri

    def to_key(sample: dict) -> str:
        return sample["__key__"]

    ds = open_dataset(uri, cache_dir=tmp_path / "c", shuffle=True, seed=1, transform=to_key)
    loader = torch.utils.data.DataLoader(ds, batch_size=None, num_workers=workers)
    got = list(loader)
    assert len(got) == len(set(got)) == 60


def test_transform_runs_per_sample(dataset: str, tmp_path: Path) -> None:
    ds = open_dataset(dataset, cache_dir=tmp_path / "c", transform=lambda s: (s["image"].size, s["label"]))
    assert Counter(label for _, label in ds) == {0: 20, 1: 20, 2: 20}


def test_missing_manifest_and_index_tamper_are_refused(dataset: str, tmp_path: Path) -> None:
    root = Path(dataset.removeprefix("file://"))
    (root / "index.tsv").write_text((root / "index.tsv").read_text().replace("\t0\t", "\t1\t", 1))
    with pytest.raises(DatasetError, match="index.tsv has sha256 .* modified after packaging"):
        open_dataset(dataset)
    (root / "dataset.json").unlink()
    with pytest.raises(DatasetError, match="no dataset.json: packaging did not finish"):
        open_dataset(dataset)
    with pytest.raises(DatasetError, match="no dataset at .*dataset.json not found"):
        read_manifest(tmp_path / "nothing-here")


def test_corrupt_cached_copy_is_not_trusted_blindly(dataset: str, tmp_path: Path) -> None:
    """A local dataset's shards are verified in place once; a later change to the file is detected."""
    cache = tmp_path / "c"
    assert len(list(open_dataset(dataset, cache_dir=cache))) == 60
    shard = Path(dataset.removeprefix("file://")) / "shards" / "data-000003.tar"
    data = bytearray(shard.read_bytes())
    data[2000] ^= 1
    shard.write_bytes(bytes(data))
    with pytest.raises(DatasetError, match="data-000003.tar is corrupt"):
        list(open_dataset(dataset, cache_dir=cache))


def _write_image_folder(root: Path) -> None:
    for cls, colour in (("cat", (200, 30, 30)), ("dog", (30, 30, 200))):
        (root / cls).mkdir(parents=True)
        for i in range(3):
            Image.new("RGB", (20 + i, 16), colour).save(root / cls / f"{i}.png")
    (root / "dog" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    (root / "dog" / "notes.txt").write_text("ignored")


def test_image_folder_and_open_domain(tmp_path: Path, dataset: str, caplog: pytest.LogCaptureFixture) -> None:
    root = tmp_path / "photos"
    _write_image_folder(root)
    ds = open_image_folder(root)
    assert isinstance(ds, ImageFolderDataset) and ds.classes == ["cat", "dog"] and len(ds) == 7
    got = list(ds)
    assert len(got) == 6 and "broken.jpg" in caplog.text  # the unreadable file is skipped with a warning
    assert {s["class"] for s in got} == {"cat", "dog"} and all(s["image"].mode == "RGB" for s in got)
    assert open_image_folder(root, classes=["dog"]).classes == ["dog"]
    assert isinstance(open_domain(root), ImageFolderDataset)
    assert isinstance(open_domain(dataset, cache_dir=tmp_path / "c"), ShardedDataset)
    assert isinstance(open_domain(Path(dataset.removeprefix("file://"))), ShardedDataset)
    with pytest.raises(DatasetError, match="not a folder"):
        open_image_folder(tmp_path / "missing")


def test_imported_photos_read_like_renders(tmp_path: Path) -> None:
    from drsynth.import_images import import_images

    root = tmp_path / "photos"
    _write_image_folder(root)
    result = import_images(root, tmp_path / "ds", progress=False, card=False)
    ds = open_dataset(result.package.uri, cache_dir=tmp_path / "c")
    got = list(ds)
    assert len(got) == 6 and ds.classes == ["cat", "dog"]
    red = next(s for s in got if s["class"] == "cat")["image"].getpixel((5, 5))
    assert red[0] > 150 and red[2] < 80
    buf = io.BytesIO()
    got[0]["image"].save(buf, format="PNG")  # decoded, usable PIL images
