"""Does this subject read as a cat? Renders scored by an ImageNet classifier.

A pretrained ImageNet network is a cheap stand-in for "a person (or a real-photo classifier) would recognise
this": each rendered image counts as recognised when the network's top-1 ImageNet class falls in the group of
its drsynth class (cat: 281-285, dog: 151-268, ...). The report gives the fraction per class and per breed /
model, the labels the misses went to, and a contact sheet of the least-recognised breeds, so a user can check
imported models and procedural presets, and drsynth's own subjects are held to a target.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from drsynth.errors import ConfigError, ModelError
from drsynth.preprocess import Preprocess

#: ImageNet-1k class indices that count as the drsynth class (torchvision index order).
IMAGENET_GROUPS: dict[str, tuple[int, ...]] = {
    "cat": tuple(range(281, 286)),
    "dog": tuple(range(151, 269)),
    "bicycle": (444, 671),
    "car": (407, 436, 468, 511, 609, 627, 656, 661, 717, 751, 817),
}
#: Aliases users may name their classes with.
CLASS_ALIASES = {
    "cats": "cat",
    "dogs": "dog",
    "bike": "bicycle",
    "bikes": "bicycle",
    "bicycles": "bicycle",
    "cars": "car",
}


def imagenet_group(class_name: str) -> tuple[int, ...]:
    """The ImageNet classes of a drsynth class, or a ConfigError naming the classes that have one."""
    key = CLASS_ALIASES.get(class_name.lower(), class_name.lower())
    if key not in IMAGENET_GROUPS:
        raise ConfigError(
            f"class '{class_name}' has no ImageNet group to check realism against; supported classes: "
            f"{', '.join(IMAGENET_GROUPS)} (restrict the scenario with --classes)"
        )
    return IMAGENET_GROUPS[key]


def imagenet_labels() -> list[str]:
    """The 1000 ImageNet class names (from torchvision's weight metadata, no download)."""
    from torchvision.models import MobileNet_V2_Weights

    return list(MobileNet_V2_Weights.IMAGENET1K_V1.meta["categories"])


class ImageNetClassifier:
    """torchvision MobileNetV2 with its ImageNet head, from a local state dict or torchvision's weights."""

    def __init__(
        self, weights: str | Path | None = None, *, batch_size: int = 32, threads: int | None = None
    ):
        self.weights = None if weights is None else str(weights)
        self.batch_size = batch_size
        self.threads = threads
        self.preprocess = Preprocess()
        self._net = None

    def load(self) -> ImageNetClassifier:
        import torch
        from torchvision import models as tvm

        if self.threads:
            torch.set_num_threads(self.threads)
        net = tvm.mobilenet_v2()
        if self.weights is None:
            state = _fetch_torchvision_weights()
        else:
            from drsynth.models import read_state_dict

            state = read_state_dict(self.weights)
        try:
            result = net.load_state_dict(state, strict=False)
        except RuntimeError as e:
            raise ModelError(
                f"weights {self.weights} do not fit torchvision's mobilenet_v2: {str(e)[:300]}; expected the state "
                "dict of the full ImageNet model (1000 classes)"
            ) from None
        if result.missing_keys or result.unexpected_keys:
            raise ModelError(
                f"weights {self.weights} do not fit torchvision's mobilenet_v2 with its ImageNet head: missing "
                f"{result.missing_keys[:4]}, unexpected {result.unexpected_keys[:4]}; realism needs the full "
                "1000-class model, not a drsynth checkpoint"
            )
        self._net = net.eval()
        return self

    def probabilities(self, images: list[np.ndarray]) -> np.ndarray:
        """Softmax over the 1000 classes (N x 1000) for uint8 HxWx3 images."""
        import torch

        from drsynth.preprocess import normalize, resize_and_crop

        if self._net is None:
            self.load()
        out = []
        for i in range(0, len(images), self.batch_size):
            batch = [
                normalize(np.asarray(resize_and_crop(Image.fromarray(im), self.preprocess)), self.preprocess)
                for im in images[i : i + self.batch_size]
            ]
            x = torch.from_numpy(np.stack(batch))
            with torch.inference_mode():
                out.append(torch.softmax(self._net(x), dim=1).numpy())
        return np.concatenate(out) if out else np.zeros((0, 1000), np.float32)


def _fetch_torchvision_weights() -> dict:
    from torchvision.models import MobileNet_V2_Weights

    w = MobileNet_V2_Weights.IMAGENET1K_V1
    try:
        return w.get_state_dict(progress=False, check_hash=False)
    except Exception as e:  # offline: URLError, timeouts, HTTP errors
        raise ModelError(
            f"cannot fetch torchvision's ImageNet weights for mobilenet_v2 from {w.url} ({type(e).__name__}: {e}); "
            f"on an offline machine pass --weights PATH to a torchvision mobilenet_v2 state dict (the file "
            f"{Path(w.url).name}), or put that file into the torch hub cache (TORCH_HOME)/hub/checkpoints/"
        ) from None


# ---------------------------------------------------------------------------------------------- scoring


@dataclass(frozen=True)
class Scored:
    """One image's verdict."""

    index: int
    class_name: str
    breed: str
    subject_id: str
    recognized: bool
    top1: int
    top1_label: str
    group_probability: float  # softmax mass on the class's ImageNet group


def score(probs: np.ndarray, metas: list[dict[str, Any]], labels: list[str] | None = None) -> list[Scored]:
    """Verdicts for images whose metadata give `index`, `class` and `subject` ({id, breed})."""
    labels = labels or imagenet_labels()
    out = []
    for p, m in zip(probs, metas, strict=True):
        group = np.array(imagenet_group(m["class"]))
        top1 = int(np.argmax(p))
        subj = m.get("subject") or {}
        out.append(
            Scored(
                index=int(m["index"]),
                class_name=m["class"],
                breed=str(subj.get("breed", "?")),
                subject_id=str(subj.get("id", "?")),
                recognized=bool(top1 in set(group.tolist())),
                top1=top1,
                top1_label=labels[top1],
                group_probability=float(p[group].sum()),
            )
        )
    return out


def summarize(scored: list[Scored]) -> dict[str, Any]:
    """Per class and per breed: count, recognised fraction, mean group probability, the commonest labels."""

    def block(items: list[Scored]) -> dict[str, Any]:
        n = len(items)
        rec = sum(s.recognized for s in items)
        misses = Counter(s.top1_label for s in items if not s.recognized)
        return {
            "count": n,
            "recognized": rec,
            "fraction": rec / n if n else 0.0,
            "mean_group_probability": float(np.mean([s.group_probability for s in items])) if n else 0.0,
            "top_misses": misses.most_common(5),
        }

    by_class: dict[str, list[Scored]] = defaultdict(list)
    by_breed: dict[tuple[str, str], list[Scored]] = defaultdict(list)
    for s in scored:
        by_class[s.class_name].append(s)
        by_breed[(s.class_name, s.breed)].append(s)
    classes = {}
    for c, items in by_class.items():
        classes[c] = block(items)
        classes[c]["imagenet_group"] = list(imagenet_group(c))
        classes[c]["breeds"] = {
            b: block(v) for (cc, b), v in sorted(by_breed.items(), key=lambda kv: kv[0][1]) if cc == c
        }
    total = len(scored)
    return {
        "count": total,
        "fraction": sum(s.recognized for s in scored) / total if total else 0.0,
        "classes": classes,
    }


def least_recognized(summary: dict[str, Any], k: int = 8, min_count: int = 1) -> list[tuple[str, str, float]]:
    """(class, breed, fraction) of the k breeds with the lowest recognised fraction."""
    rows = [
        (c, b, v["fraction"])
        for c, cs in summary["classes"].items()
        for b, v in cs["breeds"].items()
        if v["count"] >= min_count
    ]
    return sorted(rows, key=lambda r: (r[2], r[0], r[1]))[:k]


def contact_sheet(
    images: dict[int, np.ndarray],
    scored: list[Scored],
    rows: list[tuple[str, str, float]],
    per_row: int = 6,
    tile: int = 160,
) -> Image.Image:
    """One row per listed breed: its images, each captioned with the network's top-1 label (red = missed)."""
    by_breed: dict[tuple[str, str], list[Scored]] = defaultdict(list)
    for s in scored:
        by_breed[(s.class_name, s.breed)].append(s)
    head = 22
    cap = 14
    sheet = Image.new("RGB", (per_row * tile, max(1, len(rows)) * (tile + head + cap)), (24, 24, 24))
    draw = ImageDraw.Draw(sheet)
    for r, (c, b, frac) in enumerate(rows):
        y0 = r * (tile + head + cap)
        draw.text((4, y0 + 4), f"{c} / {b}: {frac:.0%} recognised", fill=(240, 240, 240))
        for j, s in enumerate(by_breed[(c, b)][:per_row]):
            im = Image.fromarray(images[s.index]).resize((tile, tile), Image.Resampling.BILINEAR)
            sheet.paste(im, (j * tile, y0 + head))
            colour = (120, 220, 120) if s.recognized else (240, 110, 110)
            draw.text((j * tile + 3, y0 + head + tile), s.top1_label[:24], fill=colour)
    return sheet


# ---------------------------------------------------------------------------------------------- run


@dataclass(frozen=True)
class RealismResult:
    summary: dict[str, Any]
    scored: list[Scored]
    images: dict[int, np.ndarray]


def render_scenario(scenario, indices: Iterable[int]) -> Iterator[tuple[np.ndarray, dict[str, Any]]]:
    """(image, metadata) for each index, rendered in memory with the product's renderer."""
    from drsynth import render_job

    for image, record in render_job.render_samples(scenario, list(indices)):
        yield np.asarray(image.convert("RGB")), record


def run_realism(
    scenario,
    count: int,
    *,
    weights: str | Path | None = None,
    start: int = 0,
    progress: Callable[[int, int], None] | None = None,
    render: Callable[[Any, list[int]], Iterable[tuple[np.ndarray, dict[str, Any]]]] | None = None,
) -> RealismResult:
    """Render `count` images of `scenario` (indices start..start+count-1) and score them."""
    for c in scenario.class_names:
        imagenet_group(c)  # fail before rendering
    if count < 1:
        raise ConfigError(f"--count must be at least 1, got {count}")
    clf = ImageNetClassifier(weights).load()
    labels = imagenet_labels()
    render = render or render_scenario
    images: dict[int, np.ndarray] = {}
    scored: list[Scored] = []
    batch_imgs: list[np.ndarray] = []
    batch_meta: list[dict[str, Any]] = []

    def flush() -> None:
        if batch_imgs:
            scored.extend(score(clf.probabilities(batch_imgs), batch_meta, labels))
            batch_imgs.clear()
            batch_meta.clear()

    for done, (image, meta) in enumerate(render(scenario, list(range(start, start + count))), start=1):
        images[int(meta["index"])] = image
        batch_imgs.append(image)
        batch_meta.append(meta)
        if len(batch_imgs) >= 32:
            flush()
        if progress:
            progress(done, count)
    flush()
    return RealismResult(summarize(scored), scored, images)


def write_report(
    result: RealismResult, out_dir: Path, *, scenario_name: str, weights: str | None
) -> dict[str, Path]:
    """realism.json (summary + per-image verdicts), least_recognized.png and a small index.html."""
    from drsynth.fsutil import atomic_write_bytes, atomic_write_json

    out_dir.mkdir(parents=True, exist_ok=True)
    worst = least_recognized(result.summary, k=8)
    data = {
        "scenario": scenario_name,
        "weights": weights or "torchvision:IMAGENET1K_V1",
        "criterion": "top-1 ImageNet class in the class's group",
        **result.summary,
        "least_recognized": [{"class": c, "breed": b, "fraction": f} for c, b, f in worst],
        "images": [asdict(s) for s in result.scored],
    }
    paths = {
        "json": out_dir / "realism.json",
        "sheet": out_dir / "least_recognized.png",
        "html": out_dir / "index.html",
    }
    atomic_write_json(paths["json"], data)
    import io

    buf = io.BytesIO()
    contact_sheet(result.images, result.scored, worst).save(buf, format="PNG")
    atomic_write_bytes(paths["sheet"], buf.getvalue())
    atomic_write_bytes(paths["html"], _html(data).encode())
    return paths


def _html(data: dict[str, Any]) -> str:
    rows = []
    for c, cs in data["classes"].items():
        rows.append(
            f"<tr><th>{c}</th><th>{cs['fraction']:.1%}</th><th>{cs['count']}</th><th>{cs['mean_group_probability']:.2f}</th>"
            f"<th>{', '.join(f'{k} ({v})' for k, v in cs['top_misses'])}</th></tr>"
        )
        for b, v in sorted(cs["breeds"].items(), key=lambda kv: kv[1]["fraction"]):
            rows.append(
                f"<tr><td>&nbsp;&nbsp;{b}</td><td>{v['fraction']:.0%}</td><td>{v['count']}</td>"
                f"<td>{v['mean_group_probability']:.2f}</td><td>{', '.join(f'{k} ({n})' for k, n in v['top_misses'])}</td></tr>"
            )
    return (
        "<!doctype html><meta charset=utf-8><title>drsynth realism</title>"
        "<style>body{font-family:sans-serif}td,th{padding:2px 8px;text-align:left}</style>"
        f"<h1>Realism: {data['scenario']}</h1><p>{data['count']} renders, weights {data['weights']}; "
        f"recognised = {data['criterion']}.</p><img src='least_recognized.png' style='max-width:100%'>"
        "<table><tr><th>class / breed</th><th>recognised</th><th>n</th><th>group prob.</th><th>commonest misses</th></tr>"
        + "".join(rows)
        + "</table>"
    )


def format_table(summary: dict[str, Any], per_breed: bool = True) -> list[tuple[str, str, int, str]]:
    """Rows (name, fraction, count, misses) for printing."""
    rows = []
    for c, cs in summary["classes"].items():
        rows.append((c, f"{cs['fraction']:.1%}", cs["count"], ", ".join(k for k, _ in cs["top_misses"][:3])))
        if per_breed:
            for b, v in sorted(cs["breeds"].items(), key=lambda kv: kv[1]["fraction"]):
                rows.append(
                    (
                        f"  {b}",
                        f"{v['fraction']:.0%}",
                        v["count"],
                        ", ".join(k for k, _ in v["top_misses"][:2]),
                    )
                )
    return rows


__all__ = [
    "IMAGENET_GROUPS",
    "ImageNetClassifier",
    "RealismResult",
    "Scored",
    "contact_sheet",
    "format_table",
    "imagenet_group",
    "imagenet_labels",
    "least_recognized",
    "run_realism",
    "score",
    "summarize",
    "write_report",
]
