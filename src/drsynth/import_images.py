"""`drsynth import-images`: a folder of photos (`DIR/<class>/*.jpg|png|...`) -> a dataset like a rendered one.

Real photos and cartoon sets thus travel the same path as renders (shards, manifest, card, reader). Each
readable image becomes one sample: JPEGs that need no change are kept byte for byte; anything else (PNG,
WebP, BMP, CMYK, alpha, EXIF-rotated, or larger than `max_side`) is converted to RGB and re-encoded as JPEG.
Unreadable or truncated files are counted, listed (in the result, the manifest and the card) and skipped.
Keys are the 9-digit positions of the files in (class order, path) order, so the same folder always gives
the same keys and the same train/val split.
"""

from __future__ import annotations

import io
import os
import tempfile
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image, ImageOps

from drsynth import __version__
from drsynth.errors import DatasetError
from drsynth.fsutil import atomic_write_bytes, atomic_write_json
from drsynth.storage import DEFAULT_RETRY, RetryPolicy

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp")
JPEG_QUALITY = 95
EXIF_ORIENTATION = 0x0112


def list_image_folder(root: Path) -> tuple[dict[str, list[str]], list[str]]:
    """({class: sorted image paths relative to root}, [other files ignored]) for `root/<class>/**`."""
    if not root.is_dir():
        raise DatasetError(
            f"{root} is not a folder; expected DIR/<class>/*.{{jpg,jpeg,png,webp,bmp}} (one sub-folder per class)"
        )
    listing: dict[str, list[str]] = {}
    ignored: list[str] = []
    for entry in sorted(root.iterdir()):
        if entry.name.startswith("."):
            continue
        if not entry.is_dir():
            ignored.append(entry.name)
            continue
        files = []
        for p in sorted(entry.rglob("*")):
            if not p.is_file() or any(part.startswith(".") for part in p.relative_to(root).parts):
                continue
            rel = p.relative_to(root).as_posix()
            (files if p.suffix.lower() in IMAGE_EXTENSIONS else ignored).append(rel)
        listing[entry.name] = files
    if not listing:
        raise DatasetError(
            f"{root} has no class sub-folders; expected DIR/<class>/*.{{jpg,jpeg,png,webp,bmp}}"
        )
    return listing, ignored


@dataclass(frozen=True)
class Skipped:
    path: str
    error: str


@dataclass(frozen=True)
class ImportResult:
    package: Any  # drsynth.package.PackageResult
    imported: int
    skipped: tuple[Skipped, ...]
    ignored: tuple[str, ...]


def convert_image(data: bytes, *, max_side: int | None) -> tuple[bytes, dict[str, Any]]:
    """(JPEG bytes, facts about the conversion); raises on unreadable or truncated input."""
    with Image.open(io.BytesIO(data)) as im:
        fmt = im.format or "unknown"
        im.load()  # decodes everything: truncated files fail here, not later in training
        orientation = im.getexif().get(EXIF_ORIENTATION, 1)
        original = im.size
        image = ImageOps.exif_transpose(im) if orientation not in (1, None) else im.copy()
        mode = im.mode
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGB", rgba.size, (255, 255, 255))
        background.paste(rgba, mask=rgba.getchannel("A"))
        image = background
    elif image.mode != "RGB":
        image = image.convert("RGB")
    resized = max_side is not None and max(image.size) > max_side
    if resized:
        assert max_side is not None
        image.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    keep = fmt == "JPEG" and mode == "RGB" and orientation in (1, None) and not resized
    if keep:
        out = data
    else:
        buf = io.BytesIO()
        image.save(buf, format="JPEG", quality=JPEG_QUALITY)
        out = buf.getvalue()
    facts = {
        "format": fmt,
        "mode": mode,
        "original_width": original[0],
        "original_height": original[1],
        "width": image.width,
        "height": image.height,
        "reencoded": not keep,
    }
    return out, facts


def _stage(
    root: Path,
    jobs: Sequence[tuple[int, str, str]],
    classes: list[str],
    staging: Path,
    max_side: int | None,
    workers: int,
    progress: bool,
) -> tuple[list[Skipped], set[tuple[int, int]]]:
    """Convert every file into a render-format folder at `staging`; return (skipped, sizes seen)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    samples = staging / "samples"
    samples.mkdir(parents=True)

    def one(job: tuple[int, str, str]) -> Skipped | tuple[int, int]:
        index, rel, cls = job
        try:
            jpg, facts = convert_image((root / rel).read_bytes(), max_side=max_side)
        except Exception as e:  # PIL raises OSError, ValueError, SyntaxError, EOFError... for bad files
            return Skipped(rel, f"{type(e).__name__}: {e}")
        key = f"{index:09d}"
        record = {
            "key": key,
            "index": index,
            "class": cls,
            "label": classes.index(cls),
            "width": facts["width"],
            "height": facts["height"],
            "source": {"path": rel, **{k: v for k, v in facts.items() if k not in ("width", "height")}},
            "drsynth_version": __version__,
        }
        atomic_write_bytes(samples / f"{key}.jpg", jpg)
        atomic_write_json(samples / f"{key}.json", record)  # after the image, as the render contract says
        return facts["width"], facts["height"]

    skipped: list[Skipped] = []
    sizes: set[tuple[int, int]] = set()
    with (
        Progress(
            TextColumn("[bold]import[/] {task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            disable=not progress,
        ) as bar,
        ThreadPoolExecutor(max_workers=workers, thread_name_prefix="drsynth-import") as pool,
    ):
        task = bar.add_task(str(root), total=len(jobs))
        for outcome in pool.map(one, jobs):
            if isinstance(outcome, Skipped):
                skipped.append(outcome)
            else:
                sizes.add(outcome)
            bar.advance(task)
    return skipped, sizes


def import_images(
    src: str | os.PathLike[str],
    dest: str | os.PathLike[str],
    *,
    classes: Sequence[str] | None = None,
    max_side: int | None = None,
    max_per_class: int | None = None,
    name: str | None = None,
    shard_size: int = 1000,
    overwrite: bool = False,
    workers: int = 4,
    retry: RetryPolicy = DEFAULT_RETRY,
    progress: bool = True,
    work_dir: str | os.PathLike[str] | None = None,
    card: bool = True,
) -> ImportResult:
    """Import `src/<class>/*` images into a committed dataset at `dest` (see the module doc)."""
    from drsynth.package import package

    if max_side is not None and max_side < 8:
        raise DatasetError(f"max_side must be >= 8 pixels, got {max_side}")
    if max_per_class is not None and max_per_class < 1:
        raise DatasetError(f"max_per_class must be >= 1, got {max_per_class}")
    root = Path(src).expanduser()
    listing, ignored = list_image_folder(root)
    chosen = list(classes) if classes else sorted(listing)
    unknown = [c for c in chosen if c not in listing]
    if unknown or len(set(chosen)) != len(chosen):
        raise DatasetError(
            f"classes {chosen} must be distinct sub-folders of {root}"
            + (f"; not found: {unknown}" if unknown else "")
            + f"; it has {sorted(listing)}"
        )
    files = [(c, rel) for c in chosen for rel in listing[c][:max_per_class]]
    jobs = [(i, rel, c) for i, (c, rel) in enumerate(files)]
    if not jobs:
        raise DatasetError(f"no images (*.jpg, *.jpeg, *.png, *.webp, *.bmp) under {root}/<class>/")

    with tempfile.TemporaryDirectory(prefix="drsynth-import-", dir=work_dir) as tmp:
        staging = Path(tmp) / "render"
        skipped, sizes = _stage(root, jobs, chosen, staging, max_side, workers, progress)
        produced = {cls for _, rel, cls in jobs if rel not in {s.path for s in skipped}}
        empty = [c for c in chosen if c not in produced]
        if empty:
            raise DatasetError(
                f"class folder(s) {empty} under {root} hold no readable image "
                f"({len(skipped)} file(s) could not be read); every class needs at least one"
            )
        square = {w for w, h in sizes if w == h}
        image_size = square.pop() if len(sizes) == 1 and square else None
        atomic_write_json(
            staging / "render.json",
            {
                "scenario": None,
                "scenario_name": None,
                "seed": None,
                "image_size": image_size,
                "classes": chosen,
                "disabled": [],
                "drsynth_version": __version__,
            },
        )
        source_info = {
            "kind": "image-folder",
            "path": str(root.absolute()),
            "max_side": max_side,
            "max_per_class": max_per_class,
            "skipped": [{"path": s.path, "error": s.error} for s in skipped],
            "ignored_files": len(ignored),
        }
        result = package(
            staging,
            dest,
            shard_size=shard_size,
            name=name or root.absolute().name,
            overwrite=overwrite,
            workers=workers,
            retry=retry,
            progress=progress,
            work_dir=work_dir,
            source_info=source_info,
            card=card,
        )
    return ImportResult(result, len(jobs) - len(skipped), tuple(skipped), tuple(ignored))


def skipped_report(skipped: Sequence[Skipped], limit: int = 20) -> str:
    lines = [f"  {s.path}: {s.error}" for s in skipped[:limit]]
    if len(skipped) > limit:
        lines.append(f"  ... and {len(skipped) - limit} more (listed in dataset.json, source.skipped)")
    return "\n".join(lines)
