"""Contact sheets: a grid of labelled renders for people to look at (`drsynth preview`)."""

from __future__ import annotations

import io
import math
from collections.abc import Callable
from pathlib import Path

import numpy as np

from drsynth.config import Scenario
from drsynth.fsutil import atomic_write_bytes

LABEL_H = 30


def breed_jobs(scenario: Scenario, pools: dict) -> list[tuple[int, str]]:
    """(index, subject id) per breed: the first subject of each breed, at an index of its class."""
    jobs = []
    n = len(scenario.class_names)
    for ci, cls in enumerate(scenario.class_names):
        seen: set[str] = set()
        k = 0
        for s in pools[cls]:
            if s.breed in seen:
                continue
            seen.add(s.breed)
            jobs.append((k * n + ci, s.id))
            k += 1
    return jobs


def tile(image: np.ndarray, lines: list[str]) -> np.ndarray:
    """The render with a caption bar underneath."""
    from PIL import Image, ImageDraw, ImageFont

    h, w = image.shape[:2]
    canvas = Image.new("RGB", (w, h + LABEL_H), (20, 20, 20))
    canvas.paste(Image.fromarray(image), (0, 0))
    draw = ImageDraw.Draw(canvas)
    try:
        font = ImageFont.load_default(size=11)
    except TypeError:  # Pillow < 10.1
        font = ImageFont.load_default()
    for i, line in enumerate(lines[:2]):
        draw.text((4, h + 2 + 13 * i), line[: max(8, w // 6)], fill=(235, 235, 235), font=font)
    return np.asarray(canvas)


def grid(tiles: list[np.ndarray], columns: int) -> np.ndarray:
    columns = max(1, min(columns, len(tiles)))
    rows = math.ceil(len(tiles) / columns)
    th, tw = tiles[0].shape[:2]
    sheet = np.full((rows * th, columns * tw, 3), 255, np.uint8)
    for i, t in enumerate(tiles):
        r, c = divmod(i, columns)
        sheet[r * th : (r + 1) * th, c * tw : (c + 1) * tw] = t
    return sheet


def preview_sheet(
    scenario: Scenario,
    out: str | Path,
    *,
    count: int = 24,
    by: str = "index",
    columns: int = 8,
    on_progress: Callable[[int, int], None] | None = None,
) -> int:
    """Render a contact sheet to `out` (PNG, written atomically); returns the number of tiles."""
    from PIL import Image

    from drsynth.errors import ConfigError
    from drsynth.render_job import SampleRenderer, _set_rasterizer_threads

    if count < 1:
        raise ConfigError(f"--count must be >= 1, got {count}")
    out = Path(out)
    if out.suffix.lower() != ".png":
        raise ConfigError(f"--out must name a .png file, got {out}")
    _set_rasterizer_threads(1)
    worker = SampleRenderer(scenario)
    try:
        jobs = breed_jobs(scenario, worker.ctx.pools) if by == "breed" else [(i, None) for i in range(count)]
        tiles = []
        for n, (index, subject_id) in enumerate(jobs):
            s = worker.render(index, subject_id=subject_id)
            r = s.record
            lines = [f"{r['class']} | {r['subject']['breed']}", f"#{index} visible {r['visible_fraction']:.0%}"]
            tiles.append(tile(s.image, lines))
            if on_progress:
                on_progress(n + 1, len(jobs))
    finally:
        worker.close()
    buf = io.BytesIO()
    Image.fromarray(grid(tiles, columns)).save(buf, format="PNG")
    atomic_write_bytes(out, buf.getvalue())
    return len(tiles)
