"""The settings of `drsynth serve`, validated once at the edge."""

from __future__ import annotations

import re
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

MIB = 1024 * 1024


class ServeConfig(BaseModel):
    """Everything the predictor server needs; the CLI builds one from its flags."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model_path: Path = Field(description="the exported ONNX classifier (`drsynth export`)")
    model_name: str = Field(
        "model",
        min_length=1,
        max_length=128,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$",
        description="the name in the URL: /v1/models/<name>:predict, /v2/models/<name>/infer",
    )
    host: str = Field("127.0.0.1", min_length=1, description="address to bind; loopback unless you mean it")
    port: int = Field(8080, ge=0, le=65535, description="TCP port; 0 picks a free one (printed at start)")
    max_batch: int | None = Field(
        None,
        ge=1,
        le=1024,
        description="most instances one onnxruntime run takes; None: 32 on CUDA, 1 on CPU (see docs/serving.md)",
    )
    batch_wait_ms: float = Field(
        0.0, ge=0.0, le=1000.0, description="how long the batcher waits for more requests before a run"
    )
    max_instances: int = Field(64, ge=1, le=4096, description="most instances (images) one request may carry")
    max_payload_bytes: int = Field(16 * MIB, ge=1024, le=1024 * MIB, description="largest request body")
    max_image_pixels: int = Field(
        50_000_000, ge=64, description="largest decoded image (width x height), against decompression bombs"
    )
    threads: int | None = Field(None, ge=1, le=256, description="onnxruntime intra-op threads (default: all)")
    spin_wait: bool = Field(
        False,
        description="let onnxruntime's threads busy-wait between runs (lower latency on an idle, dedicated "
        "machine; off by default because spinning threads starve image decoding on a shared CPU)",
    )
    prefer_gpu: bool = Field(True, description="use CUDAExecutionProvider when onnxruntime has it")
    access_log: bool = Field(False, description="log one line per HTTP request")


def parse_size(text: str) -> int:
    """'16MiB', '4mb', '1048576' -> bytes (binary multiples for k/m/g, with or without 'i' and 'b')."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kmg]?)(i?b?)\s*", text.lower())
    if not m:
        raise ValueError(f"expected a size like 16MiB, 512k or 1048576, got {text!r}")
    factor = {"": 1, "k": 1024, "m": MIB, "g": 1024 * MIB}[m.group(2)]
    return int(float(m.group(1)) * factor)
