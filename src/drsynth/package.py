"""`drsynth package`: render folder(s) -> WebDataset shards + index + card + manifest in a store.

The steps, in order, so that a dataset is either committed whole or not at all:
1. Scan the render folder(s) (`render.json`, `samples/<key>.jpg/.json`); samples whose `.json` is missing
   are unfinished and left out (and reported).
2. Refuse a destination that already holds a committed dataset (`dataset.json`) unless `overwrite`; with
   `overwrite` the old manifest is deleted first, which un-commits the old dataset before anything changes.
3. Cut the key-sorted samples into shards of `shard_size` (deterministic membership). Each shard is written
   to a local tar, hashed, and uploaded once, unless the store already holds an object of that name with
   the same sha256 (resume). Shards are built and uploaded by a few threads.
4. Remove stale shard objects from an earlier, different attempt; upload `index.tsv` and the dataset card.
5. Write `dataset.json` last.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import math
import os
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from drsynth import __version__, metrics
from drsynth.dataset_card import THUMBS_PER_CLASS, Scalar, flatten_record, make_thumbnail, render_card
from drsynth.errors import DatasetError
from drsynth.shards import (
    INDEX_NAME,
    MANIFEST_NAME,
    SHARD_DIR,
    DatasetManifest,
    FileEntry,
    IndexRow,
    ShardEntry,
    ShardSample,
    format_index,
    shard_name,
    write_shard,
)
from drsynth.storage import DEFAULT_RETRY, RetryPolicy, Store, open_store

RENDER_INFO = "render.json"
SAMPLES_DIR = "samples"
CARD_RECORDS = 5000  # the parameter histograms use at most this many (evenly spaced) records


class RenderInfo(BaseModel):
    """`OUT/render.json` as far as packaging needs it (other fields are carried along untouched)."""

    model_config = ConfigDict(extra="allow")

    classes: list[str]
    scenario: dict[str, Any] | None = None
    scenario_name: str | None = None
    seed: int | None = None
    image_size: int | None = None
    disabled: list[str] = []
    drsynth_version: str | None = None


@dataclass(frozen=True)
class SourceSample:
    key: str
    jpg: Path
    record: Path


@dataclass(frozen=True)
class RenderSource:
    dirs: tuple[Path, ...]
    info: RenderInfo
    samples: tuple[SourceSample, ...]  # sorted by key
    unfinished: tuple[str, ...]  # keys with a .jpg but no .json yet


def _read_render_info(d: Path) -> RenderInfo:
    path = d / RENDER_INFO
    if not path.is_file():
        raise DatasetError(
            f"{d} is not a render folder: {RENDER_INFO} is missing (expected OUT/{RENDER_INFO} and "
            f"OUT/{SAMPLES_DIR}/<key>.jpg/.json from `drsynth render`; for a folder of photos use "
            "`drsynth import-images`)"
        )
    try:
        return RenderInfo.model_validate(json.loads(path.read_text()))
    except (json.JSONDecodeError, ValidationError) as e:
        raise DatasetError(f"{path} is not a valid render description: {e}") from e


def scan_render_dirs(dirs: Sequence[str | os.PathLike[str]]) -> RenderSource:
    """All finished samples of one or more render folders of the same scenario."""
    if not dirs:
        raise DatasetError("no source folder given; pass --src RENDER_DIR (repeatable)")
    paths = tuple(Path(d).expanduser() for d in dirs)
    infos = [_read_render_info(d) for d in paths]
    info = infos[0]
    for d, other in zip(paths[1:], infos[1:], strict=True):
        for fld in ("classes", "scenario", "seed", "image_size"):
            if getattr(other, fld) != getattr(info, fld):
                raise DatasetError(
                    f"{d / RENDER_INFO} has a different {fld} than {paths[0] / RENDER_INFO}: only index ranges "
                    "of one render (same scenario, seed, classes, size) can be packaged together"
                )
    if not info.classes or len(set(info.classes)) != len(info.classes):
        raise DatasetError(f"{paths[0] / RENDER_INFO}: classes must be a non-empty list of distinct names")
    samples: dict[str, SourceSample] = {}
    unfinished: list[str] = []
    for d in paths:
        sdir = d / SAMPLES_DIR
        if not sdir.is_dir():
            raise DatasetError(f"{sdir} is missing: a render folder keeps its images in {SAMPLES_DIR}/")
        names = {p.name for p in sdir.iterdir() if not p.name.startswith(".")}
        for name in names:
            stem, ext = os.path.splitext(name)
            if ext == ".json":
                if f"{stem}.jpg" not in names:
                    raise DatasetError(
                        f"{sdir / name} has no image {stem}.jpg beside it (the record is written after the image; "
                        "the render folder is damaged)"
                    )
                if stem in samples:
                    raise DatasetError(
                        f"sample key {stem} is present in both {samples[stem].jpg.parent} and {sdir}"
                    )
                samples[stem] = SourceSample(stem, sdir / f"{stem}.jpg", sdir / name)
            elif ext == ".jpg" and f"{stem}.json" not in names:
                unfinished.append(stem)
    if not samples:
        raise DatasetError(f"no finished samples (<key>.jpg + <key>.json) in {', '.join(map(str, paths))}")
    ordered = tuple(samples[k] for k in sorted(samples))
    return RenderSource(paths, info, ordered, tuple(sorted(unfinished)))


@dataclass
class ShardResult:
    number: int
    entry: ShardEntry
    rows: list[IndexRow]
    counts: Counter[str]
    thumbs: dict[str, list[tuple[str, bytes]]]
    records: dict[str, dict[str, list[Scalar]]]
    uploaded: bool


@dataclass(frozen=True)
class PackageResult:
    uri: str
    manifest: DatasetManifest
    shards_uploaded: int
    shards_resumed: int
    bytes_uploaded: int
    seconds: float
    unfinished: tuple[str, ...] = ()

    @property
    def images_per_s(self) -> float:
        return self.manifest.num_samples / self.seconds if self.seconds > 0 else float("inf")

    @property
    def mb_per_s(self) -> float:
        total = sum(s.size for s in self.manifest.shards)
        return total / 1e6 / self.seconds if self.seconds > 0 else float("inf")


@dataclass
class _Plan:
    source: RenderSource
    shard_size: int
    card_every: int
    thumbs_per_shard: int
    classes: list[str] = field(default_factory=list)


def _load_sample(s: SourceSample, classes: list[str]) -> ShardSample:
    try:
        record = json.loads(s.record.read_text())
        jpg = s.jpg.read_bytes()
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DatasetError(f"cannot read sample {s.key} ({s.record}): {e}") from e
    if not isinstance(record, dict) or record.get("class") not in classes:
        got = record.get("class") if isinstance(record, dict) else type(record).__name__
        raise DatasetError(f"{s.record}: 'class' must be one of {classes} (from {RENDER_INFO}), got {got!r}")
    if "label" in record and record["label"] != classes.index(record["class"]):
        raise DatasetError(
            f"{s.record}: label {record['label']} disagrees with class {record['class']!r} "
            f"(expected {classes.index(record['class'])} from the classes order {classes})"
        )
    if "key" in record and str(record["key"]) != s.key:
        raise DatasetError(f"{s.record}: key {record['key']!r} does not match its file name {s.key!r}")
    if jpg[:3] != b"\xff\xd8\xff":
        raise DatasetError(f"{s.jpg} is not a JPEG file (render images must be .jpg)")
    return ShardSample(s.key, jpg, record)


def _build_and_upload(
    number: int,
    members: Sequence[tuple[int, SourceSample]],
    plan: _Plan,
    store: Store,
    work_dir: Path,
    on_bytes: Callable[[int, int], None],
) -> ShardResult:
    classes = plan.classes
    loaded = [(pos, _load_sample(s, classes)) for pos, s in members]
    counts: Counter[str] = Counter(smp.record["class"] for _, smp in loaded)
    thumbs: dict[str, list[tuple[str, bytes]]] = {}
    records: dict[str, dict[str, list[Scalar]]] = {}
    by_class: dict[str, list[ShardSample]] = {}
    for pos, smp in loaded:
        by_class.setdefault(smp.record["class"], []).append(smp)
        if plan.card_every and pos % plan.card_every == 0:
            records[smp.key] = flatten_record(smp.record)
    for c, members_of_class in by_class.items():
        if not plan.thumbs_per_shard:
            break
        step = max(1, len(members_of_class) // plan.thumbs_per_shard)
        for smp in members_of_class[::step][: plan.thumbs_per_shard]:  # evenly spread over the shard
            try:
                thumbs.setdefault(c, []).append((smp.key, make_thumbnail(smp.jpg)))
            except OSError as e:
                raise DatasetError(f"sample {smp.key}: its JPEG cannot be decoded ({e})") from e
    name = shard_name(number)
    local = work_dir / f"data-{number:06d}.tar"
    try:
        written = write_shard((smp for _, smp in loaded), local)
        remote = store.checksum(name)
        uploaded = remote != written.sha256
        if uploaded:
            t0 = time.monotonic()
            store.put_file(name, local, sha256=written.sha256, content_type="application/x-tar")
            m = metrics.package()
            m.upload_seconds.observe(time.monotonic() - t0)
            m.shards_uploaded.inc()
            m.bytes_uploaded.inc(written.size)
    finally:
        local.unlink(missing_ok=True)
    metrics.package().samples.inc(len(loaded))
    on_bytes(len(loaded), written.size if uploaded else 0)
    entry = ShardEntry(
        name=name,
        sha256=written.sha256,
        size=written.size,
        count=written.count,
        first_key=written.first_key,
        last_key=written.last_key,
    )
    rows = [IndexRow(smp.key, classes.index(smp.record["class"]), number) for _, smp in loaded]
    return ShardResult(number, entry, rows, counts, thumbs, records, uploaded)


def _select_thumbs(results: Sequence[ShardResult], classes: Sequence[str]) -> dict[str, list[bytes]]:
    """THUMBS_PER_CLASS thumbnails per class, evenly spread over the dataset's keys."""
    out: dict[str, list[bytes]] = {}
    for c in classes:
        pool = sorted((key, data) for r in results for key, data in r.thumbs.get(c, []))
        if len(pool) > THUMBS_PER_CLASS:
            step = len(pool) / THUMBS_PER_CLASS
            pool = [pool[int(i * step)] for i in range(THUMBS_PER_CLASS)]
        out[c] = [data for _, data in pool]
    return out


def package(
    src: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    dest: str | os.PathLike[str],
    *,
    shard_size: int = 1000,
    name: str | None = None,
    overwrite: bool = False,
    workers: int = 4,
    retry: RetryPolicy = DEFAULT_RETRY,
    progress: bool = True,
    work_dir: str | os.PathLike[str] | None = None,
    on_shard_done: Callable[[ShardEntry, bool], None] | None = None,
    source_info: dict[str, Any] | None = None,
    card: bool = True,
    curation: str | os.PathLike[str] | None = None,
) -> PackageResult:
    """Package render folder(s) `src` into a committed dataset at `dest`; see the module doc for the steps.

    `card=False` skips the dataset card (README.md and PNGs, a few seconds of plotting); `on_shard_done`
    is called with each finished shard and whether it was uploaded (False: already there, resumed).
    `curation` (a `drsynth curate` keep-list, file or folder) packages only the renders it keeps.
    """
    if shard_size < 1:
        raise DatasetError(f"shard_size must be >= 1, got {shard_size}")
    if workers < 1:
        raise DatasetError(f"workers must be >= 1, got {workers}")
    dirs = [src] if isinstance(src, str | os.PathLike) else list(src)
    source = scan_render_dirs(dirs)
    curated = None
    if curation is not None:
        source, curated = apply_curation(source, curation)
    store = open_store(dest, retry=retry)
    import webdataset  # noqa: F401  (imports torch: seconds, paid before the clock starts)

    started = time.monotonic()
    store.prepare_for_write()
    if store.stat(MANIFEST_NAME) is not None:
        if not overwrite:
            raise DatasetError(
                f"{store.describe()} already holds a committed dataset ({MANIFEST_NAME} exists); datasets are "
                "immutable. Choose another --dest, or pass --overwrite to replace it."
            )
        store.delete(MANIFEST_NAME)  # un-commit first: from here on readers refuse the old dataset

    classes = list(source.info.classes)
    n = len(source.samples)
    n_shards = math.ceil(n / shard_size)
    plan = _Plan(
        source=source,
        shard_size=shard_size,
        card_every=max(1, math.ceil(n / CARD_RECORDS)) if card else 0,  # 0: collect nothing for a card
        # enough candidates per class even when a class fills only a few shards (imports are class-sorted)
        thumbs_per_shard=min(THUMBS_PER_CLASS, math.ceil(THUMBS_PER_CLASS * len(classes) / n_shards))
        if card
        else 0,
        classes=classes,
    )
    chunks = [
        [(pos, source.samples[pos]) for pos in range(k * shard_size, min(n, (k + 1) * shard_size))]
        for k in range(n_shards)
    ]
    results = _run_shards(chunks, plan, store, work_dir, workers, progress, on_shard_done, store.describe())

    planned = {shard_name(k) for k in range(n_shards)}
    for obj in store.list(f"{SHARD_DIR}/"):
        if obj.key not in planned:
            store.delete(obj.key)  # left by an earlier attempt with other settings; not part of this dataset

    rows = [row for r in results for row in r.rows]
    index_bytes = format_index(rows)
    store.put_bytes(INDEX_NAME, index_bytes, content_type="text/tab-separated-values")
    counts = Counter[str]()
    for r in results:
        counts.update(r.counts)
    info_extra = {k: v for k, v in (source.info.model_extra or {}).items() if k not in ("source",)}
    manifest = DatasetManifest(
        name=name or _default_name(source),
        classes=classes,
        counts={c: counts.get(c, 0) for c in classes},
        num_samples=n,
        image_size=source.info.image_size,
        scenario=source.info.scenario,
        scenario_name=source.info.scenario_name,
        seed=source.info.seed,
        disabled=list(source.info.disabled),
        shards=[r.entry for r in results],
        shard_size=shard_size,
        index=FileEntry(
            name=INDEX_NAME, sha256=hashlib.sha256(index_bytes).hexdigest(), size=len(index_bytes)
        ),
        created=dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z"),
        drsynth_version=__version__,
        source=source_info
        or {
            "kind": "render",
            "paths": [str(d.absolute()) for d in source.dirs],
            "render_drsynth_version": source.info.drsynth_version,
            "unfinished_samples_left_out": len(source.unfinished),
            **({"render": info_extra} if info_extra else {}),
            **({"curation": curated} if curated else {}),
        },
    )
    if card:
        records = [r.records[k] for r in results for k in sorted(r.records)]
        files = render_card(manifest, uri=store.uri, thumbs=_select_thumbs(results, classes), records=records)
        for key, data in sorted(files.items()):
            store.put_bytes(key, data, content_type="text/markdown" if key.endswith(".md") else "image/png")
            metrics.package().bytes_uploaded.inc(len(data))
        manifest = manifest.model_copy(update={"card": sorted(files)})
    store.put_bytes(MANIFEST_NAME, manifest.to_json().encode(), content_type="application/json")

    uploaded = [r for r in results if r.uploaded]
    return PackageResult(
        uri=store.uri,
        manifest=manifest,
        shards_uploaded=len(uploaded),
        shards_resumed=len(results) - len(uploaded),
        bytes_uploaded=sum(r.entry.size for r in uploaded),
        seconds=time.monotonic() - started,
        unfinished=source.unfinished,
    )


def apply_curation(
    source: RenderSource, curation: str | os.PathLike[str]
) -> tuple[RenderSource, dict[str, Any]]:
    """The source reduced to the renders a curation keeps, and what to record of it in the manifest."""
    from drsynth.curate import read_curation

    data = read_curation(curation)
    for fld, ours in (("scenario", source.info.scenario_name), ("seed", source.info.seed)):
        if data.get(fld) is not None and ours is not None and data[fld] != ours:
            raise DatasetError(
                f"curation {data['path']} was made for {fld} {data[fld]!r}, these renders have {ours!r}: "
                "run `drsynth curate` on these render folders"
            )
    kept = set(data["kept"])
    have = {s.key for s in source.samples}
    missing = sorted(kept - have)
    if missing:
        raise DatasetError(
            f"curation {data['path']} keeps {len(missing)} render(s) the render folders do not hold (first: "
            f"{missing[0]}): it was made for other render folders; run `drsynth curate` on these"
        )
    samples = tuple(s for s in source.samples if s.key in kept)
    info = {
        "file": data["path"],
        "keep_fraction": data.get("keep_fraction"),
        "weights": data.get("weights"),
        "criterion": data.get("criterion"),
        "rendered": len(source.samples),
        "kept": len(samples),
        # renders finished after the curation ran were never scored: left out, and counted so it shows
        "unscored_left_out": len(have - set(data.get("scores") or have)),
    }
    return dataclasses.replace(source, samples=samples), info


def _default_name(source: RenderSource) -> str:
    return source.info.scenario_name or source.dirs[0].absolute().name


def _run_shards(
    chunks: list[list[tuple[int, SourceSample]]],
    plan: _Plan,
    store: Store,
    work_dir: str | os.PathLike[str] | None,
    workers: int,
    progress: bool,
    on_shard_done: Callable[[ShardEntry, bool], None] | None,
    where: str,
) -> list[ShardResult]:
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    total = sum(len(c) for c in chunks)
    lock = threading.Lock()
    uploaded_bytes = [0]
    results: list[ShardResult] = []
    with (
        tempfile.TemporaryDirectory(prefix="drsynth-package-", dir=work_dir) as tmp,
        Progress(
            TextColumn("[bold]package[/]"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("images"),
            TextColumn("{task.fields[mb]:.1f} MB up"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            disable=not progress,
        ) as bar,
    ):
        task = bar.add_task(where, total=total, mb=0.0)

        def on_bytes(images: int, nbytes: int) -> None:
            with lock:
                uploaded_bytes[0] += nbytes
                bar.update(task, advance=images, mb=uploaded_bytes[0] / 1e6)

        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="drsynth-package") as pool:
            futures = [
                pool.submit(_build_and_upload, k, chunk, plan, store, Path(tmp), on_bytes)
                for k, chunk in enumerate(chunks)
            ]
            try:
                for fut in as_completed(futures):
                    result = fut.result()
                    results.append(result)
                    if on_shard_done is not None:
                        on_shard_done(result.entry, result.uploaded)
            except BaseException:
                for f in futures:
                    f.cancel()  # fail fast: no new shards start once one has failed
                raise
    return sorted(results, key=lambda r: r.number)
