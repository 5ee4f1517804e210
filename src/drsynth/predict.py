"""One-off predictions with an exported ONNX classifier: `drsynth predict --model model.onnx IMAGE...`.

The same OnnxClassifier and preprocessing as evaluation and serving, without a server.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from drsynth.errors import AssetError
from drsynth.onnx_model import OnnxClassifier
from drsynth.preprocess import load_image


@dataclass(frozen=True)
class Prediction:
    path: Path
    label: str
    probability: float
    probabilities: dict[str, float]  # every class, in the model's label order

    def top(self, k: int) -> list[tuple[str, float]]:
        return sorted(self.probabilities.items(), key=lambda kv: -kv[1])[:k]

    def to_json(self) -> dict:
        return {
            "path": str(self.path),
            "label": self.label,
            "probability": self.probability,
            "probabilities": self.probabilities,
        }


def read_images(paths: Sequence[str | Path]):
    """Decode every image first, so one bad file fails the call before any work is wasted."""
    images = []
    for p in map(Path, paths):
        if not p.is_file():
            raise AssetError(f"image not found: {p}")
        try:
            images.append(load_image(p.read_bytes()))
        except ValueError as e:
            reason = re.sub(r"<_io\.BytesIO object at 0x[0-9a-fA-F]+>", "the data", str(e))
            raise AssetError(f"{p}: {reason}; expected a JPEG or PNG photo") from None
    return images


def predict_images(
    model: str | Path | OnnxClassifier,
    paths: Sequence[str | Path],
    *,
    batch_size: int = 32,
    prefer_gpu: bool = True,
) -> list[Prediction]:
    """Label and class probabilities for each image file, in order."""
    from drsynth.onnx_model import available_providers

    clf = (
        model
        if isinstance(model, OnnxClassifier)
        else OnnxClassifier.load(model, providers=available_providers(prefer_gpu))
    )
    images = read_images(paths)
    out: list[Prediction] = []
    for start in range(0, len(images), batch_size):
        probs = clf.predict_proba(images[start : start + batch_size])
        for path, row in zip(paths[start : start + batch_size], probs, strict=True):
            i = int(row.argmax())
            out.append(
                Prediction(
                    path=Path(path),
                    label=clf.classes[i],
                    probability=float(row[i]),
                    probabilities={c: float(p) for c, p in zip(clf.classes, row, strict=True)},
                )
            )
    return out
