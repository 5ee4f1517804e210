"""Image -> tensor transforms for training: the paper's train-time augmentation, and the eval transform.

The paper: "random cropping, zooming, horizontal flipping, and slight rotations and brightness adjustments".
Here that is torchvision.transforms.v2 on PIL images: a random resized crop (crop + zoom), a slight rotation
(with no black corners), a horizontal flip and a brightness jitter, then a normalised float tensor. The eval transform *is*
`drsynth.preprocess.preprocess_image`, so validation during training sees exactly what `drsynth evaluate`,
the ONNX model and the server see.

Augmentation draws from torch's RNG. `seeded_view` makes one augmented view a pure function of
(seed, sample key, view), so the feature cache and any number of DataLoader workers give the same images.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Callable

import numpy as np
import torch
from PIL import Image
from pydantic import BaseModel, ConfigDict, Field, model_validator
from torchvision.transforms import v2

from drsynth.preprocess import Preprocess, preprocess_image

ImageTransform = Callable[[Image.Image], torch.Tensor]


class AugmentConfig(BaseModel):
    """Train-time augmentation; each part can be switched off by setting it to 0 (or `enabled: false`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = Field(True, description="false: train on the eval transform (no augmentation)")
    crop_scale: tuple[float, float] = Field(
        (0.6, 1.0),
        description="random resized crop: area fraction range of the source image (crop + zoom); with rotation "
        "the output keeps the centre (cos r + sin r)^-2 of that crop (75% at 10 deg)",
    )
    crop_ratio: tuple[float, float] = Field((3 / 4, 4 / 3), description="aspect ratio range of the crop")
    hflip_p: float = Field(0.5, ge=0, le=1, description="probability of a horizontal flip")
    rotation_deg: float = Field(10.0, ge=0, le=180, description="uniform rotation in [-deg, deg]")
    brightness: float = Field(0.2, ge=0, le=1, description="brightness factor uniform in [1-b, 1+b]")
    contrast: float = Field(0.0, ge=0, le=1, description="contrast factor uniform in [1-c, 1+c]")
    saturation: float = Field(0.0, ge=0, le=1, description="saturation factor uniform in [1-s, 1+s]")
    blur_p: float = Field(
        0.0, ge=0, le=1, description="probability of a Gaussian blur (renders are sharper than photos)"
    )
    blur_sigma: tuple[float, float] = Field(
        (0.3, 1.5), description="blur sigma range in pixels (at image_size)"
    )
    noise_p: float = Field(0.0, ge=0, le=1, description="probability of additive Gaussian pixel noise")
    noise_std: float = Field(0.03, ge=0, le=0.5, description="noise standard deviation, image range [0, 1]")
    grayscale_p: float = Field(0.0, ge=0, le=1, description="probability of turning the image grey")

    @model_validator(mode="after")
    def _check(self) -> AugmentConfig:
        lo, hi = self.crop_scale
        if not 0 < lo <= hi <= 1:
            raise ValueError(f"crop_scale must satisfy 0 < low <= high <= 1, got {self.crop_scale}")
        if not 0 < self.crop_ratio[0] <= self.crop_ratio[1]:
            raise ValueError(f"crop_ratio must satisfy 0 < low <= high, got {self.crop_ratio}")
        if not 0 < self.blur_sigma[0] <= self.blur_sigma[1]:
            raise ValueError(f"blur_sigma must satisfy 0 < low <= high, got {self.blur_sigma}")
        return self


class EvalTransform:
    """PIL image -> float32 [3, H, W] tensor, exactly `drsynth.preprocess.preprocess_image`."""

    def __init__(self, pp: Preprocess) -> None:
        self.pp = pp

    def __call__(self, img: Image.Image) -> torch.Tensor:
        return torch.from_numpy(preprocess_image(img, self.pp))

    def __repr__(self) -> str:
        return f"EvalTransform({self.pp!r})"


def eval_transform(pp: Preprocess) -> ImageTransform:
    return EvalTransform(pp)


def train_transform(pp: Preprocess, cfg: AugmentConfig | None = None) -> ImageTransform:
    """The train-time augmentation at `pp.image_size`, normalised with `pp.mean`/`pp.std`."""
    cfg = cfg or AugmentConfig()
    if not cfg.enabled:
        return EvalTransform(pp)
    steps: list[Callable] = []
    crop = pp.image_size
    if cfg.rotation_deg > 0:
        # Crop a little larger, rotate, then centre-crop: the largest axis-aligned square inside a square of
        # side L turned by t is L / (cos t + sin t), so no black corners reach the output. Rotating the small
        # crop instead of the source image is also ~10x cheaper.
        t = math.radians(min(cfg.rotation_deg, 45.0))
        crop = math.ceil(pp.image_size * (math.cos(t) + math.sin(t)))
    steps.append(
        v2.RandomResizedCrop(
            crop, scale=cfg.crop_scale, ratio=cfg.crop_ratio, interpolation=v2.InterpolationMode.BILINEAR
        )
    )
    if cfg.rotation_deg > 0:
        steps += [
            v2.RandomRotation(cfg.rotation_deg, interpolation=v2.InterpolationMode.BILINEAR),
            v2.CenterCrop(pp.image_size),
        ]
    if cfg.hflip_p > 0:
        steps.append(v2.RandomHorizontalFlip(cfg.hflip_p))
    if cfg.brightness or cfg.contrast or cfg.saturation:
        steps.append(
            v2.ColorJitter(
                brightness=cfg.brightness or None,
                contrast=cfg.contrast or None,
                saturation=cfg.saturation or None,
            )
        )
    if cfg.grayscale_p > 0:
        steps.append(v2.RandomGrayscale(cfg.grayscale_p))
    if cfg.blur_p > 0:
        # Kernel of about +-3 sigma, odd: enough for the largest sigma, no more (cost grows with its size).
        k = 2 * math.ceil(3 * cfg.blur_sigma[1]) + 1
        steps.append(v2.RandomApply([v2.GaussianBlur(k, sigma=cfg.blur_sigma)], p=cfg.blur_p))
    steps += [v2.PILToTensor(), v2.ToDtype(torch.float32, scale=True)]
    if cfg.noise_p > 0 and cfg.noise_std > 0:
        steps.append(v2.RandomApply([v2.GaussianNoise(sigma=cfg.noise_std, clip=True)], p=cfg.noise_p))
    steps.append(v2.Normalize(mean=list(pp.mean), std=list(pp.std)))
    return v2.Compose(steps)


def view_seed(seed: int, key: str, view: int) -> int:
    """A 64-bit seed for augmented view `view` of sample `key` (crc32, not the per-process salted hash())."""
    seq = np.random.SeedSequence([seed, view, zlib.crc32(key.encode("utf-8"))])
    return int(seq.generate_state(1, dtype=np.uint64)[0])


def seeded_view(
    transform: ImageTransform, img: Image.Image, *, seed: int, key: str, view: int
) -> torch.Tensor:
    """Apply `transform` with torch's RNG set from (seed, key, view), leaving the caller's RNG state untouched."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(view_seed(seed, key, view))
        return transform(img)
