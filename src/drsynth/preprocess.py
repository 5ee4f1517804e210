"""The one definition of inference preprocessing, shared by evaluation, ONNX export and serving.

Training's eval transform, `drsynth evaluate`, the ONNX metadata and the KServe predictor all derive from
a `Preprocess` value, so the numbers a model sees are the same everywhere (timm's resolve_data_config idea).
Resizing uses PIL on every path (torchvision's v2 transforms on PIL images call the same code).
"""

from __future__ import annotations

import io
import json

import numpy as np
from PIL import Image, ImageOps
from pydantic import BaseModel, ConfigDict, Field, model_validator

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class Preprocess(BaseModel):
    """Resize the shorter side to `resize_size`, centre-crop `image_size`, scale to [0,1], normalise."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    image_size: int = Field(224, ge=8, le=4096, description="side of the square network input, pixels")
    resize_size: int = Field(256, ge=8, le=8192, description="shorter side before the centre crop, pixels")
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD

    @model_validator(mode="after")
    def _check(self) -> Preprocess:
        if self.resize_size < self.image_size:
            raise ValueError(
                f"resize_size ({self.resize_size}) must be >= image_size ({self.image_size}): "
                "the centre crop is taken from the resized image"
            )
        if any(s <= 0 for s in self.std):
            raise ValueError(f"std must be positive, got {self.std}")
        return self

    @classmethod
    def for_size(cls, image_size: int) -> Preprocess:
        """The usual 0.875 crop ratio (224 from 256) for any input size."""
        return cls(image_size=image_size, resize_size=round(image_size / 0.875))

    def to_json(self) -> str:
        return json.dumps(self.model_dump(mode="json"), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Preprocess:
        return cls.model_validate_json(text)


def load_image(data: bytes) -> Image.Image:
    """Decode encoded image bytes (JPEG, PNG, WebP, BMP...) into an RGB image, honouring EXIF rotation.

    Raises ValueError with a short reason when the bytes are not a decodable image.
    """
    try:
        img = Image.open(io.BytesIO(data))
        img.load()
    except Exception as e:  # PIL raises many types for corrupt input
        raise ValueError(f"not a decodable image ({type(e).__name__}: {e})") from None
    img = ImageOps.exif_transpose(img)
    return img.convert("RGB")


def resize_and_crop(img: Image.Image, pp: Preprocess) -> Image.Image:
    """Shorter side to `pp.resize_size` (bilinear, antialiased), then centre crop `pp.image_size`."""
    img = img.convert("RGB")
    w, h = img.size
    scale = pp.resize_size / min(w, h)
    nw, nh = max(pp.image_size, round(w * scale)), max(pp.image_size, round(h * scale))
    img = img.resize((nw, nh), Image.Resampling.BILINEAR)
    left, top = (nw - pp.image_size) // 2, (nh - pp.image_size) // 2
    return img.crop((left, top, left + pp.image_size, top + pp.image_size))


def normalize(arr_hwc_uint8: np.ndarray, pp: Preprocess) -> np.ndarray:
    """uint8 HxWx3 -> float32 3xHxW, scaled to [0,1] and normalised with the mean/std."""
    x = arr_hwc_uint8.astype(np.float32) / 255.0
    x = (x - np.asarray(pp.mean, np.float32)) / np.asarray(pp.std, np.float32)
    return np.ascontiguousarray(x.transpose(2, 0, 1))


def preprocess_image(img: Image.Image, pp: Preprocess) -> np.ndarray:
    """A PIL image -> the float32 CHW array the network takes."""
    return normalize(np.asarray(resize_and_crop(img, pp)), pp)


def preprocess_batch(images: list[Image.Image], pp: Preprocess) -> np.ndarray:
    """A list of PIL images -> float32 NCHW batch."""
    if not images:
        return np.zeros((0, 3, pp.image_size, pp.image_size), np.float32)
    return np.stack([preprocess_image(im, pp) for im in images])
