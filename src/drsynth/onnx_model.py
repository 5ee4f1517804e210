"""Load an exported drsynth ONNX classifier and run it: the inference side shared by evaluate, predict and serve.

The model contract (written by `drsynth export`):
- input `input`: float32 [N, 3, H, W], preprocessed as described by `drsynth.preprocess.Preprocess`;
- output `logits`: float32 [N, n_classes], before softmax;
- metadata_props: `drsynth.classes` (JSON list of class names, label order), `drsynth.preprocess`
  (Preprocess JSON), `drsynth.backbone`, `drsynth.version`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from drsynth.errors import ModelError
from drsynth.preprocess import Preprocess, preprocess_batch

INPUT_NAME = "input"
OUTPUT_NAME = "logits"
META_CLASSES = "drsynth.classes"
META_PREPROCESS = "drsynth.preprocess"
META_BACKBONE = "drsynth.backbone"
META_VERSION = "drsynth.version"


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def available_providers(prefer_gpu: bool = True) -> list[str]:
    """CUDA first when onnxruntime has it, CPU always (the caller verifies what the session really got)."""
    import onnxruntime as ort

    have = ort.get_available_providers()
    order = (["CUDAExecutionProvider"] if prefer_gpu else []) + ["CPUExecutionProvider"]
    return [p for p in order if p in have]


@dataclass
class OnnxClassifier:
    """An ONNX Runtime session plus the class names and preprocessing stored in the model."""

    path: Path
    session: object
    classes: list[str]
    preprocess: Preprocess
    backbone: str

    @classmethod
    def load(
        cls,
        path: str | Path,
        *,
        providers: list[str] | None = None,
        threads: int | None = None,
        session_config: dict[str, str] | None = None,
    ) -> OnnxClassifier:
        """`session_config`: onnxruntime session config entries, e.g. {"session.intra_op.allow_spinning": "0"}."""
        import onnxruntime as ort

        path = Path(path)
        if not path.is_file():
            raise ModelError(f"ONNX model not found: {path} (export one with `drsynth export`)")
        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = threads
        for key, value in (session_config or {}).items():
            opts.add_session_config_entry(key, value)
        try:
            session = ort.InferenceSession(str(path), sess_options=opts, providers=providers or available_providers())
        except Exception as e:
            raise ModelError(f"cannot load ONNX model {path}: {e}") from None
        meta = session.get_modelmeta().custom_metadata_map
        missing = [k for k in (META_CLASSES, META_PREPROCESS) if k not in meta]
        if missing:
            raise ModelError(
                f"{path} lacks drsynth metadata {missing}: it was not written by `drsynth export` "
                "(class names and preprocessing are needed to interpret its outputs)"
            )
        try:
            classes = json.loads(meta[META_CLASSES])
            pp = Preprocess.from_json(meta[META_PREPROCESS])
        except Exception as e:
            raise ModelError(f"{path}: unreadable drsynth metadata ({e})") from None
        inputs = [i.name for i in session.get_inputs()]
        outputs = [o.name for o in session.get_outputs()]
        if INPUT_NAME not in inputs or OUTPUT_NAME not in outputs:
            raise ModelError(f"{path}: expected input '{INPUT_NAME}' and output '{OUTPUT_NAME}', got {inputs} -> {outputs}")
        return cls(path=path, session=session, classes=list(classes), preprocess=pp, backbone=meta.get(META_BACKBONE, "?"))

    @property
    def providers(self) -> list[str]:
        """The execution providers the session really uses (onnxruntime falls back to CPU silently)."""
        return list(self.session.get_providers())

    def logits(self, batch: np.ndarray) -> np.ndarray:
        """float32 [N,3,H,W] preprocessed batch -> logits [N, C]."""
        return self.session.run([OUTPUT_NAME], {INPUT_NAME: np.ascontiguousarray(batch, dtype=np.float32)})[0]

    def predict_proba(self, images: list[Image.Image]) -> np.ndarray:
        """PIL images -> class probabilities [N, C]."""
        return softmax(self.logits(preprocess_batch(images, self.preprocess)))
