"""Reading datasets: a PyTorch-ready stream over a packaged dataset, or over a plain image folder.

    ds = open_dataset("s3://bucket/cats-dogs", split="train", classes=["cat", "dog"], shuffle=True, seed=0)
    ds.classes, len(ds)           # label order, number of samples this split/filter yields per epoch
    ds.set_epoch(epoch)           # reshuffles shards and samples for the next epoch (seeded by seed, epoch)
    for sample in ds: ...         # {"__key__", "image": PIL RGB, "label", "class", "meta": record dict}

How it reads:
- The manifest (`dataset.json`) must exist: a dataset without one is not committed and is refused.
- Shards are fetched once into a local cache (`cache_dir`, default `$DRSYNTH_CACHE` or
  `~/.cache/drsynth/datasets`), named by their sha256 and verified against the manifest on download; a later
  epoch or another DataLoader worker reads the cached copy. Shards of a local (file) dataset are verified in
  place once and read directly.
- Shuffling permutes the shard order with (seed, epoch) and then mixes samples through a buffer seeded by
  (seed, epoch, worker).
- DataLoader workers (and torch.distributed ranks) split the work without duplicates: by shard when there
  are at least as many shards as workers, else by sample position.
- The train/val split is a function of the sample key only (a hash), so it is the same on every run,
  machine and worker count, and independent of the class filter.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import io
import json
import logging
import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch.utils.data
from PIL import Image

from drsynth.errors import DatasetError
from drsynth.import_images import list_image_folder
from drsynth.shards import (
    INDEX_NAME,
    MANIFEST_NAME,
    DatasetManifest,
    IndexRow,
    ShardEntry,
    iter_shard,
    parse_index,
)
from drsynth.storage import DEFAULT_RETRY, FileStore, RetryPolicy, Store, open_store, sha256_file

log = logging.getLogger(__name__)

Split = Literal["all", "train", "val"]
Transform = Callable[[dict[str, Any]], Any]


def default_cache_dir() -> Path:
    env = os.environ.get("DRSYNTH_CACHE", "").strip()
    return Path(env).expanduser() if env else Path.home() / ".cache" / "drsynth" / "datasets"


def val_score(key: str) -> float:
    """A uniform number in [0, 1) from the sample key alone; keys scoring below val_fraction are validation."""
    digest = hashlib.blake2b(key.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def in_split(key: str, split: Split, val_fraction: float) -> bool:
    if split == "all":
        return True
    is_val = val_score(key) < val_fraction
    return is_val if split == "val" else not is_val


# ------------------------------------------------------------------------------------------------ manifest


def read_manifest(uri: str | os.PathLike[str], *, store: Store | None = None) -> DatasetManifest:
    """The committed manifest of the dataset at `uri`; DatasetError if there is none."""
    store = store or open_store(uri)
    data = store.get_bytes(MANIFEST_NAME)
    if data is None:
        present = store.list("shards/")
        if present:
            raise DatasetError(
                f"{store.describe()} has {len(present)} shard object(s) but no {MANIFEST_NAME}: packaging did not "
                "finish, so the dataset is not committed. Re-run the same `drsynth package`/`import-images` "
                "command to resume it."
            )
        raise DatasetError(
            f"no dataset at {store.describe()}: {MANIFEST_NAME} not found. Check the URI, or create one with "
            "`drsynth package --src RENDER_DIR --dest URI` or `drsynth import-images`."
        )
    return DatasetManifest.from_json(data, store.child_uri(MANIFEST_NAME))


def read_index(store: Store, manifest: DatasetManifest) -> list[IndexRow]:
    where = store.child_uri(INDEX_NAME)
    data = store.get_bytes(INDEX_NAME)
    if data is None:
        raise DatasetError(f"{where} is missing although {MANIFEST_NAME} lists it; the dataset is damaged")
    digest = hashlib.sha256(data).hexdigest()
    if digest != manifest.index.sha256:
        raise DatasetError(
            f"{where} has sha256 {digest[:16]}..., the manifest expects {manifest.index.sha256[:16]}...: "
            "the dataset was modified after packaging. Re-package it with --overwrite."
        )
    rows = parse_index(data, where)
    if len(rows) != manifest.num_samples:
        raise DatasetError(f"{where} lists {len(rows)} samples, the manifest says {manifest.num_samples}")
    return rows


# --------------------------------------------------------------------------------------------- shard cache


class ShardCache:
    """Local copies of shards, verified against their manifest sha256 before first use."""

    def __init__(self, root: Path):
        self.root = root

    def _mkdir(self, path: Path) -> None:
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise DatasetError(
                f"cannot create the dataset cache folder {path}: {e.strerror or e}. "
                "Set DRSYNTH_CACHE (or pass cache_dir) to a writable folder."
            ) from e

    def fetch(self, store: Store, shard: ShardEntry) -> Path:
        """A verified local file with the shard's bytes (downloading it if needed)."""
        local = store.local_path(shard.name)
        if local is not None:
            return self._verify_in_place(store, shard, local)
        objects = self.root / "objects"
        self._mkdir(objects)
        path = objects / f"{shard.sha256}.tar"
        if path.is_file():
            return path
        # Several DataLoader workers may want the same shard: one downloads, the others wait for it.
        with open(objects / f"{shard.sha256}.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if path.is_file():
                return path
            tmp = objects / f".{shard.sha256}.download"
            digest = store.download(shard.name, tmp)
            if digest != shard.sha256:
                tmp.unlink(missing_ok=True)
                raise _checksum_error(store, shard, digest)
            os.replace(tmp, path)
        log.info("fetched %s (%.1f MB) into %s", store.child_uri(shard.name), shard.size / 1e6, objects)
        return path

    def _verify_in_place(self, store: Store, shard: ShardEntry, local: Path) -> Path:
        st = local.stat()
        stamp = hashlib.sha256(f"{local.resolve()}|{st.st_size}|{st.st_mtime_ns}".encode()).hexdigest()
        marker = self.root / "verified" / stamp
        with contextlib.suppress(OSError):
            if marker.read_text() == shard.sha256:
                return local
        digest = sha256_file(local)
        if digest != shard.sha256:
            raise _checksum_error(store, shard, digest)
        self._mkdir(marker.parent)
        from drsynth.fsutil import atomic_write_text

        atomic_write_text(marker, shard.sha256)
        return local


def _checksum_error(store: Store, shard: ShardEntry, digest: str) -> DatasetError:
    return DatasetError(
        f"shard {store.child_uri(shard.name)} is corrupt: its sha256 is {digest[:16]}..., the manifest expects "
        f"{shard.sha256[:16]}.... Re-package the dataset with --overwrite (or restore the shard)."
    )


# ---------------------------------------------------------------------------------------------- the stream


def _worker_slot() -> tuple[int, int]:
    """(this reader's index, number of readers) across DataLoader workers and distributed ranks."""
    info = torch.utils.data.get_worker_info()
    worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
    rank, world = 0, 1
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        rank, world = torch.distributed.get_rank(), torch.distributed.get_world_size()
    elif "RANK" in os.environ and "WORLD_SIZE" in os.environ:
        # a DataLoader worker started by spawn/forkserver does not inherit the process group, only the
        # environment torchrun set (WebDataset's pytorch_worker_info reads it the same way)
        rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    return rank * workers + worker, world * workers


def shuffle_buffer(items: Iterator[Any], size: int, rng: np.random.Generator) -> Iterator[Any]:
    """Yield `items` in a random order drawn from a sliding buffer of `size` (WebDataset's `shuffle`)."""
    buf: list[Any] = []
    for item in items:
        if len(buf) < size:
            buf.append(item)
            continue
        i = int(rng.integers(len(buf)))
        buf[i], item = item, buf[i]
        yield item
    rng.shuffle(buf)  # type: ignore[arg-type]
    yield from buf


class ShardedDataset(torch.utils.data.IterableDataset):
    """An epoch-shuffled, worker-split stream over one committed dataset (made by `open_dataset`)."""

    def __init__(
        self,
        *,
        uri: str,
        store: Store,
        manifest: DatasetManifest,
        rows: Sequence[IndexRow],
        classes: Sequence[str],
        label_map: dict[int, int],
        shuffle: bool,
        seed: int,
        buffer_size: int,
        cache_dir: Path,
        transform: Transform | None,
    ):
        self.uri = uri
        self.store = store
        self.manifest = manifest
        self.rows = list(rows)
        self._classes = list(classes)
        self.label_map = dict(label_map)
        self.shuffle = shuffle
        self.seed = seed
        self.buffer_size = buffer_size
        self.cache_dir = cache_dir
        self.transform = transform
        self.epoch = 0

    @property
    def classes(self) -> list[str]:
        return list(self._classes)

    def __len__(self) -> int:
        return len(self.rows)

    def set_epoch(self, epoch: int) -> None:
        """Choose the shuffle of the next iteration; set it before each epoch (DataLoader copies the dataset)."""
        self.epoch = int(epoch)

    def __repr__(self) -> str:
        return (
            f"ShardedDataset({self.uri!r}, {len(self)} samples, classes={self._classes}, shuffle={self.shuffle}, "
            f"seed={self.seed}, epoch={self.epoch})"
        )

    def _plan(self, reader: int, readers: int) -> list[tuple[int, set[str]]]:
        """The shards this reader opens, in order, each with the keys it yields from it."""
        by_shard: dict[int, list[str]] = {}
        for r in self.rows:
            by_shard.setdefault(r.shard, []).append(r.key)
        order = sorted(by_shard)
        if self.shuffle:
            rng = np.random.default_rng(np.random.SeedSequence([self.seed, self.epoch]))
            order = [order[i] for i in rng.permutation(len(order))]
        if len(order) >= readers:
            return [(s, set(by_shard[s])) for s in order[reader::readers]]
        # Fewer shards than readers: every reader opens every shard and keeps every readers-th sample.
        plan: list[tuple[int, set[str]]] = []
        position = 0
        for s in order:
            keys = sorted(by_shard[s])
            mine = {k for i, k in enumerate(keys, start=position) if i % readers == reader}
            position += len(keys)
            if mine:
                plan.append((s, mine))
        return plan

    def _raw_samples(self, plan: list[tuple[int, set[str]]]) -> Iterator[dict[str, Any]]:
        cache = ShardCache(self.cache_dir)
        for shard_no, keys in plan:
            shard = self.manifest.shards[shard_no]
            path = cache.fetch(self.store, shard)
            yield from iter_shard(path, keys=keys, where=self.store.child_uri(shard.name))

    def _decode(self, raw: dict[str, Any], labels: dict[str, int]) -> dict[str, Any]:
        key = raw["__key__"]
        where = f"sample {key} of {raw.get('__url__', self.uri)}"
        if "jpg" not in raw or "json" not in raw:
            raise DatasetError(f"{where} lacks its .jpg or .json member (has {sorted(raw)})")
        try:
            with Image.open(io.BytesIO(raw["jpg"])) as im:
                image = im.convert("RGB")
            meta = json.loads(raw["json"])
        except (OSError, ValueError) as e:
            raise DatasetError(f"{where} cannot be decoded: {e}") from e
        label = labels[key]
        return {"__key__": key, "image": image, "label": label, "class": self._classes[label], "meta": meta}

    def __iter__(self) -> Iterator[Any]:
        reader, readers = _worker_slot()
        labels = {r.key: self.label_map[r.label] for r in self.rows}
        samples: Iterator[dict[str, Any]] = self._raw_samples(self._plan(reader, readers))
        if self.shuffle and self.buffer_size > 1:
            rng = np.random.default_rng(np.random.SeedSequence([self.seed, self.epoch, reader, 1]))
            samples = shuffle_buffer(samples, self.buffer_size, rng)
        for raw in samples:
            sample = self._decode(raw, labels)
            yield self.transform(sample) if self.transform is not None else sample


def _resolve_classes(available: Sequence[str], classes: Sequence[str] | None, where: str) -> list[str]:
    if classes is None:
        return list(available)
    chosen = list(classes)
    unknown = [c for c in chosen if c not in available]
    if unknown or not chosen or len(set(chosen)) != len(chosen):
        raise DatasetError(
            f"classes={chosen} is not a non-empty list of distinct classes of {where}"
            + (f" (unknown: {unknown})" if unknown else "")
            + f"; it has {list(available)}"
        )
    return chosen


def _check_split(split: str, val_fraction: float) -> None:
    if split not in ("all", "train", "val"):
        raise DatasetError(f"split must be 'all', 'train' or 'val', got {split!r}")
    if not 0.0 <= val_fraction < 1.0:
        raise DatasetError(f"val_fraction must be in [0, 1), got {val_fraction}")


def open_dataset(
    uri: str | os.PathLike[str],
    *,
    split: Split = "all",
    val_fraction: float = 0.1,
    classes: Sequence[str] | None = None,
    shuffle: bool = False,
    seed: int = 0,
    cache_dir: str | os.PathLike[str] | None = None,
    buffer_size: int = 1000,
    transform: Transform | None = None,
    retry: RetryPolicy = DEFAULT_RETRY,
) -> ShardedDataset:
    """A torch IterableDataset over the committed dataset at `uri` (s3://, file:// or a folder).

    `classes` keeps only those classes and numbers labels in its order; `split` with `val_fraction` picks the
    deterministic train or validation part; `transform` (applied in the worker) maps each sample dict.
    """
    _check_split(split, val_fraction)
    store = open_store(uri, retry=retry)
    manifest = read_manifest(uri, store=store)
    chosen = _resolve_classes(manifest.classes, classes, store.uri)
    label_map = {manifest.classes.index(c): i for i, c in enumerate(chosen)}
    rows = [
        r
        for r in read_index(store, manifest)
        if r.label in label_map and in_split(r.key, split, val_fraction)
    ]
    bad = [r for r in rows if not 0 <= r.shard < len(manifest.shards)]
    if bad:
        raise DatasetError(
            f"{store.child_uri(INDEX_NAME)} refers to shard {bad[0].shard}, which is not listed"
        )
    return ShardedDataset(
        uri=store.uri,
        store=store,
        manifest=manifest,
        rows=rows,
        classes=chosen,
        label_map=label_map,
        shuffle=shuffle,
        seed=seed,
        buffer_size=buffer_size,
        cache_dir=Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir(),
        transform=transform,
    )


def download_dataset(
    uri: str | os.PathLike[str],
    *,
    cache_dir: str | os.PathLike[str] | None = None,
    progress: bool = True,
    retry: RetryPolicy = DEFAULT_RETRY,
) -> DatasetManifest:
    """Fetch and verify every shard into the cache (with a progress bar); raises on the first bad shard."""
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    store = open_store(uri, retry=retry)
    manifest = read_manifest(uri, store=store)
    read_index(store, manifest)
    cache = ShardCache(Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir())
    total = sum(s.size for s in manifest.shards)
    with Progress(
        TextColumn("[bold]fetch[/] {task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        disable=not progress,
        transient=False,
    ) as bar:
        task = bar.add_task(manifest.name, total=total)
        for shard in manifest.shards:
            cache.fetch(store, shard)
            bar.advance(task, shard.size)
    return manifest


# ------------------------------------------------------------------------------------------- image folders


class ImageFolderDataset(torch.utils.data.IterableDataset):
    """`DIR/<class>/*.{jpg,png,...}` as the same sample dicts; unreadable images are skipped with a warning."""

    def __init__(
        self,
        *,
        root: Path,
        files: Sequence[tuple[str, int]],
        classes: Sequence[str],
        shuffle: bool,
        seed: int,
        transform: Transform | None,
    ):
        self.root = root
        self.files = list(files)  # (path relative to root, label)
        self._classes = list(classes)
        self.shuffle = shuffle
        self.seed = seed
        self.transform = transform
        self.epoch = 0

    @property
    def classes(self) -> list[str]:
        return list(self._classes)

    def __len__(self) -> int:
        return len(self.files)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __repr__(self) -> str:
        return f"ImageFolderDataset({str(self.root)!r}, {len(self)} images, classes={self._classes})"

    def __iter__(self) -> Iterator[Any]:
        reader, readers = _worker_slot()
        order = list(range(len(self.files)))
        if self.shuffle:
            rng = np.random.default_rng(np.random.SeedSequence([self.seed, self.epoch]))
            order = [int(i) for i in rng.permutation(len(order))]
        for i in order[reader::readers]:
            rel, label = self.files[i]
            try:
                with Image.open(self.root / rel) as im:
                    image = im.convert("RGB")
            except (OSError, ValueError, Image.DecompressionBombError) as e:
                log.warning("skipping unreadable image %s: %s", self.root / rel, e)
                continue
            sample = {
                "__key__": rel,
                "image": image,
                "label": label,
                "class": self._classes[label],
                "meta": {"path": rel, "width": image.width, "height": image.height},
            }
            yield self.transform(sample) if self.transform is not None else sample


def open_image_folder(
    path: str | os.PathLike[str],
    *,
    classes: Sequence[str] | None = None,
    split: Split = "all",
    val_fraction: float = 0.1,
    shuffle: bool = False,
    seed: int = 0,
    transform: Transform | None = None,
) -> ImageFolderDataset:
    """The same stream as `open_dataset`, straight from `DIR/<class>/*.{jpg,jpeg,png,webp,bmp}`."""
    _check_split(split, val_fraction)
    root = Path(path).expanduser()
    listing, _ignored = list_image_folder(root)
    chosen = _resolve_classes(sorted(listing), classes, str(root))
    files = [
        (rel, label)
        for label, c in enumerate(chosen)
        for rel in listing[c]
        if in_split(rel, split, val_fraction)
    ]
    return ImageFolderDataset(
        root=root, files=files, classes=chosen, shuffle=shuffle, seed=seed, transform=transform
    )


def open_domain(uri_or_folder: str | os.PathLike[str], **kw: Any) -> ShardedDataset | ImageFolderDataset:
    """A packaged dataset when `uri_or_folder` has a manifest (or is s3://), else an image folder."""
    text = os.fspath(uri_or_folder)
    if "://" in text and not text.startswith("file://"):
        return open_dataset(text, **kw)
    store = open_store(text)
    if store.stat(MANIFEST_NAME) is not None:
        return open_dataset(text, **kw)
    for k in ("cache_dir", "buffer_size", "retry"):
        kw.pop(k, None)
    assert isinstance(store, FileStore)
    return open_image_folder(store.root, **kw)
