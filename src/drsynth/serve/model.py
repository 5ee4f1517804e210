"""OnnxPredictor: a kserve.Model over an exported drsynth ONNX classifier.

Lifecycle (KServe's): `__init__` stores names and paths only; `load()` opens the onnxruntime session,
builds the request decoder from the preprocessing stored in the model, and sets `ready`; per request
`preprocess` decodes and validates, `predict` only runs the session (through the micro-batcher), and
`postprocess` applies softmax and names the classes.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import kserve
import numpy as np
from kserve.protocol.infer_type import InferOutput, InferRequest, InferResponse

from drsynth.onnx_model import OnnxClassifier, available_providers, softmax
from drsynth.serve import metrics
from drsynth.serve.batcher import MicroBatcher
from drsynth.serve.decode import DecodedRequest, RequestDecoder

log = logging.getLogger("drsynth.serve")
DEFAULT_GPU_BATCH = 32


@dataclass(frozen=True)
class Scores:
    """predict's result: the logits of a request, with the request they answer."""

    logits: np.ndarray  # [N, C]
    request: DecodedRequest


class OnnxPredictor(kserve.Model):
    """Classifies JPEG/PNG images or preprocessed tensors with an exported drsynth ONNX model."""

    def __init__(
        self,
        name: str,
        model_path: str | Path,
        *,
        max_batch: int | None = None,
        batch_wait_ms: float = 0.0,
        max_instances: int = 64,
        max_image_pixels: int = 50_000_000,
        threads: int | None = None,
        spin_wait: bool = False,
        prefer_gpu: bool = True,
    ):
        super().__init__(name)
        self.model_path = Path(model_path)
        self.max_batch = max_batch
        self.batch_wait_ms = batch_wait_ms
        self.max_instances = max_instances
        self.max_image_pixels = max_image_pixels
        self.threads = threads
        self.spin_wait = spin_wait
        self.prefer_gpu = prefer_gpu
        self.classifier: OnnxClassifier | None = None
        self.decoder: RequestDecoder | None = None
        self.batcher: MicroBatcher | None = None

    # ---- lifecycle -----------------------------------------------------------------------------------

    def load(self) -> bool:
        wanted = available_providers(prefer_gpu=self.prefer_gpu)
        clf = OnnxClassifier.load(
            self.model_path,
            providers=wanted,
            threads=self.threads,
            session_config={"session.intra_op.allow_spinning": "1" if self.spin_wait else "0"},
        )
        got = clf.providers
        # onnxruntime-gpu falls back to CPU without raising (missing CUDA/cuDNN libraries): say so loudly.
        log.info(
            "model %s: %s, classes %s, execution providers %s", self.name, self.model_path, clf.classes, got
        )
        if "CUDAExecutionProvider" in wanted and "CUDAExecutionProvider" not in got:
            log.warning("CUDAExecutionProvider is installed but the session fell back to %s", got)
        self.classifier = clf
        if self.max_batch is None:
            # On a GPU, batching is where throughput comes from. On CPU we measured (docs/benchmarks.md) a
            # batch of N costing about N single runs while every member waits for the whole batch, so CPU
            # serving runs requests one by one unless --max-batch says otherwise.
            self.max_batch = DEFAULT_GPU_BATCH if "CUDAExecutionProvider" in got else 1
        log.info(
            "micro-batching: up to %d instances per run, waiting %.1f ms", self.max_batch, self.batch_wait_ms
        )
        self.decoder = RequestDecoder(
            clf.preprocess, max_instances=self.max_instances, max_image_pixels=self.max_image_pixels
        )
        self.batcher = MicroBatcher(
            clf.logits,
            max_batch=self.max_batch,
            max_wait_s=self.batch_wait_ms / 1000.0,
            on_batch=metrics.BATCH_SIZE.labels(model_name=self.name).observe,
        )
        # One warm-up run so the first client does not pay for onnxruntime's lazy initialisation.
        clf.logits(np.zeros((1, *self.decoder.tensor_shape), np.float32))
        self.ready = True
        return self.ready

    def stop(self) -> None:
        self.ready = False

    @property
    def classes(self) -> list[str]:
        return self.classifier.classes if self.classifier else []

    # ---- metadata (v2 GET /v2/models/<name>) ----------------------------------------------------------

    def get_input_types(self) -> list[dict]:
        s = self.decoder.pp.image_size if self.decoder else -1
        return [
            {"name": "image", "datatype": "BYTES", "shape": [-1]},
            {"name": "input", "datatype": "FP32", "shape": [-1, 3, s, s]},
        ]

    def get_output_types(self) -> list[dict]:
        c = len(self.classes) or -1
        return [
            {"name": "label", "datatype": "BYTES", "shape": [-1]},
            {"name": "probability", "datatype": "FP32", "shape": [-1]},
            {"name": "probabilities", "datatype": "FP32", "shape": [-1, c]},
        ]

    # ---- request path --------------------------------------------------------------------------------

    def validate(self, payload: Any) -> Any:
        # preprocess already validated everything; kserve's generic check assumes dict/InferRequest payloads.
        return payload

    async def preprocess(
        self, payload: dict | InferRequest | bytes, headers: dict[str, str] | None = None
    ) -> DecodedRequest:
        # Image decoding and resizing are CPU work: keep them off the event loop.
        return await asyncio.get_running_loop().run_in_executor(None, self.decoder.decode, payload, headers)

    async def predict(self, payload: DecodedRequest, headers: dict[str, str] | None = None) -> Scores:
        logits = await self.batcher.submit(payload.inputs)
        return Scores(logits=logits, request=payload)

    def postprocess(self, result: Scores, headers: dict[str, str] | None = None) -> dict | InferResponse:
        probs = softmax(result.logits.astype(np.float32))
        top = probs.argmax(axis=1)
        labels = [self.classes[i] for i in top]
        top_p = probs[np.arange(len(top)), top]
        metrics.INSTANCES.labels(model_name=self.name).inc(len(top))
        req = result.request
        if req.protocol == "v1":
            return {
                "predictions": [
                    {
                        "label": label,
                        "probability": float(p),
                        "probabilities": dict(zip(self.classes, map(float, row), strict=True)),
                    }
                    for label, p, row in zip(labels, top_p, probs, strict=True)
                ]
            }
        label_out = InferOutput("label", [len(labels)], "BYTES")
        label_out.set_data_from_numpy(np.array(labels, dtype=np.object_), binary_data=False)
        return InferResponse(
            response_id=req.request_id or "",
            model_name=self.name,
            infer_outputs=[
                label_out,
                InferOutput("probability", [len(labels)], "FP32", data=top_p.astype(np.float32)),
                InferOutput("probabilities", list(probs.shape), "FP32", data=probs.astype(np.float32)),
            ],
            parameters={"classes": json.dumps(self.classes)},
            use_binary_outputs=req.binary_outputs,
            requested_outputs=req.requested_outputs,
        )
