"""WebDataset shards and the dataset manifest: the on-store format between packaging and reading.

A dataset at URI is:

    URI/dataset.json             the manifest (`DatasetManifest`), written LAST: its presence commits the dataset
    URI/index.tsv                one line per sample: key, label, shard number (exact len() and filtering)
    URI/shards/data-000000.tar   WebDataset tar: <key>.jpg + <key>.json per sample, keys in order
    URI/README.md, URI/card/*.png  the dataset card

Shard membership is defined by position in the key-sorted sample list (shard k holds samples
[k*shard_size, (k+1)*shard_size)), and the tars are byte-reproducible (fixed mtime/owner), so re-packaging the
same input gives the same sha256 and an interrupted upload can resume by comparing checksums.
"""

from __future__ import annotations

import hashlib
import json
import tarfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from drsynth.errors import DatasetError

MANIFEST_NAME = "dataset.json"
INDEX_NAME = "index.tsv"
SHARD_DIR = "shards"
MANIFEST_FORMAT = "drsynth-dataset/1"
# Fixed tar header fields make shards byte-reproducible (webdataset stamps time.time() otherwise).
TAR_MTIME = 946684800  # 2000-01-01T00:00:00Z


def shard_name(number: int) -> str:
    return f"{SHARD_DIR}/data-{number:06d}.tar"


class ShardEntry(BaseModel):
    """One shard as recorded in the manifest."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    name: str = Field(description="path relative to the dataset URI, e.g. shards/data-000000.tar")
    sha256: str
    size: int = Field(ge=0, description="bytes")
    count: int = Field(ge=0, description="samples in the shard")
    first_key: str = ""
    last_key: str = ""


class FileEntry(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    name: str
    sha256: str
    size: int


class DatasetManifest(BaseModel):
    """`dataset.json`: everything needed to trust, read and reproduce a dataset."""

    # Readers ignore fields they do not know, so newer writers stay readable by older readers.
    model_config = ConfigDict(extra="ignore", frozen=True)

    format: Literal["drsynth-dataset/1"] = MANIFEST_FORMAT
    name: str
    classes: list[str] = Field(min_length=1, description="label order: label i is classes[i]")
    counts: dict[str, int] = Field(description="samples per class")
    num_samples: int = Field(ge=0)
    image_size: int | None = Field(None, description="square side in pixels; None when sizes vary (imports)")
    scenario: dict[str, Any] | None = Field(
        None, description="the full resolved scenario config of the render"
    )
    scenario_name: str | None = None
    seed: int | None = None
    disabled: list[str] = Field(default_factory=list, description="randomizers switched off in the render")
    shards: list[ShardEntry]
    shard_size: int = Field(ge=1, description="samples per shard (the last one may hold fewer)")
    index: FileEntry
    card: list[str] = Field(default_factory=list, description="dataset card files, relative to the URI")
    created: str = Field(description="ISO 8601 UTC time of packaging")
    drsynth_version: str
    source: dict[str, Any] = Field(default_factory=dict, description="kind (render|image-folder), paths, ...")

    def to_json(self) -> str:
        return json.dumps(self.model_dump(mode="json"), indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, data: bytes | str, where: str) -> DatasetManifest:
        try:
            raw = json.loads(data)
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise DatasetError(f"{where} is not valid JSON ({e}); the dataset manifest is corrupt") from e
        if isinstance(raw, dict) and raw.get("format") not in (None, MANIFEST_FORMAT):
            raise DatasetError(
                f"{where} has format {raw.get('format')!r}; this drsynth reads {MANIFEST_FORMAT!r}. "
                "Upgrade drsynth or re-package the dataset."
            )
        try:
            return cls.model_validate(raw)
        except ValidationError as e:
            raise DatasetError(f"{where} is not a valid drsynth dataset manifest:\n{e}") from e


@dataclass(frozen=True)
class IndexRow:
    key: str
    label: int
    shard: int


def format_index(rows: Iterable[IndexRow]) -> bytes:
    lines = ["key\tlabel\tshard"] + [f"{r.key}\t{r.label}\t{r.shard}" for r in rows]
    return ("\n".join(lines) + "\n").encode()


def parse_index(data: bytes, where: str) -> list[IndexRow]:
    lines = data.decode().splitlines()
    if not lines or lines[0] != "key\tlabel\tshard":
        raise DatasetError(f"{where} does not start with the header 'key<TAB>label<TAB>shard'")
    try:
        return [
            IndexRow(k, int(lab), int(s)) for k, lab, s in (line.split("\t") for line in lines[1:] if line)
        ]
    except ValueError as e:
        raise DatasetError(f"{where} has a malformed line ({e})") from e


@dataclass(frozen=True)
class ShardSample:
    """One sample as it goes into a shard: encoded JPEG bytes and its metadata record."""

    key: str
    jpg: bytes
    record: dict[str, Any]


@dataclass(frozen=True)
class WrittenShard:
    path: Path
    sha256: str
    size: int
    count: int
    first_key: str
    last_key: str


def write_shard(samples: Iterable[ShardSample], path: Path) -> WrittenShard:
    """Write `samples` (in the given order) as one WebDataset tar at local `path`."""
    from webdataset import TarWriter

    path.parent.mkdir(parents=True, exist_ok=True)
    keys: list[str] = []
    with open(path, "wb") as f, TarWriter(f, user="drsynth", group="drsynth", mtime=TAR_MTIME) as writer:
        for s in samples:
            if "." in s.key or "/" in s.key:
                raise DatasetError(f"sample key {s.key!r} must not contain '.' or '/' (WebDataset keys)")
            record = json.dumps(s.record, sort_keys=True, separators=(",", ":")).encode()
            writer.write({"__key__": s.key, "jpg": s.jpg, "json": record})
            keys.append(s.key)
    h = hashlib.sha256()
    size = 0
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
            size += len(chunk)
    return WrittenShard(
        path, h.hexdigest(), size, len(keys), keys[0] if keys else "", keys[-1] if keys else ""
    )


def iter_shard(
    path: Path, *, keys: set[str] | None = None, where: str | None = None
) -> Iterator[dict[str, Any]]:
    """Samples of one local shard as webdataset dicts {"__key__", "jpg", "json", ...}, optionally only `keys`.

    Unselected members are skipped without being kept in memory. Errors name the shard.
    """
    from webdataset.tariterators import base_plus_ext, group_by_keys, tar_file_iterator

    where = where or str(path)

    def selected(fname: str) -> bool:
        return keys is None or base_plus_ext(fname)[0] in keys

    def with_url(files: Iterator[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        for f in files:
            f["__url__"] = where
            yield f

    try:
        with open(path, "rb") as f:
            yield from group_by_keys(with_url(tar_file_iterator(f, select_files=selected)))
    except (tarfile.TarError, ValueError, OSError) as e:
        raise DatasetError(f"cannot read shard {where}: {e}") from e
