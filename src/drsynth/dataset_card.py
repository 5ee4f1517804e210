"""The dataset card: README.md with class counts, a contact sheet and histograms of the sampled parameters.

Packaging feeds it a few thumbnails per class and the flattened metadata records of (a deterministic subset
of) the samples. Whatever scalar fields the records hold become panels: numbers as histograms, short
categorical strings (breed, sky, style, ...) as bar charts, lists of objects (lights, occluders) as a count
plus their members' fields. Imported photos carry only class, size and format, and get just those panels.
"""

from __future__ import annotations

import io
import math
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw, ImageFont

from drsynth.shards import DatasetManifest

CARD_DIR = "card"
CONTACT_SHEET = f"{CARD_DIR}/contact_sheet.png"
PARAMETERS = f"{CARD_DIR}/parameters.png"
THUMB_PX = 128
THUMBS_PER_CLASS = 8
MAX_PANELS = 32
MAX_CATEGORIES = 40  # a string field with more distinct values is an id or a path, not a parameter

# Bookkeeping fields that vary per sample but are not sampled parameters.
EXCLUDED_FIELDS = {"key", "index", "seed", "label", "drsynth_version", "scenario", "bbox", "image_size"}
# Panels about these come first, in this order.
PRIORITY = (
    "class",
    "breed",
    "subject",
    "distance",
    "elevation",
    "azimuth",
    "fov",
    "camera",
    "light",
    "visible",
    "sky",
    "occluder",
    "material",
    "style",
    "pose",
    "width",
    "height",
    "format",
)

Scalar = float | str


def flatten_record(record: Mapping[str, Any], prefix: str = "") -> dict[str, list[Scalar]]:
    """{dotted field: values} for one record; list members share a `name[].field` entry."""
    out: dict[str, list[Scalar]] = {}

    def add(name: str, value: Scalar) -> None:
        out.setdefault(name, []).append(value)

    def walk(obj: Any, name: str) -> None:
        if isinstance(obj, bool):
            add(name, str(obj).lower())
        elif isinstance(obj, int | float):
            if math.isfinite(obj):
                add(name, float(obj))
        elif isinstance(obj, str):
            add(name, obj)
        elif isinstance(obj, Mapping):
            for k, v in obj.items():
                walk(v, f"{name}.{k}" if name else str(k))
        elif isinstance(obj, list | tuple):
            if obj and all(isinstance(v, Mapping) for v in obj) or not obj:
                add(f"{name}.count", float(len(obj)))
                for v in obj:
                    walk(v, f"{name}[]")
            elif all(isinstance(v, str) for v in obj):
                for v in obj:
                    add(name, v)
            # numeric vectors (positions, colours, boxes) have no single meaningful histogram: skipped

    for k, v in record.items():
        if not prefix and k in EXCLUDED_FIELDS:
            continue
        walk(v, f"{prefix}{k}")
    return out


def _bookkeeping(name: str) -> bool:
    """Nested ids, seeds and copies of the class/label are not sampled parameters."""
    parts = name.replace("[]", "").split(".")
    leaf = parts[-1].lower()
    return (
        any("seed" in p.lower() for p in parts)
        or leaf == "id"
        or leaf.endswith("_id")
        or (len(parts) > 1 and leaf in ("class", "label", "key", "index"))
    )


def _is_small_integer_set(values: Sequence[Scalar]) -> bool:
    return all(isinstance(v, float) and v.is_integer() for v in values) and len(set(values)) <= 12


def _panels(records: Sequence[Mapping[str, list[Scalar]]]) -> list[tuple[str, list[Scalar]]]:
    merged: dict[str, list[Scalar]] = {}
    for rec in records:
        for name, values in rec.items():
            merged.setdefault(name, []).extend(values)
    panels = []
    for name, values in merged.items():
        if _bookkeeping(name):
            continue
        numeric = [v for v in values if isinstance(v, float)]
        text = [v for v in values if isinstance(v, str)]
        if numeric and len(set(numeric)) > 1:
            panels.append((name, numeric))
        elif text and 1 < len(set(text)) <= MAX_CATEGORIES or name == "class" and text:
            panels.append((name, text))

    def rank(item: tuple[str, list[Scalar]]) -> tuple[int, str]:
        lower = item[0].lower()
        return next((i for i, word in enumerate(PRIORITY) if word in lower), len(PRIORITY)), item[0]

    return sorted(panels, key=rank)[:MAX_PANELS]


def _short_label(text: str, limit: int = 16) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "~"


def parameter_figure(records: Sequence[Mapping[str, list[Scalar]]], title: str) -> bytes | None:
    """A PNG grid of histograms / bar charts, one per varying field; None when nothing varies."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    panels = _panels(records)
    if not panels:
        return None
    cols = min(4, len(panels))
    rows = math.ceil(len(panels) / cols)
    fig = Figure(figsize=(3.6 * cols, 2.6 * rows + 0.6), dpi=90)
    FigureCanvasAgg(fig)
    fig.suptitle(title, fontsize=12)
    for i, (name, values) in enumerate(panels):
        ax = fig.add_subplot(rows, cols, i + 1)
        if isinstance(values[0], float) and not _is_small_integer_set(values):
            ax.hist(values, bins=min(30, max(5, len(set(values)))), color="#4c72b0")
        else:  # categories, and counts such as lights.count
            counts = Counter(values)
            items = sorted(counts.items(), key=lambda kv: (-kv[1], str(kv[0])))[:15]
            if isinstance(values[0], float):
                items = sorted(items)
            labels = [f"{k:g}" if isinstance(k, float) else _short_label(str(k)) for k, _ in items]
            ax.barh(range(len(items)), [c for _, c in items], color="#55a868")
            ax.set_yticks(range(len(items)), labels, fontsize=7)
            ax.invert_yaxis()
        ax.set_title(name if len(name) <= 40 else "..." + name[-37:], fontsize=9)
        ax.tick_params(labelsize=7)
    # Fixed margins: tight_layout measures every text box and costs seconds for a few dozen panels.
    top = 1 - 0.6 / fig.get_figheight()
    fig.subplots_adjust(left=0.09, right=0.98, bottom=0.06, top=top - 0.02, wspace=0.6, hspace=0.55)
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def make_thumbnail(jpg: bytes, size: int = THUMB_PX) -> bytes:
    """A small JPEG of an image (decoded at reduced scale when JPEG allows it: cheap)."""
    with Image.open(io.BytesIO(jpg)) as im:
        im.draft("RGB", (size, size))
        thumb = im.convert("RGB")
    scale = size / max(thumb.size)  # small renders are enlarged too, so the sheet is readable
    thumb = thumb.resize(
        (max(1, round(thumb.width * scale)), max(1, round(thumb.height * scale))), Image.LANCZOS
    )
    buf = io.BytesIO()
    thumb.save(buf, format="JPEG", quality=85)
    return buf.getvalue()


def contact_sheet(
    thumbs: Mapping[str, Sequence[bytes]], counts: Mapping[str, int], classes: Sequence[str]
) -> bytes:
    """One row per class: its name and count, then up to THUMBS_PER_CLASS thumbnails."""
    label_w, pad = 150, 4
    cell = THUMB_PX + pad
    width = label_w + THUMBS_PER_CLASS * cell + pad
    height = max(1, len(classes)) * cell + pad
    sheet = Image.new("RGB", (width, height), (245, 245, 245))
    draw = ImageDraw.Draw(sheet)
    font = ImageFont.load_default(size=16)
    small = ImageFont.load_default(size=12)
    for row, c in enumerate(classes):
        y = pad + row * cell
        draw.text((8, y + THUMB_PX // 2 - 16), c[:16], fill=(20, 20, 20), font=font)
        draw.text((8, y + THUMB_PX // 2 + 4), f"{counts.get(c, 0)} images", fill=(90, 90, 90), font=small)
        for col, data in enumerate(list(thumbs.get(c, []))[:THUMBS_PER_CLASS]):
            with Image.open(io.BytesIO(data)) as t:
                tile = t.convert("RGB")
            x = label_w + col * cell
            sheet.paste(tile, (x + (THUMB_PX - tile.width) // 2, y + (THUMB_PX - tile.height) // 2))
    buf = io.BytesIO()
    sheet.save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def readme(manifest: DatasetManifest, *, has_parameters: bool, uri: str) -> str:
    total_mb = sum(s.size for s in manifest.shards) / 1e6
    lines = [
        f"# Dataset `{manifest.name}`",
        "",
        f"{manifest.num_samples} images in {len(manifest.shards)} WebDataset shards ({total_mb:.1f} MB), "
        f"packaged {manifest.created} by drsynth {manifest.drsynth_version}.",
        "",
        "| class | label | images |",
        "|---|---:|---:|",
        *(f"| {c} | {i} | {manifest.counts.get(c, 0)} |" for i, c in enumerate(manifest.classes)),
        f"| **total** | | **{manifest.num_samples}** |",
        "",
    ]
    kind = manifest.source.get("kind", "render")
    if kind == "render":
        lines += [
            "## Source",
            "",
            f"Rendered by scenario `{manifest.scenario_name}` with seed {manifest.seed}, "
            f"{manifest.image_size} px images."
            + (f" Randomizers switched off: {', '.join(manifest.disabled)}." if manifest.disabled else ""),
            "The full scenario configuration is in `dataset.json` (`scenario`), and every image's sampled "
            "parameters are in its `.json` record.",
            "",
        ]
    else:
        skipped = manifest.source.get("skipped", [])
        lines += [
            "## Source",
            "",
            f"Imported from the image folder `{manifest.source.get('path')}`"
            + (
                f", longer side capped at {manifest.source['max_side']} px"
                if manifest.source.get("max_side")
                else ""
            )
            + ".",
            f"{len(skipped)} unreadable file(s) skipped" + (":" if skipped else "."),
            "",
            *(f"- `{s['path']}`: {s['error']}" for s in skipped[:50]),
            *([f"- ... and {len(skipped) - 50} more (see `dataset.json`)"] if len(skipped) > 50 else []),
            "",
        ]
    lines += ["## Contact sheet", "", f"![contact sheet]({CONTACT_SHEET})", ""]
    if has_parameters:
        lines += ["## Sampled parameters", "", f"![parameter histograms]({PARAMETERS})", ""]
    lines += [
        "## Use",
        "",
        "```python",
        "from drsynth.data import open_dataset",
        f'ds = open_dataset("{uri}", split="train", shuffle=True, seed=0)',
        "```",
        "",
    ]
    return "\n".join(lines)


def render_card(
    manifest: DatasetManifest,
    *,
    uri: str,
    thumbs: Mapping[str, Sequence[bytes]],
    records: Sequence[Mapping[str, list[Scalar]]],
) -> dict[str, bytes]:
    """{relative name: bytes} of the card files (README.md, card/*.png)."""
    files = {CONTACT_SHEET: contact_sheet(thumbs, manifest.counts, manifest.classes)}
    params = parameter_figure(records, f"{manifest.name}: sampled parameters ({len(records)} samples)")
    if params is not None:
        files[PARAMETERS] = params
    files["README.md"] = readme(manifest, has_parameters=params is not None, uri=uri).encode()
    return files


def write_card_files(files: Mapping[str, bytes], out_dir: Path) -> None:
    """Write rendered card files into a local folder (for previews)."""
    from drsynth.fsutil import atomic_write_bytes

    for name, data in files.items():
        atomic_write_bytes(out_dir / name, data)
