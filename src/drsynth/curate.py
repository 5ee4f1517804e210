"""`drsynth curate`: keep the renders an ImageNet classifier finds most like their class.

Each finished render is scored by the ImageNet classifier of `drsynth.realism` with the softmax mass its
class's ImageNet group receives (cat: 281-285, dog: 151-268, ...). Per class, the `keep_fraction` highest
scored renders are kept. The result is a keep-list (`curation.json`) that `drsynth package --curation FILE`
honours, plus a contact sheet of the best kept and the worst dropped renders of every class.

Why: the renders a network trained on photographs cannot place are the ones that teach a classifier what
photographs do not look like. On seed 0's 4,000 cats_dogs renders, a head trained on the best-scored half
reached 94% on the real development photos against 87% for a random half, and 39% for the worst half
(docs/benchmarks.md, "Curation"). No real photo takes part: the score is the pretrained network's opinion
of each render alone.
"""

from __future__ import annotations

import io
import json
import math
import os
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from drsynth import __version__
from drsynth.errors import ConfigError, DatasetError
from drsynth.fsutil import atomic_dir

CURATION_FILE = "curation.json"
SHEET_FILE = "curation.png"
CRITERION = "softmax mass of the class's ImageNet group (drsynth.realism.IMAGENET_GROUPS)"


@dataclass(frozen=True)
class ScoredRender:
    key: str
    class_name: str
    score: float  # softmax mass on the class's ImageNet group
    breed: str = "?"  # the record's subject breed / model, to show which subjects curation drops


@dataclass(frozen=True)
class Curation:
    """A keep-list: which render keys to package, and what chose them."""

    keep_fraction: float
    weights: str
    scenario: str | None
    seed: int | None
    classes: dict[str, dict[str, Any]]  # per class: rendered, kept, score of the last kept render, means
    kept: frozenset[str]
    scores: dict[str, float]

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": "drsynth-curation",
            "drsynth_version": __version__,
            "criterion": CRITERION,
            "keep_fraction": self.keep_fraction,
            "weights": self.weights,
            "scenario": self.scenario,
            "seed": self.seed,
            "classes": self.classes,
            "kept": sorted(self.kept),
            "scores": {k: round(v, 6) for k, v in sorted(self.scores.items())},
        }


def check_fraction(keep_fraction: float) -> None:
    if not 0.0 < keep_fraction <= 1.0:
        raise DatasetError(f"keep fraction must be in (0, 1], got {keep_fraction}")


def select(scored: Sequence[ScoredRender], keep_fraction: float) -> frozenset[str]:
    """Per class, the keys of the `keep_fraction` best-scored renders (at least one; ties broken by key)."""
    check_fraction(keep_fraction)
    by_class: dict[str, list[ScoredRender]] = {}
    for s in scored:
        by_class.setdefault(s.class_name, []).append(s)
    kept: set[str] = set()
    for items in by_class.values():
        k = max(1, round(len(items) * keep_fraction))
        kept.update(s.key for s in sorted(items, key=lambda s: (-s.score, s.key))[:k])
    return frozenset(kept)


def check_classes(classes: Sequence[str], where: str = "curation") -> None:
    """ConfigError unless every class has an ImageNet group (curation scores nothing else)."""
    from drsynth.realism import IMAGENET_GROUPS, imagenet_group

    for c in classes:
        try:
            imagenet_group(c)
        except ConfigError:
            raise ConfigError(
                f"{where}: class '{c}' has no ImageNet group to score renders against (classes with one: "
                f"{', '.join(IMAGENET_GROUPS)}); set curate_keep to 0 for this scenario"
            ) from None


def open_renders(src: str | os.PathLike[str] | Sequence[str | os.PathLike[str]]) -> Any:
    """The RenderSource of the render folder(s) `src`, checked to hold only classes with an ImageNet group."""
    from drsynth.package import scan_render_dirs
    from drsynth.realism import imagenet_group

    source = scan_render_dirs([src] if isinstance(src, str | os.PathLike) else list(src))
    for c in source.info.classes:
        imagenet_group(c)  # a class with no ImageNet group fails before any work
    return source


def score_renders(
    source: Any,
    classifier: Any,
    *,
    progress: Callable[[int, int], None] | None = None,
    batch_size: int = 32,
) -> list[ScoredRender]:
    """The score of every finished render of `source` (from `open_renders`)."""
    from drsynth.preprocess import load_image
    from drsynth.realism import imagenet_group

    groups = {c: np.array(imagenet_group(c)) for c in source.info.classes}
    out: list[ScoredRender] = []
    samples = source.samples
    for start in range(0, len(samples), batch_size):
        batch = samples[start : start + batch_size]
        images, classes, breeds = [], [], []
        for s in batch:
            try:
                record = json.loads(s.record.read_text())
                images.append(np.asarray(load_image(s.jpg.read_bytes())))
            except (OSError, ValueError) as e:
                raise DatasetError(f"cannot read render {s.key} ({s.jpg.parent}): {e}") from None
            if record.get("class") not in source.info.classes:
                raise DatasetError(
                    f"{s.record} names class {record.get('class')!r}, not one of the render's classes "
                    f"{list(source.info.classes)}"
                )
            classes.append(record["class"])
            breeds.append(str((record.get("subject") or {}).get("breed", "?")))
        probs = classifier.probabilities(images)
        for s, c, b, p in zip(batch, classes, breeds, probs, strict=True):
            out.append(ScoredRender(s.key, c, float(p[groups[c]].sum()), b))
        if progress:
            progress(len(out), len(samples))
    return out


def curate(
    src: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    out_dir: str | os.PathLike[str],
    *,
    keep_fraction: float = 0.5,
    weights: str | os.PathLike[str] | None = None,
    classifier: Any = None,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[Curation, dict[str, Path]]:
    """Score the renders of `src`, keep the best `keep_fraction` per class, write the keep-list and sheet.

    Writes `out_dir/curation.json`, `curation.png` and `index.html` as one folder that replaces `out_dir`
    whole; nothing is written when scoring fails.
    """
    from drsynth.realism import ImageNetClassifier

    check_fraction(keep_fraction)  # before loading a network
    out = Path(out_dir)
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not (out / CURATION_FILE).is_file())):
        raise DatasetError(
            f"--out {out} is a file or holds other files; curation replaces its output folder whole, so give "
            "a new or an earlier curation's folder"
        )
    source = open_renders(src)
    clf = classifier or ImageNetClassifier(weights).load()
    scored = score_renders(source, clf, progress=progress)
    kept = select(scored, keep_fraction)
    classes: dict[str, dict[str, Any]] = {}
    for c in source.info.classes:
        items = [s for s in scored if s.class_name == c]
        keep = [s.score for s in items if s.key in kept]
        drop = [s.score for s in items if s.key not in kept]
        classes[c] = {
            "rendered": len(items),
            "kept": len(keep),
            "lowest_kept_score": min(keep) if keep else None,
            "mean_score_kept": float(np.mean(keep)) if keep else None,
            "mean_score_dropped": float(np.mean(drop)) if drop else None,
            "breeds": _per_breed(items, kept),
        }
    curation = Curation(
        keep_fraction=keep_fraction,
        weights=str(weights) if weights else "torchvision:IMAGENET1K_V1",
        scenario=source.info.scenario_name,
        seed=source.info.seed,
        classes=classes,
        kept=kept,
        scores={s.key: s.score for s in scored},
    )
    buf = io.BytesIO()
    contact_sheet(source, scored, kept).save(buf, format="PNG")
    with atomic_dir(out, overwrite=True) as tmp:  # the three files replace an earlier curation together
        (tmp / SHEET_FILE).write_bytes(buf.getvalue())
        (tmp / "index.html").write_text(_html(curation))
        (tmp / CURATION_FILE).write_text(json.dumps(curation.to_json(), indent=2, sort_keys=True) + "\n")
    return curation, {"json": out / CURATION_FILE, "sheet": out / SHEET_FILE, "html": out / "index.html"}


def _per_breed(items: Sequence[ScoredRender], kept: frozenset[str]) -> dict[str, dict[str, Any]]:
    """Kept share per breed, lowest first: the subjects that read least like their class."""
    rendered = Counter(s.breed for s in items)
    kept_n = Counter(s.breed for s in items if s.key in kept)
    rows = {
        b: {"rendered": n, "kept": kept_n[b], "kept_fraction": kept_n[b] / n} for b, n in rendered.items()
    }
    return dict(sorted(rows.items(), key=lambda kv: (kv[1]["kept_fraction"], kv[0])))


def read_curation(path: str | os.PathLike[str]) -> dict[str, Any]:
    """A curation file's contents, checked; DatasetError with the reason otherwise."""
    p = Path(path)
    if p.is_dir():
        p = p / CURATION_FILE
    try:
        data = json.loads(p.read_text())
    except FileNotFoundError:
        raise DatasetError(f"curation file {p} not found (written by `drsynth curate --out DIR`)") from None
    except (OSError, ValueError) as e:
        raise DatasetError(f"curation file {p} is unreadable: {e}") from None
    if (
        not isinstance(data, dict)
        or data.get("kind") != "drsynth-curation"
        or not isinstance(data.get("kept"), list)
    ):
        raise DatasetError(
            f"{p} is not a drsynth curation file (expected kind 'drsynth-curation' and a 'kept' list)"
        )
    if not data["kept"]:
        raise DatasetError(f"{p} keeps no render")
    return {**data, "path": str(p.absolute())}


def contact_sheet(
    source: Any, scored: Sequence[ScoredRender], kept: frozenset[str], per_row: int = 8, tile: int = 128
) -> Image.Image:
    """Two rows per class: its best-scored kept renders and its worst-scored dropped ones, with scores."""
    by_key = {s.key: s for s in source.samples}
    rows: list[tuple[str, list[ScoredRender]]] = []
    for c in source.info.classes:
        items = sorted((s for s in scored if s.class_name == c), key=lambda s: (-s.score, s.key))
        rows.append((f"{c}: best kept", [s for s in items if s.key in kept][:per_row]))
        rows.append((f"{c}: worst dropped", [s for s in reversed(items) if s.key not in kept][:per_row]))
    head, cap = 20, 14
    sheet = Image.new("RGB", (per_row * tile, len(rows) * (tile + head + cap)), (24, 24, 24))
    draw = ImageDraw.Draw(sheet)
    for r, (title, items) in enumerate(rows):
        y0 = r * (tile + head + cap)
        draw.text((4, y0 + 4), title if items else f"{title}: none", fill=(240, 240, 240))
        for j, s in enumerate(items):
            with Image.open(by_key[s.key].jpg) as im:
                sheet.paste(
                    im.convert("RGB").resize((tile, tile), Image.Resampling.BILINEAR), (j * tile, y0 + head)
                )
            colour = (120, 220, 120) if s.key in kept else (240, 110, 110)
            draw.text((j * tile + 3, y0 + head + tile), f"{s.key} {s.score:.3f}", fill=colour)
    return sheet


def _html(c: Curation) -> str:
    rows = "".join(
        f"<tr><td>{name}</td><td>{v['kept']} / {v['rendered']}</td>"
        f"<td>{_fmt(v['lowest_kept_score'])}</td><td>{_fmt(v['mean_score_kept'])}</td>"
        f"<td>{_fmt(v['mean_score_dropped'])}</td>"
        f"<td>{_least_kept(v['breeds'])}</td></tr>"
        for name, v in c.classes.items()
    )
    return (
        "<!doctype html><meta charset=utf-8><title>drsynth curation</title>"
        "<style>body{font-family:sans-serif}td,th{padding:2px 8px;text-align:left}</style>"
        f"<h1>Curation: {c.scenario} (seed {c.seed})</h1><p>kept the best {c.keep_fraction:.0%} of each class by "
        f"{CRITERION}; classifier mobilenet_v2, weights {c.weights}.</p>"
        "<table><tr><th>class</th><th>kept</th><th>lowest kept score</th><th>mean kept</th><th>mean dropped</th><th>least kept breeds</th></tr>"
        f"{rows}</table><img src='{SHEET_FILE}' style='max-width:100%'>"
    )


def _least_kept(breeds: dict[str, dict[str, Any]], k: int = 6) -> str:
    return ", ".join(f"{b} {x['kept']}/{x['rendered']}" for b, x in list(breeds.items())[:k])


def _fmt(x: float | None) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.3f}"


__all__ = [
    "CURATION_FILE",
    "Curation",
    "ScoredRender",
    "curate",
    "open_renders",
    "read_curation",
    "score_renders",
    "select",
]
