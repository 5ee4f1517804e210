"""Coats for the procedural quadrupeds: colour patterns, fur texture, eyes and noses, baked into textures.

Patterns are functions of the rest-pose 3D position and normal of each texel (so a tabby's stripes run round
the body and continue from the torso onto the legs), plus a few anatomical regions (belly, chest, paws,
muzzle, ears, tail tip, eyebrows). Fur is an anisotropic noise in texture space whose streaks run along each
part's loft direction (head -> tail, down the legs) and which also perturbs the normal map. Every part of one
breed shares one atlas texture (one material); eyes and the nose have their own small glossy materials.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

import numpy as np
import trimesh
from scipy import ndimage

from drsynth.subjects.base import SurfaceMaterial

if TYPE_CHECKING:
    from drsynth.subjects.quadruped import QuadrupedModel

RGB = tuple[float, float, float]

PATTERNS = (
    "solid",
    "tabby",  # mackerel
    "classic_tabby",
    "spotted",  # spotted tabby / rosettes / dalmatian spots
    "ticked",
    "tortoiseshell",
    "calico",
    "bicolor",  # tuxedo / piebald: base colour + white markings
    "colorpoint",
    "merle",
    "brindle",
    "tan_points",
    "saddle",
    "tricolor",
    "husky",
    "mask",  # solid with a dark muzzle and ears (pug, mastiff, boxer)
)


@dataclass(frozen=True)
class Coat:
    """Colours and pattern of one breed. Colours are linear-ish RGB floats in [0, 1]."""

    pattern: str
    base: RGB
    secondary: RGB = (0.06, 0.05, 0.045)  # stripes, patches, points, saddle
    tertiary: RGB = (0.55, 0.33, 0.14)  # tan, orange patches
    white: float = 0.0  # amount of white markings, 0..1
    white_color: RGB = (0.92, 0.9, 0.86)
    belly_light: float = 0.25  # countershading: lighter underside
    iris: RGB = (0.55, 0.6, 0.15)
    pupil: Literal["slit", "round"] = "round"
    nose: RGB = (0.05, 0.045, 0.045)
    inner_ear: RGB = (0.75, 0.5, 0.5)
    fur_length: float = 0.2  # 0 very short .. 1 long
    curly: float = 0.0  # 0 straight .. 1 curly (poodle)
    spot_scale: float = 1.0
    stripe_scale: float = 1.0
    variation: float = 0.5  # how much pattern noise

    def __post_init__(self) -> None:
        if self.pattern not in PATTERNS:
            raise ValueError(f"unknown coat pattern {self.pattern!r}; known: {PATTERNS}")

    def blend(self, other: Coat, t: float, rng: np.random.Generator) -> Coat:
        """A coat between two: the pattern (and pupil) of one of them, colours and numbers interpolated."""
        pick = self if rng.random() >= t else other

        def mix(a, b):
            return tuple(float(x + (y - x) * t) for x, y in zip(a, b, strict=True))

        return Coat(
            pattern=pick.pattern,
            base=mix(self.base, other.base),
            secondary=mix(self.secondary, other.secondary),
            tertiary=mix(self.tertiary, other.tertiary),
            white=float(self.white + (other.white - self.white) * t),
            white_color=mix(self.white_color, other.white_color),
            belly_light=float(self.belly_light + (other.belly_light - self.belly_light) * t),
            iris=pick.iris,
            pupil=pick.pupil,
            nose=pick.nose,
            inner_ear=mix(self.inner_ear, other.inner_ear),
            fur_length=float(self.fur_length + (other.fur_length - self.fur_length) * t),
            curly=float(self.curly + (other.curly - self.curly) * t),
            spot_scale=float(self.spot_scale + (other.spot_scale - self.spot_scale) * t),
            stripe_scale=float(self.stripe_scale + (other.stripe_scale - self.stripe_scale) * t),
            variation=float(self.variation + (other.variation - self.variation) * t),
        )


# ---------------------------------------------------------------------------------------------- noise


class Noise3:
    """Seeded 3D value noise (trilinear, smoothstep-faded) and fBm; deterministic per seed."""

    def __init__(self, seed: int):
        g = np.random.default_rng(seed)
        self.perm = np.concatenate([g.permutation(256)] * 2).astype(np.int64)
        self.vals = g.random(256) * 2.0 - 1.0

    def _hash(self, ix, iy, iz):
        p = self.perm
        return p[(p[(p[ix & 255] + iy) & 255] + iz) & 255]

    def value(self, pts: np.ndarray) -> np.ndarray:
        p = np.asarray(pts, dtype=np.float64)
        i0 = np.floor(p).astype(np.int64)
        f = p - i0
        f = f * f * (3 - 2 * f)
        out = np.zeros(len(p))
        for dx in (0, 1):
            wx = f[:, 0] if dx else 1 - f[:, 0]
            for dy in (0, 1):
                wy = f[:, 1] if dy else 1 - f[:, 1]
                for dz in (0, 1):
                    wz = f[:, 2] if dz else 1 - f[:, 2]
                    h = self._hash(i0[:, 0] + dx, i0[:, 1] + dy, i0[:, 2] + dz)
                    out += wx * wy * wz * self.vals[h]
        return out

    def fbm(self, pts: np.ndarray, freq: float, octaves: int = 3, gain: float = 0.5) -> np.ndarray:
        """Fractal noise, roughly in [-1, 1]."""
        out = np.zeros(len(pts))
        amp, norm = 1.0, 0.0
        for o in range(octaves):
            out += amp * self.value(pts * freq * (2.0**o) + 17.31 * o)
            norm += amp
            amp *= gain
        return out / norm


def cells3(pts: np.ndarray, freq: float, seed: int, jitter: float = 0.8) -> tuple[np.ndarray, np.ndarray]:
    """Worley noise: distance to the nearest jittered feature point (in cell units) and that point's id."""
    g = np.random.default_rng(seed)
    table = g.random((4096, 3))
    p = np.asarray(pts, dtype=np.float64) * freq
    base = np.floor(p).astype(np.int64)
    best = np.full(len(p), np.inf)
    best_id = np.zeros(len(p), dtype=np.int64)
    for dx in (-1, 0, 1):
        for dy in (-1, 0, 1):
            for dz in (-1, 0, 1):
                c = base + np.array([dx, dy, dz])
                h = (c[:, 0] * 73856093 ^ c[:, 1] * 19349663 ^ c[:, 2] * 83492791) & 4095
                fp = c + 0.5 + (table[h] - 0.5) * jitter
                d = np.linalg.norm(p - fp, axis=1)
                m = d < best
                best[m] = d[m]
                best_id[m] = h[m]
    return best, best_id


def _smooth(e0: float, e1: float, x: np.ndarray) -> np.ndarray:
    t = np.clip((x - e0) / (e1 - e0), 0.0, 1.0)
    return t * t * (3 - 2 * t)


# ---------------------------------------------------------------------------------------------- regions


@dataclass
class Texels:
    """Per-texel samples of the rest-pose body: position, normal, part, loft coordinates."""

    p: np.ndarray  # (N, 3) subject frame, default pose
    n: np.ndarray  # (N, 3)
    part: np.ndarray  # (N,) part index into names
    names: list[str]
    u: np.ndarray  # around (0..1)
    v: np.ndarray  # along (0..1)
    extras: dict = field(default_factory=dict)

    def is_part(self, *prefixes: str) -> np.ndarray:
        ids = [i for i, nm in enumerate(self.names) if nm.startswith(prefixes)]
        return np.isin(self.part, ids)


def regions(tx: Texels, model: QuadrupedModel) -> dict[str, np.ndarray]:
    """Soft anatomical masks in [0, 1] used by the patterns and white markings."""
    H, D, L = model.H, model.D, model.L
    p, n = tx.p, tx.n
    hi = model.head_info
    head = tx.is_part("head")
    torso = tx.is_part("torso")
    neck = tx.is_part("neck")
    legs = tx.is_part("fl_", "fr_", "hl_", "hr_")
    paws = tx.is_part("fl_paw", "fr_paw", "hl_paw", "hr_paw") | (legs & (p[:, 1] < 0.1 * H))
    tail = tx.is_part("tail")
    ears = tx.is_part("ear")
    head_tf = model.bone_transforms({})["head"]
    # Head-local coordinates (rest): x along the head from the neck joint.
    hp = (p - head_tf[:3, 3]) @ head_tf[:3, :3]
    stop_x = hi["stop_x"] - model.bones["head"].pivot[0]
    muzzle = head * _smooth(stop_x - 0.08 * hi["HL"], stop_x + 0.05 * hi["HL"], hp[:, 0])
    under = np.clip(-n[:, 1], 0, 1)
    belly = (torso | neck) * _smooth(0.15, 0.65, under)
    chest = (
        torso * _smooth(L / 2 - 0.25 * D, L / 2 + 0.1 * D, p[:, 0]) * _smooth(-0.3, 0.4, -n[:, 1] + n[:, 0])
    )
    chest = np.maximum(chest, neck * _smooth(-0.2, 0.5, n[:, 0] - n[:, 1] * 0.5 - 0.3 * n[:, 1]))
    throat = neck * _smooth(-0.1, 0.5, -n[:, 1])
    chin = head * _smooth(0.1, 0.6, -n[:, 1]) * _smooth(stop_x - 0.3 * hi["HL"], stop_x, hp[:, 0])
    legs_low = legs * (1 - _smooth(0.15 * H, 0.45 * H, p[:, 1]))
    top = _smooth(0.2, 0.7, n[:, 1])
    back = torso * top
    saddle = (
        torso
        * _smooth(-0.2, 0.35, n[:, 1])
        * _smooth(-L / 2 - 0.1 * D, -L / 2 + 0.3 * D, p[:, 0])
        * (1 - _smooth(L / 2 - 0.35 * D, L / 2 + 0.1 * D, p[:, 0]))
    )
    tail_idx = np.array([int(nm[4:]) if nm.startswith("tail") else -1 for nm in tx.names])[tx.part]
    tail_frac = np.where(tail, (tail_idx + tx.v) / 5.0, 0.0)
    tail_tip = tail * _smooth(0.75, 0.9, tail_frac)
    ears_m = ears.astype(float)
    # Eyebrow dots (tan points) above each eye; eye rims.
    brow = np.zeros(len(p))
    eye_rim = np.zeros(len(p))
    for s in ("l", "r"):
        bone, pt, er = model.keypoints[f"eye_{s}"]
        c = model.bone_transforms({})[bone] @ np.append(pt, 1.0)
        d = np.linalg.norm(p - c[:3], axis=1)
        eye_rim = np.maximum(eye_rim, head * (1 - _smooth(er * 1.05, er * 1.35, d)))
        bc = c[:3] + np.array([-0.2 * er, 1.6 * er, 0.0])
        brow = np.maximum(brow, head * (1 - _smooth(er * 0.5, er * 1.0, np.linalg.norm(p - bc, axis=1))))
    cheeks = (
        head
        * _smooth(-0.6, 0.2, -n[:, 1] * 0.5 + np.abs(n[:, 2]) - 0.5)
        * _smooth(stop_x - 0.35 * hi["HL"], stop_x, hp[:, 0])
    )
    face_top = head * top * (1 - muzzle)
    extremity = np.clip(
        np.maximum.reduce(
            [
                ears_m,
                muzzle * 1.0,
                head * 0.55 * (1 - _smooth(0.0, 0.6, n[:, 1])),
                legs * (1 - _smooth(0.2 * H, 0.7 * H, p[:, 1])),
                tail * _smooth(0.0, 0.5, tail_frac),
            ]
        ),
        0,
        1,
    )
    return dict(
        head=head.astype(float),
        torso=torso.astype(float),
        neck=neck.astype(float),
        legs=legs.astype(float),
        paws=paws.astype(float),
        tail=tail.astype(float),
        ears=ears_m,
        muzzle=muzzle,
        belly=belly,
        chest=chest,
        throat=throat,
        chin=chin,
        legs_low=legs_low,
        back=back,
        saddle=saddle,
        tail_tip=tail_tip,
        tail_frac=tail_frac,
        brow=brow,
        eye_rim=eye_rim,
        cheeks=cheeks,
        face_top=face_top,
        extremity=extremity,
        head_local=hp,
        stop_x=np.full(len(p), stop_x),
    )


# ---------------------------------------------------------------------------------------------- patterns


def _lerp(a: np.ndarray, b, t: np.ndarray) -> np.ndarray:
    return a + (np.asarray(b, dtype=np.float64) - a) * t[:, None]


def coat_colors(tx: Texels, model: QuadrupedModel, coat: Coat, seed: int) -> np.ndarray:
    """RGB (N x 3) of the coat at every texel."""
    R = regions(tx, model)
    noise = Noise3(seed)
    p = tx.p / max(model.H, 1e-6)  # body-relative units: pattern sizes scale with the animal
    N = len(p)
    base = np.tile(np.asarray(coat.base, dtype=np.float64), (N, 1))
    sec = np.asarray(coat.secondary, dtype=np.float64)
    ter = np.asarray(coat.tertiary, dtype=np.float64)
    var = coat.variation
    col = base.copy()
    pat = coat.pattern
    warp = noise.fbm(p, 3.0, 3)

    def stripes(freq: float, coord: np.ndarray, width: float = 0.35) -> np.ndarray:
        s = np.sin(2 * np.pi * (coord * freq + 0.35 * warp * var * 2))
        return _smooth(1 - 2 * width - 0.1, 1 - 2 * width + 0.1, s)

    if pat in ("tabby", "classic_tabby", "spotted"):
        fq = 8.0 / coat.stripe_scale
        torso_s = stripes(fq, p[:, 0] + 0.15 * p[:, 1])
        if pat == "classic_tabby":
            # Swirls on the flanks: rings round a centre on each side.
            c = np.array([-0.1 * model.L, model.H - 0.5 * model.D, 0.0]) / model.H
            d = np.sqrt((p[:, 0] - c[0]) ** 2 + (p[:, 1] - c[1]) ** 2 * 1.4)
            torso_s = stripes(fq * 0.9, d, 0.3)
        if pat == "spotted":
            d, _ = cells3(p, 7.0 / coat.spot_scale, seed + 3)
            torso_s = 1 - _smooth(0.25, 0.36, d)
            ring = _smooth(0.18, 0.24, d) * (1 - _smooth(0.3, 0.38, d))
            torso_s = np.maximum(torso_s * 0.6, ring) if coat.spot_scale < 1.2 else torso_s
        leg_s = stripes(fq * 1.2, p[:, 1], 0.3)
        tail_s = stripes(1.0, R["tail_frac"] * 5.5, 0.35)
        head_lines = (
            stripes(fq * 2.2, np.abs(p[:, 2]) + 0.25 * R["head_local"][:, 1] / model.H, 0.3) * R["face_top"]
        )
        dorsal = _smooth(0.75, 0.92, tx.n[:, 1]) * (R["torso"] + R["neck"])
        m = (
            R["torso"] * torso_s
            + R["neck"] * stripes(fq, p[:, 0] * 0.5 + p[:, 1], 0.3)
            + R["legs"] * leg_s * 0.5  # faint leg bars: bold rings read as a zebra's legs
        )
        m = m + R["tail"] * tail_s + head_lines + dorsal * 0.8
        broken = _smooth(-0.35, 0.05, noise.fbm(p + 7.0, 5.0, 2))  # mackerel stripes break into bars
        m = np.clip(m, 0, 1) * (1 - 0.7 * R["belly"]) * (1 - R["muzzle"] * 0.8) * (0.35 + 0.65 * broken)
        m = m * (1 - 0.6 * R["chest"])
        col = _lerp(col, sec, m * 0.75)
    elif pat == "ticked":
        col = col * (1 + 0.25 * noise.fbm(p, 40.0, 2))[:, None]
        m = (
            R["tail_tip"]
            + 0.5 * R["legs"] * stripes(4.0, p[:, 1], 0.2)
            + 0.4 * _smooth(0.8, 0.95, tx.n[:, 1]) * R["torso"]
        )
        col = _lerp(col, sec, np.clip(m, 0, 1) * 0.7)
    elif pat in ("tortoiseshell", "calico"):
        f = 5.0 if pat == "tortoiseshell" else 2.6
        n1 = noise.fbm(p + 3.1, f, 4)
        m = _smooth(-0.08, 0.08, n1)
        fine = _smooth(-0.1, 0.1, noise.fbm(p + 9.0, 14.0, 2)) if pat == "tortoiseshell" else 0.0
        mix = np.clip(m * 0.85 + 0.15 * fine, 0, 1)
        col = _lerp(np.tile(sec, (N, 1)), ter, mix)
    elif pat == "colorpoint":
        pts = _smooth(0.25, 0.75, R["extremity"] + 0.1 * warp)
        col = _lerp(col, sec, pts)
    elif pat == "merle":
        n1 = noise.fbm(p + 1.7, 4.0, 3)
        d, _ = cells3(p, 5.0 / coat.spot_scale, seed + 5, jitter=1.0)
        blot = np.maximum(_smooth(0.25, 0.4, n1), 1 - _smooth(0.2, 0.3, d + 0.1 * warp))
        col = _lerp(col, sec, blot)
    elif pat == "brindle":
        s = np.sin(
            2 * np.pi * (p[:, 0] * 9.0 / coat.stripe_scale + 1.2 * noise.fbm(p, 2.5, 3) + 0.3 * p[:, 1])
        )
        m = _smooth(0.0, 0.5, s + 0.4 * noise.fbm(p, 12.0, 2)) * (1 - 0.6 * R["belly"])
        col = _lerp(col, sec, m * 0.85)
    elif pat == "tan_points":
        # Dark body with tan on the muzzle, cheeks, eyebrows, chest, lower legs and under the tail.
        col = np.tile(sec, (N, 1))
        tan = np.clip(
            R["muzzle"] * 0.95
            + R["brow"]
            + R["cheeks"] * 0.8
            + R["chest"] * 0.6
            + R["throat"] * 0.4
            + R["legs_low"]
            + R["chin"]
            + 0.8 * R["belly"] * 0.5,
            0,
            1,
        )
        col = _lerp(col, ter, _smooth(0.35, 0.65, tan + 0.1 * warp))
    elif pat == "saddle":
        sad = _smooth(0.3, 0.6, R["saddle"] + 0.3 * R["back"] + 0.15 * warp)
        mask = np.clip(
            R["muzzle"] * 0.9 + R["ears"] * 0.7 + R["tail"] * 0.6 * _smooth(-0.5, 0.5, tx.n[:, 1]), 0, 1
        )
        col = _lerp(col, sec, np.maximum(sad, _smooth(0.4, 0.8, mask)))
    elif pat == "tricolor":
        sad = _smooth(0.3, 0.6, R["saddle"] * 1.2 + 0.2 * R["back"] + 0.15 * warp)
        col = _lerp(col, ter, np.clip(R["head"] + R["ears"] + R["legs"] * 0.3 + R["neck"] * 0.5, 0, 1))
        col = _lerp(col, sec, sad)
    elif pat == "husky":
        top = _smooth(-0.3, 0.35, tx.n[:, 1] + 0.2 * warp)
        dark = (
            top * (R["torso"] + R["neck"] + R["tail"] * 0.9 + R["legs"] * 0.3)
            + R["ears"]
            + R["face_top"] * 0.9
        )
        dark = dark * (1 - R["brow"]) * (1 - R["muzzle"]) * (1 - R["eye_rim"] * 0.0)
        col = _lerp(col, sec, _smooth(0.35, 0.65, np.clip(dark, 0, 1)))
    elif pat == "mask":
        mask = np.clip(
            R["muzzle"] * 1.1 + R["ears"] + 0.6 * R["eye_rim"] + 0.5 * R["face_top"] * R["muzzle"], 0, 1
        )
        col = _lerp(col, sec, _smooth(0.3, 0.7, mask + 0.1 * warp))
    elif pat in ("solid", "bicolor"):
        pass

    # Countershading and low-frequency tone variation (real coats are never flat).
    col = _lerp(col, np.minimum(np.asarray(coat.base) * 1.35 + 0.08, 1.0), coat.belly_light * R["belly"])
    col = col * (1.0 + 0.08 * var * noise.fbm(p + 5.5, 1.5, 2))[:, None]

    # White markings: chest/belly first, then paws, chin, muzzle, legs, collar, face, body (spotting order).
    if coat.white > 0:
        w_field = np.maximum.reduce(
            [
                R["chest"] * 1.0,
                R["belly"] * 0.95,
                R["throat"] * 0.9,
                R["paws"] * 0.92,
                R["chin"] * 0.88,
                R["muzzle"] * 0.8,
                R["legs_low"] * 0.78,
                R["tail_tip"] * 0.75,
                R["legs"] * 0.55,
                R["neck"] * 0.45,
                R["head"] * 0.35 * (1 - _smooth(0.1, 0.5, np.abs(tx.n[:, 2]))),
                R["head"] * 0.2,
                R["torso"] * 0.25 * (1 - R["back"]),
                R["torso"] * 0.12,
            ]
        )
        w_field = w_field + 0.18 * noise.fbm(p + 11.0, 3.5, 3)
        thr = 1.0 - coat.white
        wm = _smooth(thr - 0.03, thr + 0.03, w_field)
        col = _lerp(col, coat.white_color, wm)

    # Inner ears: only the cupped front face, inside a rim of coat and below the tip; in photos the inner ear is half in
    # shadow and veiled by pale hairs, so it is a muted mix of pink and coat, never a bright pink sheet.
    rim = _smooth(0.55, 0.85, np.abs(np.cos(2 * np.pi * tx.u)))
    ear_front = R["ears"] * _smooth(0.0, 0.5, tx.n[:, 0]) * (1 - rim) * (1 - _smooth(0.7, 0.9, tx.v))
    inner = 0.8 * (0.4 * col + 0.6 * np.asarray(coat.inner_ear))
    col = _lerp(col, inner, ear_front * 0.9)
    col = _lerp(col, np.array([0.04, 0.03, 0.03]), R["eye_rim"] * 0.9)  # dark eye rims
    col = _paint_mouth(col, tx, model, coat, R)
    return np.clip(col, 0.0, 1.0)


def _paint_mouth(col: np.ndarray, tx: Texels, model: QuadrupedModel, coat: Coat, R) -> np.ndarray:
    """The lip line and the philtrum: thin dark lines on the front of the muzzle."""
    hp = R["head_local"]
    hi = model.head_info
    piv = model.bones["head"].pivot
    mc = hi["muzzle_c"] - piv
    mr = hi["muzzle_r"]
    tip_x = hi["x_tip"] - piv[0]
    cat = model.a.species == "cat"
    head = R["head"]
    y_lip = mc[1] - (0.12 if cat else 0.05) * mr[1] * 2
    corner = tip_x - (0.9 if cat else 1.7) * mr[0]
    along = _smooth(corner - 0.1 * mr[0], corner + 0.1 * mr[0], hp[:, 0])
    thick = (0.035 if cat else 0.04) * mr[1] * 2
    line = head * along * (1 - _smooth(thick * 0.5, thick * 1.5, np.abs(hp[:, 1] - y_lip)))
    # Philtrum: from the nose down to the lip on the midline.
    front = _smooth(tip_x - 0.5 * mr[0], tip_x - 0.2 * mr[0], hp[:, 0])
    nose_y = mc[1] + (0.28 if cat else 0.22) * mr[1] * 2
    phil = (
        head
        * front
        * (1 - _smooth(thick * 0.4, thick * 1.2, np.abs(hp[:, 2] - mc[2])))
        * (hp[:, 1] > y_lip)
        * (hp[:, 1] < nose_y)
    )
    m = np.clip(line + phil, 0, 1)
    # Lips are a darker shade of the local coat, not ink.
    return col * (1.0 - 0.55 * m)[:, None]


# ---------------------------------------------------------------------------------------------- baking


@dataclass
class _Rect:
    name: str
    w: int
    h: int
    x: int = 0
    y: int = 0


def _loft_dims(mesh: trimesh.Trimesh) -> tuple[float, float]:
    """(mean circumference, length along the path) of a lofted part, metres."""
    n, m1 = mesh.metadata["loft_grid"]
    g = mesh.vertices[: n * m1].reshape(n, m1, 3)
    circ = np.linalg.norm(np.diff(g, axis=1), axis=2).sum(axis=1)
    cent = g[:, :-1].mean(axis=1)
    length = np.linalg.norm(np.diff(cent, axis=0), axis=1).sum() + 0.5 * (circ[0] + circ[-1]) / np.pi
    return float(np.mean(circ)), float(max(length, 1e-4))


def _pack(rects: list[_Rect], size: int) -> bool:
    """Shelf packing in place; False when they do not fit."""
    x = y = shelf = 0
    for r in sorted(rects, key=lambda r: -r.h):
        if r.w > size:
            return False
        if x + r.w > size:
            x, y, shelf = 0, y + shelf, 0
        if y + r.h > size:
            return False
        r.x, r.y = x, y
        x += r.w
        shelf = max(shelf, r.h)
    return True


def _sample_grid(mesh_rest: trimesh.Trimesh, normals: np.ndarray, w: int, h: int):
    """Positions and normals of a lofted part at the centres of a w x h texel grid (u across, v down)."""
    n, m1 = mesh_rest.metadata["loft_grid"]
    g = mesh_rest.vertices[: n * m1].reshape(n, m1, 3)
    gn = normals[: n * m1].reshape(n, m1, 3)
    u = (np.arange(w) + 0.5) / w
    v = (np.arange(h) + 0.5) / h
    uu, vv = np.meshgrid(u, v)
    # Stations need not be evenly spaced in v (axial meshes use arc length): map v to a station index.
    v_st = mesh_rest.visual.uv[: n * m1].reshape(n, m1, 2)[:, 0, 1]
    coords = [np.interp(vv.reshape(-1), v_st, np.arange(n)), uu.reshape(-1) * (m1 - 1)]
    pos = np.stack(
        [ndimage.map_coordinates(g[..., k], coords, order=1, mode="nearest") for k in range(3)], -1
    )
    nor = np.stack(
        [ndimage.map_coordinates(gn[..., k], coords, order=1, mode="nearest") for k in range(3)], -1
    )
    nor /= np.maximum(np.linalg.norm(nor, axis=1, keepdims=True), 1e-9)
    return pos, nor, uu.reshape(-1), vv.reshape(-1)


def _remap_uv(mesh: trimesh.Trimesh, r: _Rect, size: int, pad: int) -> trimesh.Trimesh:
    out = mesh.copy()
    uv = mesh.visual.uv
    x0 = (r.x + pad) / size
    y0 = (r.y + pad) / size
    sw = (r.w - 2 * pad) / size
    sh = (r.h - 2 * pad) / size
    # Image rows grow downwards; pyrender (OpenGL) samples v = 0 at the image's bottom row.
    new_uv = np.stack([x0 + uv[:, 0] * sw, 1.0 - (y0 + uv[:, 1] * sh)], -1)
    out.visual = trimesh.visual.TextureVisuals(uv=new_uv)
    out.metadata.update(mesh.metadata)
    return out


def _fur_field(h: int, w: int, coat: Coat, rng: np.random.Generator, texel_m: float) -> np.ndarray:
    """Anisotropic streak noise (rows = along the fur), zero mean, unit std, periodic across u: fine strands
    plus locks (clumps with partings between them), the texture that still shows at thumbnail scale."""

    def streaks(along_m: float, across_m: float, min_along: float, min_across: float) -> np.ndarray:
        along = max(min_along, along_m / texel_m)
        across = max(min_across, across_m / texel_m) * (1 + 2.0 * coat.curly)
        if coat.curly > 0.3:
            along = across * 1.2
        f = ndimage.gaussian_filter(
            rng.normal(0.0, 1.0, (h, w)), sigma=(along, across), mode=("nearest", "wrap")
        )
        return f / max(float(f.std()), 1e-6)

    fine = streaks(0.002 + 0.012 * coat.fur_length, 0.0005, 0.8, 0.5)
    locks = streaks(0.005 + 0.015 * coat.fur_length, 0.0015 + 0.0025 * coat.fur_length, 1.5, 0.8)
    f = 0.5 * fine + 0.85 * locks
    return f / max(float(f.std()), 1e-6)


def _resize(c: np.ndarray, h: int, w: int) -> np.ndarray:
    """Bilinear resize of an H x W x 3 float image to h x w."""
    from PIL import Image

    return np.stack(
        [
            np.asarray(
                Image.fromarray(c[..., k].astype(np.float32), "F").resize((w, h), Image.Resampling.BILINEAR)
            )
            for k in range(3)
        ],
        -1,
    ).astype(np.float64)


def bake_atlas(
    model: QuadrupedModel, coat: Coat, seed: int, size: int = 512, pad: int = 2
) -> tuple[dict[str, trimesh.Trimesh], np.ndarray]:
    """Fur parts with atlas UVs and the base-colour atlas (uint8 H x W x 3).

    The coat pattern is evaluated at half the atlas resolution (patterns are smooth) and upsampled; the fur
    streaks are added at full resolution.
    """
    fur = [pg for pg in model.parts if pg.kind == "fur"]
    rest_tf = model.bone_transforms({})
    dims = {pg.name: _loft_dims(pg.mesh) for pg in fur}
    total = sum(c * length for c, length in dims.values())
    # Texel density: fill ~80% of the atlas, then shrink until the shelves fit.
    dens = math.sqrt(0.8 * size * size / total)
    for _ in range(40):
        rects = [
            _Rect(
                pg.name,
                max(8, int(dims[pg.name][0] * dens) + 2 * pad),
                max(8, int(dims[pg.name][1] * dens) + 2 * pad),
            )
            for pg in fur
        ]
        if _pack(rects, size):
            break
        dens *= 0.93
    by_name = {r.name: r for r in rects}
    img = np.zeros((size, size, 3))
    rng = np.random.default_rng(seed + 101)
    texel_m = 1.0 / dens
    all_p, all_n, all_part, all_u, all_v, slots = [], [], [], [], [], []
    names = [pg.name for pg in fur]
    for i, pg in enumerate(fur):
        r = by_name[pg.name]
        w, h = r.w - 2 * pad, r.h - 2 * pad
        wc, hc = max(2, w // 2), max(2, h // 2)
        rest = pg.mesh.copy()
        rest.apply_transform(rest_tf[pg.bone])
        pos, nor, uu, vv = _sample_grid(rest, rest.vertex_normals, wc, hc)
        all_p.append(pos)
        all_n.append(nor)
        all_part.append(np.full(len(pos), i))
        all_u.append(uu)
        all_v.append(vv)
        slots.append((r, w, h, wc, hc))
    tx = Texels(
        p=np.concatenate(all_p),
        n=np.concatenate(all_n),
        part=np.concatenate(all_part),
        names=names,
        u=np.concatenate(all_u),
        v=np.concatenate(all_v),
    )
    colors = coat_colors(tx, model, coat, seed)
    k = 0
    amp = 0.12 + 0.12 * coat.fur_length
    for r, w, h, wc, hc in slots:
        c = _resize(colors[k : k + wc * hc].reshape(hc, wc, 3), h, w)
        k += wc * hc
        f = _fur_field(h, w, coat, rng, texel_m)
        # Streaks converge at the loft's end caps: fade them out there.
        vv = (np.arange(h) + 0.5) / h
        f = f * (_smooth(0.0, 0.15, vv) * _smooth(0.0, 0.15, 1.0 - vv))[:, None]
        # Pale fur cannot brighten past white, so its streaks only darken: at full strength white coats look
        # mottled like plumage ("hen", "magpie" to ImageNet). Halve them there.
        pale = _smooth(0.45, 0.85, c.mean(-1))
        c = c * np.clip(1.0 + amp * (1.0 - 0.5 * pale) * f, 0.5, 1.5)[..., None]
        # Dark coats: multiplying black by streaks leaves black; photos of them show pale glints along the
        # hairs, which is what tells fur from smooth skin ("Mexican hairless" to ImageNet) or lacquer.
        dark = 1.0 - _smooth(0.05, 0.35, c.mean(-1))
        c = np.clip(c + (0.05 * dark * np.clip(f, 0, None))[..., None], 0, 1)
        # Fill the rect including its padding (edge texels repeated) so filtering does not bleed.
        img[r.y : r.y + r.h, r.x : r.x + r.w] = np.pad(c, ((pad, pad), (pad, pad), (0, 0)), mode="edge")
    meshes = {pg.name: _remap_uv(pg.mesh, by_name[pg.name], size, pad) for pg in fur}
    return meshes, (np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8)


def eye_texture(coat: Coat, species: str, size: int = 128, seed: int = 0) -> np.ndarray:
    """Eye sphere texture (u round the gaze axis, v from the back pole to the front pole): iris, pupil,
    limbal ring and a painted catchlight."""
    g = np.random.default_rng(seed)
    h, w = size // 2, size
    u = (np.arange(w) + 0.5) / w
    v = (np.arange(h) + 0.5) / h
    uu, vv = np.meshgrid(u, v)
    th = 2 * np.pi * uu
    alpha = np.pi * (1 - vv)  # angle from the front pole
    # Local direction: z (side) = cos th * sin a, y (up) = -sin th * sin a.
    z = np.cos(th) * np.sin(alpha)
    y = -np.sin(th) * np.sin(alpha)
    iris_r = 0.95 if species == "cat" else 0.75
    iris = np.asarray(coat.iris)
    col = np.zeros((h, w, 3)) + np.array([0.12, 0.08, 0.06])  # the rest of the ball, hidden in the socket
    in_iris = alpha < iris_r
    radial = alpha / iris_r
    streak = 1.0 + 0.25 * np.sin(th * 37 + g.random() * 6) * np.sin(th * 11)
    ic = iris[None, None] * (0.65 + 0.55 * radial[..., None]) * streak[..., None]
    col = np.where(in_iris[..., None], ic, col)
    limbal = (radial > 0.85) & in_iris
    col = np.where(limbal[..., None], col * 0.45, col)
    if coat.pupil == "slit":
        slit_w = 0.12 + 0.1 * g.random()
        pupil = (np.abs(z) < slit_w * np.sqrt(np.clip(1 - (y / 0.8) ** 2, 0, 1))) & (alpha < 0.8)
    else:
        pupil = alpha < (0.38 if species == "dog" else 0.3)
    col = np.where(pupil[..., None], np.array([0.01, 0.01, 0.012]), col)
    # Catchlight: a small bright spot up and to one side of the pupil.
    hl = (np.hypot(z - 0.28, y - 0.32) < 0.13) & (alpha < 1.2)
    col = np.where(hl[..., None], np.array([0.95, 0.95, 0.95]), col)
    # Rows run with v; OpenGL samples v = 0 at the last row.
    return (np.clip(col[::-1], 0, 1) * 255 + 0.5).astype(np.uint8)


def nose_texture(coat: Coat, species: str, size: int = 64) -> np.ndarray:
    """Nose leather: colour with nostrils on the lower front (the nose loft runs along +X, v to the front)."""
    h, w = size, size
    u = (np.arange(w) + 0.5) / w
    v = (np.arange(h) + 0.5) / h
    uu, vv = np.meshgrid(u, v)
    th = 2 * np.pi * uu
    side = np.cos(th)  # +z
    up = -np.sin(th)  # ring angle pi/2 points down (-y) for a +X loft with side +Z
    base = np.asarray(coat.nose)
    col = np.zeros((h, w, 3)) + base
    # Leather texture: tiny cobbles.
    col *= (0.85 + 0.3 * ((np.sin(uu * 90) * np.sin(vv * 70)) > 0))[..., None]
    nost = (
        (vv > 0.55)
        & (np.abs(np.abs(side) - 0.55) < (0.22 if species == "dog" else 0.15))
        & (up < 0.1)
        & (up > -0.75)
    )
    col = np.where(nost[..., None], base * 0.15, col)
    return (np.clip(col[::-1], 0, 1) * 255 + 0.5).astype(np.uint8)


#: Shell-fur length per species, times the cats' (at full length dogs read as wire-haired, and real dogs lost
#: most to shell fur in transfer: docs/benchmarks.md, "shorter dog fur").
FUR_LENGTH_SCALE = {"cat": 1.0, "dog": 0.5}


def fur_length(fluff: float, species: str) -> float:
    """Shell-fur length in metres for a breed's `fluff` (0 sleek .. 1 very fluffy)."""
    return (0.002 + 0.014 * float(fluff)) * FUR_LENGTH_SCALE[species]


def _luma(c) -> float:
    return float(0.2126 * c[0] + 0.7152 * c[1] + 0.0722 * c[2])


def paint_coat(
    model: QuadrupedModel, coat: Coat, *, key: str, seed: int, atlas_size: int = 512
) -> tuple[dict[str, trimesh.Trimesh], dict[str, SurfaceMaterial]]:
    """Render-ready meshes (by part name) and materials (by kind: fur, eye, nose) for one breed."""
    meshes, img = bake_atlas(model, coat, seed, size=atlas_size)
    species = model.a.species
    fur = SurfaceMaterial(
        key=f"{key}#fur",
        base_color=(1.0, 1.0, 1.0, 1.0),
        metallic=0.0,
        # Dark coats show a sheen in photos (that is how a black cat reads as fur, not a silhouette).
        roughness=float(np.clip(0.97 - 0.4 * (1.0 - _luma(coat.base) / 0.25), 0.55, 0.97)),
        base_color_texture=img,
        fur_length=fur_length(model.a.fluff, species),
    )
    eye = SurfaceMaterial(
        key=f"{key}#eye",
        metallic=0.0,
        roughness=0.08,
        base_color_texture=eye_texture(coat, species, seed=seed),
    )
    nose = SurfaceMaterial(
        key=f"{key}#nose", metallic=0.0, roughness=0.35, base_color_texture=nose_texture(coat, species)
    )
    whisker = SurfaceMaterial(
        key=f"{key}#whisker", base_color=(0.92, 0.91, 0.88, 1.0), metallic=0.0, roughness=0.45
    )
    # Wet and glossy: a tongue reads as one by its pink and its highlight.
    tongue = SurfaceMaterial(
        key=f"{key}#tongue", base_color=(0.86, 0.4, 0.45, 1.0), metallic=0.0, roughness=0.3
    )
    mouth = SurfaceMaterial(
        key=f"{key}#mouth", base_color=(0.16, 0.05, 0.06, 1.0), metallic=0.0, roughness=0.6
    )
    for pg in model.parts:
        if pg.kind != "fur":
            meshes[pg.name] = pg.mesh
    materials = {"fur": fur, "eye": eye, "nose": nose, "whisker": whisker, "tongue": tongue, "mouth": mouth}
    return meshes, materials
