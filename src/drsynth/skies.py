"""Backgrounds: procedural skies and equirectangular HDR/LDR images, seen through the scene's camera.

A sky is an equirectangular image (rows: elevation +90..-90 degrees; columns: azimuth 0..360 from +X towards
-Z, as `samplers.direction_from_angles`) in display space (sRGB floats in [0, 1]). The renderer draws the
scene with a transparent background and composites it over the sky as seen by the camera, so the background
moves consistently with the camera and costs one remap per image.
"""

from __future__ import annotations

import functools
import math
from pathlib import Path

import cv2
import numpy as np

from drsynth.errors import AssetError, ConfigError
from drsynth.materials import fbm, periodic_noise
from drsynth.scene_spec import SkySpec

PROCEDURAL_KINDS = ("gradient", "sunset", "clouds", "overcast", "solid", "noise", "bands")
IMAGE_EXTENSIONS = (".hdr", ".exr", ".jpg", ".jpeg", ".png")
EQUIRECT_W, EQUIRECT_H = 256, 128
IMAGE_WIDTH = 1024  # images are cached at this width (a 60 degree view of it spans ~170 columns)


def image_names(image_dir: Path | None) -> list[str]:
    if image_dir is None:
        return []
    folder = Path(image_dir)
    if not folder.is_dir():
        raise ConfigError(f"sky image_dir {folder} is not a folder; give an existing folder of equirect images")
    names = sorted(p.name for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
    if not names:
        raise ConfigError(f"sky image_dir {folder} holds no sky image ({', '.join(IMAGE_EXTENSIONS)})")
    return names


def _elevation_grid(h: int = EQUIRECT_H, w: int = EQUIRECT_W) -> tuple[np.ndarray, np.ndarray]:
    el = (0.5 - (np.arange(h, dtype=np.float32) + 0.5) / h) * math.pi
    az = (np.arange(w, dtype=np.float32) + 0.5) / w * 2 * math.pi
    return np.meshgrid(az, el)


def _vertical(el: np.ndarray, zenith, horizon, ground, sharp: float = 0.6) -> np.ndarray:
    up = np.clip(el / (math.pi / 2), 0.0, 1.0) ** sharp
    down = np.clip(-el / (math.pi / 2), 0.0, 1.0) ** 0.5
    z, h, g = (np.asarray(c, np.float32) for c in (zenith, horizon, ground))
    sky = h * (1 - up[..., None]) + z * up[..., None]
    gnd = h * (1 - down[..., None]) * 0.6 + g * (0.4 + 0.6 * down[..., None])
    return np.where((el >= 0)[..., None], sky, gnd)


def procedural_equirect(spec: SkySpec) -> np.ndarray:
    """The equirect image of a procedural sky, fully determined by the spec."""
    rng = np.random.default_rng(spec.noise_seed)
    az, el = _elevation_grid()
    cols = [np.asarray(c, np.float32) for c in spec.colors]
    p = spec.params
    k = spec.kind
    if k == "solid":
        return np.broadcast_to(cols[0], (EQUIRECT_H, EQUIRECT_W, 3)).copy()
    if k == "gradient":
        return _vertical(el, cols[0], cols[1], cols[2], p.get("sharpness", 0.6))
    if k == "sunset":
        img = _vertical(el, cols[0], cols[1], cols[2], 0.35)
        sun_az = math.radians(p.get("sun_azimuth_deg", 0.0))
        d = np.abs(((az - sun_az + math.pi) % (2 * math.pi)) - math.pi)
        glow = np.exp(-(d**2) / 0.5) * np.exp(-np.maximum(el, 0) / 0.25) * (el > -0.05)
        return img + glow[..., None] * (cols[3] - img) * 0.8
    if k in ("clouds", "overcast"):
        img = _vertical(el, cols[0], cols[1], cols[2], 0.5)
        noise = _equirect_noise(rng, int(p.get("cells", 4)))
        cover = p.get("coverage", 0.5)
        c = np.clip((noise - (1 - cover)) / max(cover, 1e-3) * 2.0, 0, 1)
        c *= np.clip(el / 0.15, 0, 1)  # clouds thin out towards the horizon
        return img * (1 - c[..., None]) + cols[3] * c[..., None]
    if k == "noise":
        noise = _equirect_noise(rng, int(p.get("cells", 3)))
        from drsynth.materials import ramp

        return ramp(noise, cols)
    if k == "bands":
        n = max(len(cols), 2)
        freq = p.get("frequency", 3.0)
        t = (np.sin(el * freq * 2 + p.get("phase", 0.0)) * 0.5 + 0.5) * (n - 1)
        from drsynth.materials import ramp

        return ramp(t / (n - 1), cols)
    raise ConfigError(f"unknown sky kind '{k}'; known: {PROCEDURAL_KINDS + ('image',)}")


def _equirect_noise(rng: np.random.Generator, cells: int) -> np.ndarray:
    # Square periodic fractal noise squeezed to 2:1 (tiles horizontally, as the equirect must).
    n = fbm(rng, 128, cells, 4)
    n = 0.75 * n + 0.25 * periodic_noise(rng, 128, cells * 8)
    return cv2.resize(n, (EQUIRECT_W, EQUIRECT_H), interpolation=cv2.INTER_LINEAR)


@functools.lru_cache(maxsize=32)
def _load_image(path: str) -> tuple[np.ndarray, bool]:
    img = cv2.imread(path, cv2.IMREAD_ANYDEPTH | cv2.IMREAD_COLOR)
    if img is None or img.ndim != 3:
        raise AssetError(f"sky image {path} cannot be read; use an equirectangular .hdr, .jpg or .png")
    hdr = img.dtype != np.uint8
    img = img[..., ::-1].astype(np.float32)
    if not hdr:
        img = (img / 255.0) ** 2.2  # to linear, so exposure and tone mapping treat both kinds alike
    h, w = img.shape[:2]
    if w > IMAGE_WIDTH:
        img = cv2.resize(img, (IMAGE_WIDTH, max(1, round(h * IMAGE_WIDTH / w))), interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(img), hdr


def image_equirect(spec: SkySpec, image_dir: Path | str) -> np.ndarray:
    lin, hdr = _load_image(str(Path(image_dir) / spec.image))
    x = lin * (2.0**spec.exposure_ev)
    if hdr:
        x = x / (1.0 + x)  # Reinhard: keeps bright skies from clipping to white
        x = x * 1.6
    return np.clip(x, 0, 1) ** (1 / 2.2)


def equirect(spec: SkySpec, image_dir: Path | str | None = None) -> np.ndarray:
    if spec.kind == "image":
        if image_dir is None:
            raise ConfigError(f"sky image '{spec.image}' needs the sky randomizer's image_dir")
        return image_equirect(spec, image_dir)
    return procedural_equirect(spec)


def background(
    sky_equirect: np.ndarray, world_from_camera: np.ndarray, yfov_deg: float, size: int, yaw_deg: float = 0.0
) -> np.ndarray:
    """What a square pinhole camera (OpenGL convention: looks down -Z, +Y up) sees of the sky: H x W x 3
    float32 in [0, 1]. Looked up at half resolution and upsampled: skies are smooth at this scale and the
    trigonometry per pixel is a visible share of a frame's cost."""
    n = size // 2 if size >= 128 else size
    h, w = sky_equirect.shape[:2]
    t = math.tan(math.radians(yfov_deg) / 2)
    u = ((np.arange(n, dtype=np.float32) + 0.5) / n * 2 - 1) * t
    xs, ys = u[None, :], -u[:, None]
    r = world_from_camera[:3, :3].astype(np.float32)
    # world ray = xs * right + ys * up - forward (unnormalised: only its angles matter)
    rx = xs * r[0, 0] + ys * r[0, 1] - r[0, 2]
    ry = xs * r[1, 0] + ys * r[1, 1] - r[1, 2]
    rz = xs * r[2, 0] + ys * r[2, 1] - r[2, 2]
    az = np.arctan2(-rz, rx) - np.float32(math.radians(yaw_deg))
    el = np.arctan2(ry, np.hypot(rx, rz))
    map_x = (az * np.float32(1 / (2 * math.pi))) % 1.0 * w + 0.5  # +1 column of wrap padding, -0.5 centre
    map_y = np.clip((0.5 - el * np.float32(1 / math.pi)) * h - 0.5, 0, h - 1)
    wrapped = np.concatenate([sky_equirect[:, -1:], sky_equirect, sky_equirect[:, :1]], axis=1)
    out = cv2.remap(
        np.ascontiguousarray(wrapped, dtype=np.float32),
        map_x.astype(np.float32),
        map_y.astype(np.float32),
        cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_REPLICATE,
    )
    if n != size:
        out = cv2.resize(out, (size, size), interpolation=cv2.INTER_LINEAR)
    return out
