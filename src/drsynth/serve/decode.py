"""Turn what a client sent into the float32 NCHW batch the network takes, or a clear 400.

Accepted forms (documented in docs/serving.md):
- KServe v1 JSON: {"instances": [I, ...]} where each I is {"image_bytes": {"b64": "<base64 JPEG/PNG>"}},
  {"b64": "..."}, or a preprocessed float tensor [3][S][S] (nested lists);
- Open Inference Protocol v2: one input, either BYTES [N] (or [N, 1]) of base64-encoded images, or FP32
  [N, 3, S, S] preprocessed tensors (S = the model's image_size);
- raw image bytes POSTed to the v1 predict route with an `image/*` content type: one image.

Every client mistake raises kserve's InvalidInput (HTTP 400) with what was expected and what arrived.
Preprocessing itself is drsynth.preprocess, the same code evaluation uses, never a copy.
"""

from __future__ import annotations

import base64
import binascii
import io
import re
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import orjson
from kserve.errors import InvalidInput
from kserve.protocol.infer_type import InferRequest, RequestedOutput
from PIL import Image, UnidentifiedImageError

from drsynth.preprocess import Preprocess, load_image, preprocess_image

# Formats a client may send. PIL can open more (TIFF, ICO, PSD...); fewer parsers means less attack surface.
IMAGE_FORMATS = ("JPEG", "MPO", "PNG", "WEBP", "BMP", "GIF")
_BYTESIO = re.compile(r"<_io\.BytesIO object at 0x[0-9a-fA-F]+>")
_V1_HINT = (
    'expected {"instances": [{"image_bytes": {"b64": "<base64 JPEG/PNG>"}}, ...]} '
    "or instances that are float tensors [3][S][S]"
)


@dataclass(frozen=True)
class DecodedRequest:
    """A validated request: the network input plus what the response must look like."""

    inputs: np.ndarray  # float32 [N, 3, S, S], finite
    protocol: Literal["v1", "v2"]
    request_id: str | None = None
    requested_outputs: list[RequestedOutput] | None = None
    binary_outputs: bool = False


class RequestDecoder:
    """Decodes and validates requests for one model (its Preprocess fixes the tensor size)."""

    def __init__(self, pp: Preprocess, *, max_instances: int, max_image_pixels: int):
        self.pp = pp
        self.max_instances = max_instances
        self.max_image_pixels = max_image_pixels

    @property
    def tensor_shape(self) -> tuple[int, int, int]:
        return (3, self.pp.image_size, self.pp.image_size)

    def decode(self, payload: Any, headers: dict[str, str] | None = None) -> DecodedRequest:
        if isinstance(payload, InferRequest):
            return self._v2(payload)
        if isinstance(payload, bytes | bytearray):
            content_type = (headers or {}).get("content-type", "")
            return self._raw(bytes(payload), content_type)
        if isinstance(payload, dict):
            return self._v1(payload)
        raise InvalidInput(f"{_V1_HINT}; got a JSON {type(payload).__name__}")

    # ---- KServe v1 -------------------------------------------------------------------------------------

    def _v1(self, body: dict) -> DecodedRequest:
        if "instances" not in body:
            raise InvalidInput(f"{_V1_HINT}; got keys {sorted(body)[:10]}")
        instances = body["instances"]
        if not isinstance(instances, list):
            raise InvalidInput(f'"instances" must be a list, got {type(instances).__name__}')
        self._check_count(len(instances), '"instances"')
        arrays = [self._v1_instance(inst, f"instances[{i}]") for i, inst in enumerate(instances)]
        return DecodedRequest(inputs=np.stack(arrays), protocol="v1")

    def _v1_instance(self, inst: Any, where: str) -> np.ndarray:
        if isinstance(inst, dict):
            holder = inst.get("image_bytes", inst)
            b64 = holder.get("b64") if isinstance(holder, dict) else None
            if not isinstance(b64, str):
                raise InvalidInput(
                    f'{where}: expected {{"image_bytes": {{"b64": "<base64>"}}}} or {{"b64": "<base64>"}}, '
                    f"got keys {sorted(inst)[:10]}"
                )
            return self.image(self._b64decode(b64, where), where)
        if isinstance(inst, list):
            return self._tensor(inst, self.tensor_shape, where)
        raise InvalidInput(f"{where}: {_V1_HINT}; got a JSON {type(inst).__name__}")

    # ---- Open Inference Protocol v2 ------------------------------------------------------------------

    def _v2(self, req: InferRequest) -> DecodedRequest:
        if len(req.inputs) != 1:
            raise InvalidInput(
                f"expected exactly one input (BYTES [N] base64 images, or FP32 [N,3,{self.pp.image_size},"
                f"{self.pp.image_size}]), got {len(req.inputs)}: {[i.name for i in req.inputs]}"
            )
        inp = req.inputs[0]
        shape = list(inp.shape)
        where = f"input '{inp.name}'"
        if not shape or any((not isinstance(d, int)) or d < 0 for d in shape):
            raise InvalidInput(f"{where}: shape must be non-negative integers, got {shape}")
        if inp.datatype == "BYTES":
            if len(shape) not in (1, 2) or (len(shape) == 2 and shape[1] != 1):
                raise InvalidInput(f"{where}: BYTES images must have shape [N] or [N, 1], got {shape}")
            self._check_count(shape[0], where)
            try:
                items = inp.as_numpy().reshape(-1)
            except Exception as e:
                raise InvalidInput(f"{where}: data does not match shape {shape} ({e})") from None
            arrays = []
            for i, item in enumerate(items):
                w = f"{where}[{i}]"
                if isinstance(item, str):
                    data = self._b64decode(item, w)
                elif isinstance(item, bytes):
                    data = item
                else:
                    raise InvalidInput(
                        f"{w}: expected a base64 string of a JPEG/PNG, got {type(item).__name__}"
                    )
                arrays.append(self.image(data, w))
            batch = np.stack(arrays)
        elif inp.datatype == "FP32":
            if len(shape) != 4 or shape[1:] != list(self.tensor_shape):
                raise InvalidInput(
                    f"{where}: FP32 tensors must have shape [N, {', '.join(map(str, self.tensor_shape))}], "
                    f"got {shape}"
                )
            self._check_count(shape[0], where)
            try:
                data = inp.as_numpy()
            except Exception as e:
                raise InvalidInput(f"{where}: data does not match shape {shape} ({e})") from None
            batch = self._finite(np.asarray(data, dtype=np.float32), where)
        else:
            raise InvalidInput(
                f"{where}: datatype must be BYTES (base64 JPEG/PNG images) or FP32 (preprocessed "
                f"[N,3,{self.pp.image_size},{self.pp.image_size}] tensors), got {inp.datatype}"
            )
        return DecodedRequest(
            inputs=np.ascontiguousarray(batch, dtype=np.float32),
            protocol="v2",
            request_id=req.id,
            requested_outputs=req.request_outputs,
            binary_outputs=bool(req.use_binary_outputs),
        )

    # ---- raw bytes ---------------------------------------------------------------------------------------

    def _raw(self, body: bytes, content_type: str) -> DecodedRequest:
        if not content_type.lower().startswith("image/"):
            # kserve hands over bodies whose content-type is not JSON unparsed; curl -d sends JSON as
            # application/x-www-form-urlencoded, so accept a JSON object whatever the label says.
            try:
                parsed = orjson.loads(body)
            except orjson.JSONDecodeError:
                parsed = None
            if isinstance(parsed, dict):
                return self._v1(parsed)
            raise InvalidInput(
                f"unsupported content-type {content_type!r}: send JSON (application/json) or one encoded "
                "image with content-type image/jpeg or image/png"
            )
        return DecodedRequest(inputs=self.image(body, "request body")[None], protocol="v1")

    # ---- pieces ------------------------------------------------------------------------------------------

    def image(self, data: bytes, where: str) -> np.ndarray:
        """Encoded image bytes -> float32 [3, S, S] via drsynth.preprocess; InvalidInput when unusable."""
        if not data:
            raise InvalidInput(f"{where}: empty image")
        try:
            with Image.open(io.BytesIO(data)) as probe:  # reads the header only
                fmt, (w, h) = probe.format, probe.size
        except UnidentifiedImageError:
            raise InvalidInput(
                f"{where}: not a decodable image (unknown format; expected one of {list(IMAGE_FORMATS)})"
            ) from None
        except Exception as e:
            reason = _BYTESIO.sub("the data", str(e))
            raise InvalidInput(f"{where}: not a decodable image ({type(e).__name__}: {reason})") from None
        if fmt not in IMAGE_FORMATS:
            raise InvalidInput(
                f"{where}: image format {fmt} is not accepted; send one of {list(IMAGE_FORMATS)}"
            )
        if w * h > self.max_image_pixels:
            raise InvalidInput(
                f"{where}: image is {w}x{h} = {w * h:,} pixels, above this server's limit of "
                f"{self.max_image_pixels:,}; downscale it before sending"
            )
        try:
            img = load_image(data)
        except ValueError as e:
            raise InvalidInput(f"{where}: {_BYTESIO.sub('the data', str(e))}") from None
        return preprocess_image(img, self.pp)

    def _tensor(self, value: Any, shape: tuple[int, ...], where: str) -> np.ndarray:
        try:
            with np.errstate(all="ignore"):
                arr = np.asarray(value, dtype=np.float32)
        except (ValueError, TypeError, OverflowError) as e:
            raise InvalidInput(f"{where}: expected a float tensor of shape {list(shape)} ({e})") from None
        if arr.shape != shape:
            raise InvalidInput(
                f"{where}: expected a float tensor of shape {list(shape)}, got {list(arr.shape)}"
            )
        return self._finite(arr, where)

    @staticmethod
    def _finite(arr: np.ndarray, where: str) -> np.ndarray:
        if not np.isfinite(arr).all():
            raise InvalidInput(f"{where}: tensor holds NaN or infinite values")
        return arr

    def _check_count(self, n: int, where: str) -> None:
        if n < 1:
            raise InvalidInput(f"{where}: no instances to predict")
        if n > self.max_instances:
            raise InvalidInput(
                f"{where}: {n} instances in one request, above this server's limit of {self.max_instances}; "
                "split the request"
            )

    @staticmethod
    def _b64decode(text: str, where: str) -> bytes:
        if text.startswith("data:") and "," in text[:100]:  # tolerate data URLs
            text = text.split(",", 1)[1]
        try:
            return base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError) as e:
            raise InvalidInput(f"{where}: not valid base64 ({e})") from None
