"""Procedural cars: a lofted body (side profile, plan rounding, tumblehome, wheel arches) with glass, head
and tail lights, grille, bumpers, plates, mirrors and handles laid onto it, four wheels with tyres, rims and
spokes, and body-type extras (pickup bed, roof rails, spare wheel, taxi sign, ambulance light bar, rear
wing, convertible cockpit).

The body is one closed loft along x: each station's cross-section is built from the side profile (roof /
hood / deck line, sill line, belt line) and the plan half-width, so the same code makes a sedan, a van or a
pickup. Glass, lights and trim are outlines projected onto that body and thickened into thin closed slabs,
so their edges stay clean whatever the body's tessellation. Subject frame: +X forward, +Y up, right side
on +Z. Pose: {"steer" (front-wheel angle), "wheel_spin", "paint" (variant index)}.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFont
from scipy.interpolate import PchipInterpolator

from drsynth.subjects import shapes as S
from drsynth.subjects.base import Pose
from drsynth.subjects.vehicles import (
    Piece,
    Rig,
    VehicleSubject,
    blend_specs,
    cached_texture,
    check_breeds,
    jitter_rgb,
    material,
    normal_map_from_height,
    rotation,
    stable_seed,
    translation,
    tyre_textures,
)

Y = np.array([0.0, 1.0, 0.0])
Z = np.array([0.0, 0.0, 1.0])


@dataclass(frozen=True)
class CarSpec:
    """Parameters of one car. Lengths in metres; *_x are positions along the car as fractions of its
    length from the rear (0) to the front (1)."""

    body: str = "sedan"  # sedan hatchback wagon suv van sports pickup convertible jeep limo ambulance race
    length: float = 4.75
    width: float = 1.83
    height: float = 1.45
    wheelbase: float = 2.78
    front_overhang: float = 0.95
    clearance: float = 0.15
    wheel_d: float = 0.66
    tyre_w: float = 0.215
    rim_frac: float = 0.66  # rim diameter / tyre diameter
    nose_h: float = 0.78  # top of the front face
    cowl_x: float = 0.67  # windshield base
    cowl_h: float = 0.98
    roof_front_x: float = 0.53
    roof_rear_x: float = 0.31
    deck_x: float = 0.18  # rear window base
    deck_h: float = 1.02
    tail_h: float = 0.98  # top of the rear face
    belt_h: float = 0.97  # side window sill at the windshield; rises to the rear by belt_rise
    belt_rise: float = 0.04
    tumblehome: float = 0.8  # roof width / body width
    nose_round: float = 0.32  # plan-view rounding of the front corners (m)
    tail_round: float = 0.22
    face_round: float = 0.07  # side-view rounding of the front / rear faces (m)
    b_pillar_x: float = 0.44
    c_pillar_x: float = 0.27  # rear end of the rear side window (sedan: where the C pillar starts)
    quarter_window: bool = False  # a third side window behind the C/D pillar
    rear_glass: str = "slope"  # slope (on the deck) | upright (on the rear face)
    bed_x: float = 0.0  # pickup: bed from the rear to here (0 = no bed)
    open_top: bool = False  # convertible
    headlight: str = "slim"  # slim | wide | round | square
    grille: str = "wide"  # wide | narrow | split | slot | mesh
    cladding: bool = False  # dark lower body (SUVs, pickups)
    bumper_black: bool = False
    roof_rails: bool = False
    spare_wheel: bool = False
    roof_sign: str = ""  # "taxi"
    light_bar: bool = False
    rear_wing: bool = False
    livery: str = ""  # "" | "ambulance" | "race" | "checker"
    rim_style: str = "spoke5"  # spoke5 | spoke10 | steel | turbine
    tread: str = "slick"
    colours: tuple = ((0.9, 0.9, 0.9),)


_COMMON = (
    (0.92, 0.92, 0.92),
    (0.03, 0.03, 0.035),
    (0.55, 0.56, 0.58),
    (0.32, 0.33, 0.35),
    (0.08, 0.15, 0.4),
    (0.6, 0.04, 0.04),
    (0.75, 0.72, 0.62),
    (0.2, 0.3, 0.55),
    (0.15, 0.22, 0.16),
    (0.45, 0.3, 0.2),
)
_SPORTY = (
    (0.8, 0.03, 0.02),
    (0.95, 0.75, 0.05),
    (0.03, 0.03, 0.03),
    (0.1, 0.25, 0.7),
    (0.92, 0.92, 0.92),
    (0.9, 0.4, 0.05),
)

PRESETS: dict[str, CarSpec] = {
    "sedan": CarSpec(colours=_COMMON),
    "compact_sedan": CarSpec(
        length=4.45,
        width=1.76,
        height=1.44,
        wheelbase=2.65,
        front_overhang=0.88,
        wheel_d=0.63,
        tyre_w=0.2,
        roof_front_x=0.52,
        roof_rear_x=0.3,
        cowl_x=0.66,
        deck_x=0.17,
        c_pillar_x=0.26,
        colours=_COMMON,
        headlight="wide",
        grille="narrow",
    ),
    "hatchback": CarSpec(
        body="hatchback",
        length=4.1,
        width=1.78,
        height=1.47,
        wheelbase=2.58,
        front_overhang=0.86,
        wheel_d=0.63,
        tyre_w=0.2,
        cowl_x=0.68,
        roof_front_x=0.55,
        roof_rear_x=0.14,
        deck_x=0.02,
        deck_h=1.0,
        tail_h=1.28,
        c_pillar_x=0.17,
        b_pillar_x=0.45,
        rear_glass="upright",
        tail_round=0.16,
        colours=_COMMON + _SPORTY[:2],
        headlight="wide",
    ),
    "city_car": CarSpec(
        body="hatchback",
        length=3.6,
        width=1.66,
        height=1.52,
        wheelbase=2.38,
        front_overhang=0.66,
        wheel_d=0.58,
        tyre_w=0.175,
        nose_h=0.8,
        cowl_x=0.72,
        cowl_h=1.0,
        roof_front_x=0.6,
        roof_rear_x=0.1,
        deck_x=0.01,
        deck_h=1.02,
        tail_h=1.35,
        c_pillar_x=0.13,
        b_pillar_x=0.47,
        rear_glass="upright",
        nose_round=0.28,
        tail_round=0.12,
        headlight="round",
        grille="narrow",
        rim_style="steel",
        colours=((0.95, 0.85, 0.2), (0.55, 0.8, 0.35), (0.9, 0.3, 0.3), (0.3, 0.6, 0.85), (0.92, 0.92, 0.92)),
    ),
    "wagon": CarSpec(
        body="wagon",
        length=4.85,
        width=1.84,
        height=1.5,
        wheelbase=2.8,
        roof_rear_x=0.05,
        deck_x=0.015,
        deck_h=1.02,
        tail_h=1.38,
        c_pillar_x=0.2,
        quarter_window=True,
        rear_glass="upright",
        roof_rails=True,
        tail_round=0.14,
        colours=_COMMON,
    ),
    "sports": CarSpec(
        body="sports",
        length=4.5,
        width=1.92,
        height=1.22,
        wheelbase=2.55,
        front_overhang=1.02,
        clearance=0.11,
        wheel_d=0.68,
        tyre_w=0.265,
        rim_frac=0.74,
        nose_h=0.62,
        cowl_x=0.6,
        cowl_h=0.86,
        belt_h=0.86,
        roof_front_x=0.47,
        roof_rear_x=0.33,
        deck_x=0.12,
        deck_h=0.9,
        tail_h=0.88,
        b_pillar_x=0.4,
        c_pillar_x=0.33,
        tumblehome=0.72,
        nose_round=0.45,
        face_round=0.1,
        headlight="slim",
        grille="slot",
        rim_style="turbine",
        colours=_SPORTY,
    ),
    "coupe": CarSpec(
        body="coupe",
        length=4.75,
        width=1.9,
        height=1.36,
        wheelbase=2.72,
        front_overhang=0.9,
        clearance=0.13,
        wheel_d=0.68,
        tyre_w=0.245,
        rim_frac=0.72,
        nose_h=0.76,
        cowl_x=0.62,
        cowl_h=0.93,
        belt_h=0.93,
        roof_front_x=0.5,
        roof_rear_x=0.34,
        deck_x=0.16,
        deck_h=1.0,
        tail_h=0.98,
        b_pillar_x=0.36,
        c_pillar_x=0.33,
        grille="wide",
        headlight="square",
        colours=_SPORTY + _COMMON[:3],
    ),
    "convertible": CarSpec(
        body="convertible",
        length=4.55,
        width=1.85,
        height=1.3,
        wheelbase=2.6,
        front_overhang=0.9,
        clearance=0.13,
        wheel_d=0.66,
        tyre_w=0.235,
        rim_frac=0.72,
        nose_h=0.72,
        cowl_x=0.62,
        cowl_h=0.9,
        belt_h=0.9,
        roof_front_x=0.56,
        roof_rear_x=0.3,
        deck_x=0.2,
        deck_h=0.93,
        tail_h=0.93,
        open_top=True,
        b_pillar_x=0.4,
        c_pillar_x=0.38,
        colours=_SPORTY + ((0.75, 0.72, 0.62),),
    ),
    "suv": CarSpec(
        body="suv",
        length=4.75,
        width=1.92,
        height=1.74,
        wheelbase=2.82,
        front_overhang=0.92,
        clearance=0.21,
        wheel_d=0.76,
        tyre_w=0.245,
        rim_frac=0.66,
        nose_h=1.02,
        cowl_x=0.69,
        cowl_h=1.2,
        belt_h=1.2,
        roof_front_x=0.58,
        roof_rear_x=0.05,
        deck_x=0.01,
        deck_h=1.22,
        tail_h=1.62,
        b_pillar_x=0.46,
        c_pillar_x=0.2,
        quarter_window=True,
        rear_glass="upright",
        tumblehome=0.84,
        nose_round=0.3,
        tail_round=0.14,
        cladding=True,
        roof_rails=True,
        headlight="square",
        grille="wide",
        colours=_COMMON,
    ),
    "crossover": CarSpec(
        body="suv",
        length=4.45,
        width=1.84,
        height=1.63,
        wheelbase=2.66,
        front_overhang=0.9,
        clearance=0.19,
        wheel_d=0.7,
        tyre_w=0.225,
        rim_frac=0.68,
        nose_h=0.92,
        cowl_x=0.69,
        cowl_h=1.1,
        belt_h=1.1,
        roof_front_x=0.57,
        roof_rear_x=0.08,
        deck_x=0.02,
        deck_h=1.12,
        tail_h=1.5,
        b_pillar_x=0.46,
        c_pillar_x=0.2,
        quarter_window=True,
        rear_glass="upright",
        tumblehome=0.8,
        tail_round=0.16,
        cladding=True,
        headlight="slim",
        grille="mesh",
        colours=_COMMON,
    ),
    "jeep": CarSpec(
        body="jeep",
        length=4.3,
        width=1.88,
        height=1.84,
        wheelbase=2.46,
        front_overhang=0.78,
        clearance=0.25,
        wheel_d=0.8,
        tyre_w=0.27,
        rim_frac=0.58,
        nose_h=1.12,
        cowl_x=0.72,
        cowl_h=1.2,
        belt_h=1.2,
        roof_front_x=0.69,
        roof_rear_x=0.02,
        deck_x=0.005,
        deck_h=1.22,
        tail_h=1.74,
        b_pillar_x=0.5,
        c_pillar_x=0.18,
        quarter_window=True,
        rear_glass="upright",
        tumblehome=0.93,
        nose_round=0.12,
        tail_round=0.08,
        face_round=0.03,
        headlight="round",
        grille="slot",
        bumper_black=True,
        spare_wheel=True,
        cladding=True,
        rim_style="steel",
        tread="knobby",
        colours=(
            (0.2, 0.25, 0.15),
            (0.05, 0.05, 0.05),
            (0.85, 0.85, 0.82),
            (0.55, 0.05, 0.05),
            (0.6, 0.55, 0.4),
        ),
    ),
    "minivan": CarSpec(
        body="van",
        length=5.1,
        width=1.98,
        height=1.76,
        wheelbase=3.05,
        front_overhang=0.98,
        clearance=0.16,
        wheel_d=0.7,
        tyre_w=0.235,
        nose_h=0.92,
        cowl_x=0.77,
        cowl_h=1.08,
        belt_h=1.08,
        roof_front_x=0.62,
        roof_rear_x=0.04,
        deck_x=0.01,
        deck_h=1.12,
        tail_h=1.66,
        b_pillar_x=0.58,
        c_pillar_x=0.2,
        quarter_window=True,
        rear_glass="upright",
        tumblehome=0.84,
        nose_round=0.38,
        tail_round=0.14,
        headlight="slim",
        grille="narrow",
        colours=_COMMON,
    ),
    "pickup": CarSpec(
        body="pickup",
        length=5.5,
        width=1.98,
        height=1.86,
        wheelbase=3.55,
        front_overhang=0.95,
        clearance=0.23,
        wheel_d=0.8,
        tyre_w=0.265,
        rim_frac=0.62,
        nose_h=1.15,
        cowl_x=0.72,
        cowl_h=1.28,
        belt_h=1.28,
        roof_front_x=0.64,
        roof_rear_x=0.44,
        deck_x=0.42,
        deck_h=1.32,
        tail_h=1.22,
        b_pillar_x=0.53,
        c_pillar_x=0.435,
        rear_glass="upright",
        bed_x=0.41,
        tumblehome=0.88,
        nose_round=0.18,
        tail_round=0.06,
        face_round=0.05,
        headlight="square",
        grille="wide",
        cladding=True,
        tread="knobby",
        colours=_COMMON,
    ),
    "taxi": CarSpec(
        length=4.85,
        width=1.84,
        height=1.5,
        roof_sign="taxi",
        livery="checker",
        rim_style="steel",
        colours=((0.98, 0.78, 0.05), (0.95, 0.82, 0.1), (0.97, 0.72, 0.02)),
    ),
    "limousine": CarSpec(
        body="limo",
        length=6.4,
        width=1.9,
        height=1.47,
        wheelbase=4.4,
        front_overhang=1.0,
        b_pillar_x=0.52,
        c_pillar_x=0.24,
        roof_front_x=0.63,
        roof_rear_x=0.23,
        cowl_x=0.75,
        deck_x=0.14,
        quarter_window=True,
        grille="mesh",
        headlight="square",
        colours=((0.02, 0.02, 0.02), (0.95, 0.95, 0.95), (0.05, 0.05, 0.06)),
    ),
    "ambulance": CarSpec(
        body="van",
        length=5.9,
        width=2.05,
        height=2.55,
        wheelbase=3.6,
        front_overhang=0.95,
        clearance=0.2,
        wheel_d=0.74,
        tyre_w=0.235,
        nose_h=1.05,
        cowl_x=0.8,
        cowl_h=1.28,
        belt_h=1.28,
        roof_front_x=0.7,
        roof_rear_x=0.02,
        deck_x=0.005,
        deck_h=1.4,
        tail_h=2.45,
        b_pillar_x=0.74,
        c_pillar_x=0.66,
        rear_glass="upright",
        tumblehome=0.96,
        nose_round=0.3,
        tail_round=0.06,
        face_round=0.04,
        light_bar=True,
        livery="ambulance",
        headlight="square",
        grille="wide",
        bumper_black=True,
        rim_style="steel",
        colours=((0.96, 0.96, 0.95), (0.95, 0.93, 0.88)),
    ),
    "race": CarSpec(
        body="sports",
        length=4.6,
        width=1.98,
        height=1.18,
        wheelbase=2.6,
        front_overhang=1.05,
        clearance=0.09,
        wheel_d=0.68,
        tyre_w=0.3,
        rim_frac=0.75,
        nose_h=0.55,
        cowl_x=0.58,
        cowl_h=0.82,
        belt_h=0.82,
        roof_front_x=0.46,
        roof_rear_x=0.3,
        deck_x=0.12,
        deck_h=0.84,
        tail_h=0.84,
        b_pillar_x=0.4,
        c_pillar_x=0.33,
        tumblehome=0.7,
        nose_round=0.5,
        face_round=0.12,
        grille="slot",
        headlight="slim",
        rear_wing=True,
        livery="race",
        rim_style="turbine",
        colours=_SPORTY,
    ),
    "muscle": CarSpec(
        body="coupe",
        length=4.85,
        width=1.92,
        height=1.38,
        wheelbase=2.75,
        front_overhang=0.95,
        clearance=0.13,
        wheel_d=0.7,
        tyre_w=0.255,
        rim_frac=0.7,
        nose_h=0.86,
        cowl_x=0.6,
        cowl_h=0.98,
        belt_h=0.98,
        roof_front_x=0.5,
        roof_rear_x=0.32,
        deck_x=0.13,
        deck_h=1.0,
        tail_h=0.98,
        b_pillar_x=0.37,
        c_pillar_x=0.31,
        nose_round=0.16,
        tail_round=0.1,
        face_round=0.04,
        grille="mesh",
        headlight="round",
        livery="race",
        rim_style="spoke10",
        colours=_SPORTY,
    ),
}

FAMILIES = {
    "saloon": ["sedan", "compact_sedan", "taxi", "limousine"],
    "hatch": ["hatchback", "city_car", "wagon"],
    "sport": ["sports", "coupe", "race", "muscle", "convertible"],
    "tall": ["suv", "crossover", "jeep", "minivan"],
    "pickup": ["pickup"],
    "ambulance": ["ambulance"],
}


def preset_names() -> list[str]:
    return list(PRESETS)


def make_subjects(class_name: str, *, breeds: list[str] | None, blends: int, seed: int) -> list[CarSubject]:
    """One subject per preset, plus `blends` cars interpolated between presets of the same family."""
    names = check_breeds("car", breeds, PRESETS)
    out = [CarSubject(class_name=class_name, breed=n, spec=PRESETS[n], seed=seed) for n in names]
    rng = np.random.default_rng(np.random.SeedSequence([seed, stable_seed("car-blends")]))
    for k in range(blends):
        a = names[int(rng.integers(len(names)))]
        family = next((f for f in FAMILIES.values() if a in f), [a])
        choices = [n for n in family if n in names] or [a]
        b = choices[int(rng.integers(len(choices)))]
        t = float(rng.uniform(0.0, 1.0))
        spec = blend_specs(PRESETS[a], PRESETS[b], t, rng, jitter=0.025)
        out.append(
            CarSubject(
                class_name=class_name,
                breed=f"blend{k:03d}-{a}-{b}",
                spec=spec,
                seed=seed,
                blend_of=(a, b, round(t, 3)),
            )
        )
    return out


class CarSubject(VehicleSubject):
    def __init__(self, *, class_name: str, breed: str, spec: CarSpec, seed: int, blend_of=None):
        super().__init__(class_name=class_name, breed=breed, spec=spec, generator="car", blend_of=blend_of)
        self._seed = seed

    def default_pose(self) -> Pose:
        return {"steer": 0.0, "wheel_spin": 0.0, "paint": 0}

    def sample_pose(self, rng: np.random.Generator) -> Pose:
        return {
            "steer": float(np.clip(rng.normal(0.0, 0.18), -0.55, 0.55)),
            "wheel_spin": float(rng.uniform(0.0, 2 * np.pi)),
            "paint": int(rng.integers(self.paint_count())),
        }

    def _build(self) -> Rig:
        rng = np.random.default_rng(np.random.SeedSequence([self._seed, stable_seed("car", self.breed)]))
        return build_car(self.spec, rng)

    def _group_transforms(self, pose: Pose) -> dict[str, np.ndarray]:
        info = self.rig.info
        steer = float(pose.get("steer", 0.0))
        spin = float(pose.get("wheel_spin", 0.0))
        out = {}
        for name, centre, side in zip(
            ("wheel_fl", "wheel_fr", "wheel_rl", "wheel_rr"),
            info["wheel_centres"],
            (-1, 1, -1, 1),
            strict=True,
        ):
            m = translation(centre)
            if name.startswith("wheel_f"):
                m = m @ rotation(Y, steer)
            m = m @ rotation(Z, -spin)
            if side < 0:
                m = m @ rotation(Y, math.pi)  # left wheels: the rim face looks outwards (-z)
            out[name] = m
        return out


# ----------------------------------------------------------------------------------------------------------
# Body profiles
# ----------------------------------------------------------------------------------------------------------
class Profile:
    """The body's side, plan and section parameters as functions of x (metres, rear end at 0)."""

    def __init__(self, spec: CarSpec):
        self.spec = spec
        L = spec.length
        self.L = L
        H = spec.height
        self.rear_axle = L - spec.front_overhang - spec.wheelbase
        self.front_axle = L - spec.front_overhang
        self.wheel_r = spec.wheel_d / 2
        self.arch_r = self.wheel_r + 0.035 + 0.05 * spec.tyre_w
        self.bumper_front = spec.clearance + 0.14
        self.bumper_rear = spec.clearance + 0.16
        # Top line through key points.
        pts = [(0.0, spec.tail_h)]
        if spec.bed_x > 0:
            bed_front = spec.bed_x * L
            pts += [
                (bed_front - 0.06, spec.tail_h),
                (bed_front, spec.tail_h + 0.02),
                (bed_front + 0.05, H - 0.06),
            ]
            pts += [(max(spec.roof_rear_x * L, bed_front + 0.14), H)]
        else:
            if spec.rear_glass == "slope":
                pts += [(spec.deck_x * L, spec.deck_h)]
            pts += [(spec.roof_rear_x * L, H - (0.0 if spec.rear_glass == "slope" else 0.0))]
        if spec.open_top:
            # No roof: the deck runs forward at belt height to the windshield frame.
            pts = [(0.0, spec.tail_h), (spec.deck_x * L, spec.deck_h)]
        pts += [] if spec.open_top else [(spec.roof_front_x * L, H)]
        pts += [(spec.cowl_x * L, spec.cowl_h), (L - 0.1, spec.nose_h), (L, spec.nose_h - 0.01)]
        xs, ys = zip(*sorted(pts), strict=True)
        xs = np.asarray(xs)
        # Drop key points that would make x non-increasing.
        keep = np.concatenate([[True], np.diff(xs) > 1e-3])
        self._top = PchipInterpolator(xs[keep], np.asarray(ys)[keep])
        self.y_mid_front = 0.5 * (spec.nose_h + self.bumper_front)
        self.y_mid_rear = 0.5 * (spec.tail_h + self.bumper_rear)

    def _end(self, x: np.ndarray, length: float, p: float) -> tuple[np.ndarray, np.ndarray]:
        """Rounding factors in [0, 1] that close the front and rear ends (superellipse of exponent p)."""
        d_front = np.clip(1 - (self.L - x) / length, 0, 1)
        d_rear = np.clip(1 - x / length, 0, 1)
        f = (1 - d_front**p) ** (1 / p)
        r = (1 - d_rear**p) ** (1 / p)
        return f, r

    def top(self, x):
        s = self.spec
        base = self._top(x)
        f, r = self._end(x, s.face_round, 5.0)
        base = self.y_mid_front + (base - self.y_mid_front) * f
        return self.y_mid_rear + (base - self.y_mid_rear) * r

    def bottom(self, x):
        s = self.spec
        y = np.full_like(x, s.clearance)
        # Bumpers sit higher than the sills (approach / departure angles).
        fa, ra = self.front_axle + self.arch_r, self.rear_axle - self.arch_r
        y = np.where(x > fa, np.interp(x, [fa, self.L], [s.clearance + 0.02, self.bumper_front]), y)
        y = np.where(x < ra, np.interp(x, [0.0, ra], [self.bumper_rear, s.clearance + 0.03]), y)
        for ax in (self.rear_axle, self.front_axle):
            dx = np.abs(x - ax)
            arch = self.wheel_r + np.sqrt(np.clip(self.arch_r**2 - dx**2, 0, None))
            # A 15 mm ramp just outside the arch keeps its edge from being exactly vertical.
            ramp = np.clip((self.arch_r + 0.015 - dx) / 0.015, 0, 1)
            target = np.where(dx < self.arch_r, arch, self.wheel_r)
            y = np.maximum(y, y + (target - y) * ramp)
        f, r = self._end(x, s.face_round, 5.0)
        y = self.y_mid_front + (y - self.y_mid_front) * f
        return self.y_mid_rear + (y - self.y_mid_rear) * r

    def belt(self, x):
        s = self.spec
        t = np.clip((s.cowl_x * self.L - x) / self.L, 0, 1)
        return s.belt_h + s.belt_rise * t

    def half_width(self, x):
        s = self.spec
        f, _ = self._end(x, s.nose_round, 2.6)
        _, r = self._end(x, s.tail_round, 2.6)
        return s.width / 2 * np.maximum(f * r, 1e-3)

    def end_cuts(self) -> tuple[float, float]:
        """Where the body is cut flat at the rear and the front: where the end roundings have shrunk the
        section to about 80 %. The flat caps there are the bumper faces (a loft closed all the way to a
        point would pinch into a cone)."""
        s = self.spec
        keep = 0.8

        def dist(length, p):
            return length * (1 - (1 - keep**p) ** (1 / p))

        rear = max(dist(s.face_round, 5.0), dist(s.tail_round, 2.6))
        front = max(dist(s.face_round, 5.0), dist(s.nose_round, 2.6))
        return rear, self.L - front

    def stations(self, n: int = 100) -> np.ndarray:
        """Station x positions, dense where the profiles change fast (arc length of all profiles)."""
        x0, x1 = self.end_cuts()
        x = np.linspace(x0, x1, 4000)
        curves = np.stack([x, self.top(x), self.bottom(x) * 1.5, self.half_width(x) * 2.0], -1)
        seg = np.linalg.norm(np.diff(curves, axis=0), axis=1)
        s = np.concatenate([[0], np.cumsum(seg)])
        xs = np.interp(np.linspace(0, s[-1], n), s, x)
        xs = np.unique(np.concatenate([xs, [x0, x1]]))
        return xs[np.concatenate([[True], np.diff(xs) > 1e-4])]


def _section(y_bot, y_belt, y_top, hw, hw_top, cabin_t):
    """Right half of a section, from the bottom centre up to the top centre, as (z, y) points (segments
    have fixed point counts so every station's ring lines up)."""
    h = max(y_top - y_bot, 1e-3)
    rb = min(0.08, 0.3 * h, 0.6 * hw)
    rt = min(0.075 if cabin_t > 0.5 else 0.09, 0.35 * h, 0.45 * hw)
    belt = min(max(y_belt, y_bot + rb + 0.004), y_top - rt - 0.004)
    w_low = hw * 0.965
    w_belt = hw * 0.985
    w_top = hw * 0.93 + (hw_top - hw * 0.93) * cabin_t
    w_top = min(w_top, w_belt)
    pts = []
    # bottom flat
    for t in np.linspace(0, 1, 3, endpoint=False):
        pts.append((t * (w_low - rb), y_bot))
    # lower corner
    for a in np.linspace(-np.pi / 2, 0, 4, endpoint=False):
        pts.append((w_low - rb + rb * math.cos(a), y_bot + rb + rb * math.sin(a)))
    # side up to the belt, with a shoulder bulge
    for t in np.linspace(0, 1, 6, endpoint=False):
        y = y_bot + rb + t * (belt - y_bot - rb)
        w = w_low + (w_belt - w_low) * t + hw * 0.015 * math.sin(math.pi * t)
        pts.append((min(w, hw), y))
    # greenhouse (tumblehome)
    for t in np.linspace(0, 1, 6, endpoint=False):
        pts.append((w_belt + (w_top - w_belt) * t, belt + t * (y_top - rt - belt)))
    # top corner
    for a in np.linspace(0, np.pi / 2, 5, endpoint=False):
        pts.append((w_top - rt + rt * math.cos(a), y_top - rt + rt * math.sin(a)))
    # roof / hood with a slight crown
    for t in np.linspace(0, 1, 5, endpoint=False):
        z = (w_top - rt) * (1 - t)
        pts.append((z, y_top + 0.012 * t))
    pts.append((0.0, y_top + 0.012))
    return np.asarray(pts)


SECTION_SEGMENTS = {
    "bottom": (0, 3),
    "corner": (3, 7),
    "side": (7, 13),
    "glass": (13, 19),
    "top_corner": (19, 24),
    "top": (24, 30),
}


def build_body(p: Profile) -> tuple:
    s = p.spec
    xs = p.stations()
    top, bot, belt, hw = p.top(xs), p.bottom(xs), p.belt(xs), p.half_width(xs)
    cabin_t = np.clip((top - belt - 0.03) / 0.12, 0, 1)
    hw_top = hw * s.tumblehome
    rings = []
    for i, x in enumerate(xs):
        half = _section(bot[i], belt[i], top[i], hw[i], hw_top[i], cabin_t[i])
        # Full ring: right half (z >= 0) up, then the left half back down (centre points once each).
        left = half[-2:0:-1] * np.array([-1, 1])
        ring2 = np.concatenate([half, left])
        ring = np.stack([np.full(len(ring2), x - p.L / 2), ring2[:, 1], ring2[:, 0]], -1)
        rings.append(ring)
    rings = np.asarray(rings)
    mesh = S.ring_surface(rings, v_coords=xs / p.L)
    return mesh, xs


# ----------------------------------------------------------------------------------------------------------
# Building
# ----------------------------------------------------------------------------------------------------------
def _disk_grid(nu: int, nv: int, roundness: float) -> np.ndarray:
    """A (nv x nu x 2) grid over [-1, 1]^2 pulled towards a disk by `roundness` (0 square, 1 disk)."""
    s, t = np.meshgrid(np.linspace(-1, 1, nu), np.linspace(-1, 1, nv))
    ds = s * np.sqrt(1 - t**2 / 2)
    dt = t * np.sqrt(1 - s**2 / 2)
    return np.stack([s + (ds - s) * roundness, t + (dt - t) * roundness], -1)


def build_car(spec: CarSpec, rng: np.random.Generator) -> Rig:
    p = Profile(spec)
    L = spec.length
    body, xs = build_body(p)
    pieces: list[Piece] = []

    def add(group, name, mesh, slot, texturable=False):
        pieces.append(Piece(group=group, name=name, mesh=mesh, slot=slot, texturable=texturable))

    add("body", "body", body, "paint", texturable=True)

    def xw(frac):  # fraction of length from the rear -> subject x
        return frac * L - L / 2

    def slab_on(grid, direction, lift=0.004, depth=0.01, start=3.0):
        top, bottom = S.project_grid(body, grid, direction, lift=lift, depth=depth, start=start)
        return S.slab(top, bottom)

    glass: list = []
    # ---- side windows ---------------------------------------------------------------------------------
    xa = np.linspace(0, L, 600)
    top_a, belt_a = p.top(xa), p.belt(xa)
    rt = 0.075
    win_top = top_a - rt - 0.025
    win_bot = belt_a + 0.02
    opening = (win_top - win_bot) > 0.04
    pillar = 0.08 if spec.body not in ("jeep",) else 0.06
    if spec.open_top:
        opening &= False
    spans = []
    if opening.any():
        x_open = xa[opening]
        x0, x1 = x_open.min(), x_open.max()
        b = spec.b_pillar_x * L
        c = spec.c_pillar_x * L
        spans.append((max(b + pillar / 2, x0), x1))  # front door window, up to the A pillar
        if spec.body == "limo":
            mid = (c + b) / 2
            spans.append((mid + pillar / 2, b - pillar / 2))
            spans.append((c + 0.02, mid - pillar / 2))
        else:
            spans.append((max(c, x0), b - pillar / 2))
        if spec.quarter_window and c - pillar > x0 + 0.08:
            spans.append((x0 + 0.03, c - pillar))
    surrounds: list = []  # black rubber/trim round each window, a little larger and just under the glass

    def side_window(a, bnd, grow, lift):
        gx = np.linspace(a - grow, bnd + grow, 14)
        gx = gx[np.interp(gx, xa, win_top) - np.interp(gx, xa, win_bot) > 0.03 - 2 * grow]
        if len(gx) < 3:
            return []
        lo = np.interp(gx, xa, win_bot) - grow
        hi = np.interp(gx, xa, win_top) + grow
        rows = np.linspace(0, 1, 5)[:, None]
        gy = lo[None] + rows * (hi - lo)[None]
        out = []
        for side in (-1, 1):
            grid = np.stack(
                [np.broadcast_to(gx - L / 2, gy.shape), gy, np.full(gy.shape, side * spec.width)], -1
            )
            out.append(slab_on(grid, (0, 0, -side), start=0.5, lift=lift))
        return out

    for a, bnd in spans:
        if bnd - a < 0.12:
            continue
        glass += side_window(a, bnd, 0.0, 0.005)
        surrounds += side_window(a, bnd, 0.022, 0.0025)

    # ---- windshield and rear glass ----------------------------------------------------------------------
    def glass_panel(xb, xt, grow=0.0, lift=0.005, start=2.0):
        """Glass on the top surface between x positions xb (base) and xt (top edge), projected along the
        inward normal of that line in side view."""
        yb, yt = float(p.top(np.array([xb]))[0]), float(p.top(np.array([xt]))[0])
        dx, dy = xt - xb, yt - yb
        n = np.array([dy, -dx]) / math.hypot(dx, dy)  # inward (down / towards the cabin)
        if n[1] > 0:
            n = -n
        ext = grow / math.hypot(dx, dy)
        ts = np.linspace(0.06 - ext, 0.94 + ext, 8)
        gx = xb + ts * dx
        gy = yb + ts * dy
        rows = []
        for x, y in zip(gx, gy, strict=True):
            w = float(p.half_width(np.array([x]))[0])
            zmax = (w * spec.tumblehome - rt - 0.03) * (0.98 if spec.body != "jeep" else 1.0)
            zmax = max(zmax, 0.2) + grow
            rows.append(np.stack([np.full(9, x - L / 2), np.full(9, y), np.linspace(-zmax, zmax, 9)], -1))
        grid = np.asarray(rows)  # along x (rows) x across (cols)
        return slab_on(grid, (n[0], n[1], 0.0), start=start, lift=lift)

    cowl = spec.cowl_x * L
    roof_f = spec.roof_front_x * L
    if spec.open_top:
        glass.append(_windscreen_frame_glass(p, spec))
    else:
        glass.append(glass_panel(cowl + 0.05, roof_f - 0.03))
        surrounds.append(glass_panel(cowl + 0.05, roof_f - 0.03, grow=0.03, lift=0.0025))
    uprights = []
    if spec.bed_x > 0:
        # Cab rear window on the (near-vertical) back wall, looked at from the bed.
        wall_x = spec.bed_x * L + 0.03
        uprights.append(
            (
                wall_x - L / 2,
                spec.deck_h + 0.1,
                spec.height - 0.12,
                spec.width * spec.tumblehome / 2 - 0.12,
                0.35,
            )
        )
    elif not spec.open_top:
        if spec.rear_glass == "slope":
            glass.append(glass_panel(spec.deck_x * L + 0.05, spec.roof_rear_x * L - 0.03))
            surrounds.append(
                glass_panel(spec.deck_x * L + 0.05, spec.roof_rear_x * L - 0.03, grow=0.03, lift=0.0025)
            )
        else:
            y0 = float(p.belt(np.array([0.0]))[0]) + 0.05
            y1 = float(p.top(np.array([0.25]))[0]) - 0.1
            uprights.append((-L / 2, y0, y1, spec.width * spec.tumblehome / 2 - 0.1, 1.0))
    for x_face, y0, y1, half_w, behind in uprights:
        glass.append(_upright_glass(body, p, x_face, belt_h=y0, top_h=y1, half_w=half_w, from_behind=behind))
        surrounds.append(
            _upright_glass(
                body,
                p,
                x_face,
                belt_h=y0 - 0.03,
                top_h=y1 + 0.03,
                half_w=half_w + 0.03,
                from_behind=behind,
                lift=0.0025,
            )
        )
    if surrounds:
        add("body", "window_surrounds", S.concat(surrounds), "trim")
    add("body", "glass", S.concat(glass), "glass")

    # ---- lights, grille, bumpers, plates --------------------------------------------------------------
    front_x = L / 2 + 1.0
    hw_face = float(p.half_width(np.array([L - 0.04]))[0])
    lights, tails, grille, trim, plates = [], [], [], [], []
    nose = spec.nose_h
    bf = p.bumper_front
    face_h = nose - bf
    kind = spec.headlight
    lw, lh, round_ = {
        "slim": (0.34, 0.09, 0.3),
        "wide": (0.3, 0.13, 0.4),
        "round": (0.1, 0.1, 1.0),
        "square": (0.24, 0.16, 0.15),
    }[kind]
    lh = min(lh, 0.35 * face_h)
    ly = nose - 0.04 - lh
    for side in (-1, 1):
        zc = side * (hw_face - lw * 0.55 - 0.02)
        if kind == "round":
            zc = side * (hw_face - 0.2)
            lw = lh = min(0.1, 0.3 * face_h)
            ly = nose - 0.05 - lh
        g = _disk_grid(9, 7, round_)
        grid = np.stack([np.full(g.shape[:2], front_x), ly + g[..., 1] * lh, zc + g[..., 0] * lw], -1)
        lights.append(slab_on(grid, (-1, 0, 0), start=0.05, lift=0.006))
    # Grille between the lights.
    gw = {"wide": 0.42, "narrow": 0.28, "split": 0.2, "slot": 0.5, "mesh": 0.4}[spec.grille]
    gw = min(gw, hw_face - lw * 1.2 - 0.05)
    gh = min(0.16 if spec.grille != "slot" else 0.07, 0.4 * face_h)
    gy = ly + lh * 0.2 - gh * (0.6 if spec.grille != "slot" else 0.2)
    g = _disk_grid(11, 6, 0.15)
    grid = np.stack([np.full(g.shape[:2], front_x), gy + g[..., 1] * gh, g[..., 0] * gw], -1)
    grille.append(slab_on(grid, (-1, 0, 0), start=0.05, lift=0.005))
    # Lower intake in the bumper and a plate.
    iy = bf + 0.1
    g = _disk_grid(11, 4, 0.3)
    grid = np.stack([np.full(g.shape[:2], front_x), iy + g[..., 1] * 0.045, g[..., 0] * (hw_face * 0.62)], -1)
    trim.append(slab_on(grid, (-1, 0, 0), start=0.05, lift=0.004))
    g = _disk_grid(5, 3, 0.0)
    py = iy + 0.1
    # u runs towards -z so the text reads left to right seen from the front.
    grid = np.stack([np.full(g.shape[:2], front_x), py + g[..., 1] * 0.055, -g[..., 0] * 0.25], -1)
    plates.append(slab_on(grid, (-1, 0, 0), start=0.05, lift=0.01))
    # Rear: tail lights and plate.
    back_x = -L / 2 - 1.0
    hw_tail = float(p.half_width(np.array([0.04]))[0])
    tail_top = spec.tail_h
    tw_, th_ = (0.26, 0.11) if spec.rear_glass == "slope" else (0.09, 0.26)
    ty = (
        tail_top - 0.08 - th_
        if spec.rear_glass == "slope" or spec.bed_x > 0
        else max(p.bumper_rear + 0.18, (tail_top + p.bumper_rear) / 2 - 0.1)
    )
    if spec.bed_x > 0:
        tw_, th_ = 0.09, 0.22
        ty = tail_top - 0.06 - th_
    for side in (-1, 1):
        zc = side * (hw_tail - tw_ - 0.03)
        g = _disk_grid(7, 6, 0.2)
        grid = np.stack([np.full(g.shape[:2], back_x), ty + g[..., 1] * th_, zc + g[..., 0] * tw_], -1)
        tails.append(slab_on(grid, (1, 0, 0), start=0.05, lift=0.006))
    g = _disk_grid(5, 3, 0.0)
    pry = p.bumper_rear + 0.2
    grid = np.stack([np.full(g.shape[:2], back_x), pry + g[..., 1] * 0.055, g[..., 0] * 0.25], -1)
    plates.append(slab_on(grid, (1, 0, 0), start=0.05, lift=0.01))
    # Bumper strips (black on off-roaders and vans).
    if spec.bumper_black:
        for x0, d in ((front_x, -1), (back_x, 1)):
            yb = bf if d < 0 else p.bumper_rear
            g = _disk_grid(13, 4, 0.0)
            grid = np.stack(
                [np.full(g.shape[:2], x0), yb + 0.07 + g[..., 1] * 0.06, g[..., 0] * (spec.width / 2 - 0.05)],
                -1,
            )
            trim.append(slab_on(grid, (d, 0, 0), start=0.05, lift=0.012))
    add("body", "headlights", S.concat(lights), "headlight")
    add("body", "taillights", S.concat(tails), "taillight")
    add("body", "grille", S.concat(grille), "grille")
    add("body", "plates", S.concat(plates), "plate")

    # ---- mirrors, handles -----------------------------------------------------------------------------
    mirrors = []
    # Mirrors on every body (convertibles too).
    mx = cowl - 0.12 - L / 2
    my = float(p.belt(np.array([cowl - 0.12]))[0]) + 0.07
    mw = float(p.half_width(np.array([cowl - 0.12]))[0])
    for side in (-1, 1):
        mirrors.append(S.rounded_box((0.1, 0.11, 0.17), 0.035, center=(mx, my, side * (mw + 0.07))))
        mirrors.append(
            S.tube(
                np.array([[mx + 0.02, my - 0.03, side * (mw - 0.04)], [mx, my - 0.02, side * (mw + 0.02)]]),
                0.012,
                sides=6,
            )
        )
    add("body", "mirrors", S.concat(mirrors), "paint", texturable=True)
    handles = []
    hy = float(p.belt(np.array([spec.b_pillar_x * L]))[0]) - 0.07
    for hx in (
        spec.b_pillar_x * L - 0.28,
        spec.c_pillar_x * L + 0.12 if spec.body not in ("coupe", "sports") else None,
    ):
        if hx is None:
            continue
        g = _disk_grid(4, 3, 0.6)
        for side in (-1, 1):
            grid = np.stack(
                [
                    hx - L / 2 + g[..., 0] * 0.08,
                    hy + g[..., 1] * 0.018,
                    np.full(g.shape[:2], side * spec.width),
                ],
                -1,
            )
            handles.append(slab_on(grid, (0, 0, -side), start=0.5, lift=0.006))
    trim += handles

    # ---- body-type extras -------------------------------------------------------------------------------
    extras_dark = []
    if spec.bed_x > 0:
        # The open bed: a dark liner laid on the bed top, inset from the rails.
        bx0, bx1 = 0.06, spec.bed_x * L - 0.1
        g = _disk_grid(10, 6, 0.0)
        grid = np.stack(
            [
                (bx0 + bx1) / 2 - L / 2 + g[..., 0] * (bx1 - bx0) / 2,
                np.full(g.shape[:2], spec.height + 1),
                g[..., 1] * (spec.width / 2 - 0.11),
            ],
            -1,
        )
        extras_dark.append(slab_on(grid, (0, -1, 0), start=0.5, lift=0.003))
    if spec.open_top:
        extras_dark += _cockpit(p, spec, slab_on)
    if spec.roof_rails and not spec.open_top:
        rx0, rx1 = spec.roof_rear_x * L + 0.1, spec.roof_front_x * L - 0.08
        for side in (-1, 1):
            ptsr = []
            for x in np.linspace(rx0, rx1, 10):
                ytop = float(p.top(np.array([x]))[0])
                zz = float(p.half_width(np.array([x]))[0]) * spec.tumblehome - 0.1
                ptsr.append([x - L / 2, ytop + 0.05, side * zz])
            extras_dark.append(S.tube(np.asarray(ptsr), 0.015, sides=8))
            for x in (rx0 + 0.03, rx1 - 0.03):
                ytop = float(p.top(np.array([x]))[0])
                zz = float(p.half_width(np.array([x]))[0]) * spec.tumblehome - 0.1
                extras_dark.append(
                    S.rounded_box((0.08, 0.07, 0.04), 0.012, center=(x - L / 2, ytop + 0.025, side * zz))
                )
    if spec.rear_wing:
        wy = spec.deck_h + 0.22
        wx = 0.12 - L / 2
        extras_dark.append(S.rounded_box((0.28, 0.03, spec.width * 0.86), 0.012, center=(wx, wy, 0.0)))
        for side in (-1, 1):
            extras_dark.append(
                S.rounded_box((0.12, 0.22, 0.02), 0.006, center=(wx + 0.03, wy - 0.1, side * 0.45))
            )
    if extras_dark:
        add("body", "trim_extras", S.concat(extras_dark), "trim")
    add("body", "trim", S.concat(trim), "trim")
    if spec.roof_sign:
        sx = (spec.roof_rear_x + spec.roof_front_x) / 2 * L
        sy = float(p.top(np.array([sx]))[0])
        add("body", "roof_sign", _sign_box((0.24, 0.16, 0.6), (sx - L / 2, sy + 0.09, 0.0)), "sign")
    if spec.light_bar:
        sx = spec.roof_front_x * L - 0.2
        sy = float(p.top(np.array([sx]))[0])
        add(
            "body",
            "light_bar_red",
            S.rounded_box((0.22, 0.1, 0.55), 0.03, center=(sx - L / 2, sy + 0.06, -0.3)),
            "beacon_red",
        )
        add(
            "body",
            "light_bar_blue",
            S.rounded_box((0.22, 0.1, 0.55), 0.03, center=(sx - L / 2, sy + 0.06, 0.3)),
            "beacon_blue",
        )

    # ---- wheels -----------------------------------------------------------------------------------------
    R = spec.wheel_d / 2
    track = spec.width / 2 - spec.tyre_w / 2 - 0.02
    centres = [
        np.array([p.front_axle - L / 2, R, -track]),
        np.array([p.front_axle - L / 2, R, track]),
        np.array([p.rear_axle - L / 2, R, -track]),
        np.array([p.rear_axle - L / 2, R, track]),
    ]
    wheel = _wheel(spec)
    for name in ("wheel_fl", "wheel_fr", "wheel_rl", "wheel_rr"):
        for slot, mesh in wheel.items():
            add(name, f"{name}_{slot}", mesh, slot)
    if spec.spare_wheel:
        sp = _wheel(spec)
        # Mounted on the tailgate: axle along x.
        m = rotation(Y, -math.pi / 2)
        m[:3, 3] = [-L / 2 - spec.tyre_w / 2 - 0.02, float(p.top(np.array([0.1]))[0]) * 0.55 + 0.1, 0.0]
        for slot, mesh in sp.items():
            add("body", f"spare_{slot}", S.transformed(mesh, m), slot)

    materials, variants = _car_materials(spec, rng, p, xs)
    info = {"wheel_centres": np.asarray(centres)}
    return Rig(pieces=pieces, materials=materials, paint_variants=variants, info=info)


def _sign_box(extents, centre):
    """A box whose front and back faces carry the whole sign texture, readable from both ends."""
    m = S.box(extents, center=centre)
    v, n = np.asarray(m.vertices), np.asarray(m.vertex_normals)
    uv = np.full((len(v), 2), (0.02, 0.5))
    for sgn in (-1, 1):
        sel = n[:, 0] * sgn > 0.9
        uv[sel, 0] = 0.5 - sgn * (v[sel, 2] - centre[2]) / extents[2]
        uv[sel, 1] = (v[sel, 1] - (centre[1] - extents[1] / 2)) / extents[1]
    return S.make_mesh(v, np.asarray(m.faces), uv, n)


def _upright_glass(
    body,
    p: Profile,
    x_face: float,
    *,
    belt_h: float,
    top_h: float,
    half_w: float,
    from_behind: float,
    lift: float = 0.005,
):
    """Glass on a near-vertical rear face (hatch, van, pickup cab), projected along +x."""
    g = _disk_grid(9, 7, 0.12)
    yc, hh = (belt_h + top_h) / 2, (top_h - belt_h) / 2
    grid = np.stack([np.full(g.shape[:2], x_face), yc + g[..., 1] * hh, g[..., 0] * half_w], -1)
    top, bottom = S.project_grid(body, grid, (1, 0, 0), lift=lift, depth=0.01, start=from_behind)
    return S.slab(top, bottom)


def _windscreen_frame_glass(p: Profile, spec: CarSpec):
    """A convertible's windscreen: a raked glass panel standing on the cowl."""
    L = spec.length
    cowl = spec.cowl_x * L
    y0 = spec.cowl_h
    rake = math.radians(62)
    h = 0.36
    w = spec.width / 2 - 0.12
    u, v = np.meshgrid(np.linspace(-1, 1, 9), np.linspace(0, 1, 4))
    x = cowl - L / 2 - v * h * math.cos(rake)
    y = y0 - 0.02 + v * h * math.sin(rake)
    z = u * w * (1 - 0.1 * v)
    top = np.stack([x, y, z], -1)
    n = np.array([math.sin(rake), math.cos(rake), 0.0])
    return S.slab(top + n * 0.004, top - n * 0.004)


def _cockpit(p: Profile, spec: CarSpec, slab_on):
    """Open cockpit of a convertible: dark interior tub, two seats and a steering wheel."""
    L = spec.length
    out = []
    x0, x1 = spec.deck_x * L + 0.35, spec.cowl_x * L - 0.05
    g = _disk_grid(10, 6, 0.35)
    grid = np.stack(
        [
            (x0 + x1) / 2 - L / 2 + g[..., 0] * (x1 - x0) / 2,
            np.full(g.shape[:2], spec.height + 1),
            g[..., 1] * (spec.width / 2 - 0.13),
        ],
        -1,
    )
    out.append(slab_on(grid, (0, -1, 0), start=0.5, lift=0.004))
    seat_x = (x0 + x1) / 2 - 0.15 - L / 2
    y = spec.belt_h
    for side in (-1, 1):
        out.append(S.rounded_box((0.12, 0.42, 0.46), 0.05, center=(seat_x - 0.12, y + 0.1, side * 0.36)))
    wx = spec.cowl_x * L - 0.35 - L / 2
    wheel = S.revolve(np.array([[0.17, -0.015], [0.19, -0.015], [0.19, 0.015], [0.17, 0.015]]), segments=24)
    m = rotation(Y, math.pi / 2)
    m = translation((wx, y + 0.12, -0.36)) @ rotation(Z, -0.5) @ m
    out.append(S.transformed(wheel, m))
    return out


def _wheel(spec: CarSpec) -> dict:
    """Wheel meshes in the wheel frame (axle = z, the rim face towards +z), by material slot."""
    R = spec.wheel_d / 2
    w = spec.tyre_w
    r_rim = R * spec.rim_frac
    out = {}
    # Tyre: a rounded-rectangle section from the rim to the tread; v = 0.5 on the tread.
    k = 12
    v = np.arange(k) / k
    a = 2 * np.pi * v
    c, s = -np.cos(a), np.sin(a)
    ex = 4.0
    dr = np.sign(c) * np.abs(c) ** (2 / ex)
    dz = np.sign(s) * np.abs(s) ** (2 / ex)
    rc = (R + r_rim) / 2 - 0.005
    hr = (R - r_rim) / 2 + 0.005
    section = np.stack([dr * hr, dz * w / 2], -1)
    if spec.tread == "knobby":
        blocks = int(round(2 * np.pi * R / 0.06))
        radii = rc + np.tile([1.0, 1.0, 0.0], blocks) * 0.01
    else:
        radii = np.full(64, rc)
    out["tyre"] = S.torus_ring(section, radii, np.zeros(len(radii)))
    # Rim: barrel + face.
    face_z = w * 0.32
    barrel = np.array(
        [
            [r_rim - 0.02, -w * 0.42],
            [r_rim + 0.006, -w * 0.45],
            [r_rim + 0.006, face_z + 0.012],
            [r_rim - 0.025, face_z + 0.006],
            [r_rim - 0.03, -w * 0.3],
        ]
    )
    parts = [S.revolve(barrel, segments=48)]
    hub = np.array(
        [
            [0.005, face_z - 0.03],
            [0.07, face_z - 0.02],
            [0.075, face_z + 0.01],
            [0.03, face_z + 0.03],
            [0.005, face_z + 0.032],
        ]
    )
    parts.append(S.revolve(hub, segments=24, closed_profile=False))
    if spec.rim_style == "steel":
        disc = np.array(
            [
                [0.02, face_z - 0.01],
                [r_rim - 0.01, face_z - 0.01],
                [r_rim - 0.01, face_z + 0.0],
                [r_rim * 0.55, face_z + 0.025],
                [0.02, face_z + 0.028],
            ]
        )
        parts.append(S.revolve(disc, segments=36, closed_profile=False))
    else:
        n = {"spoke5": 5, "spoke10": 10, "turbine": 14}[spec.rim_style]
        th = 2 * np.pi * np.arange(n) / n
        width = {5: 0.035, 10: 0.017, 14: 0.013}[n]
        twist = 0.25 if spec.rim_style == "turbine" else 0.0
        a0 = np.stack([0.05 * np.cos(th), 0.05 * np.sin(th), np.full(n, face_z + 0.01)], -1)
        a1 = np.stack(
            [(r_rim - 0.01) * np.cos(th + twist), (r_rim - 0.01) * np.sin(th + twist), np.full(n, face_z)], -1
        )
        parts.append(S.prisms(a0, a1, width, sides=4))
    out["rim"] = S.concat(parts)
    # Dark wheel interior + brake disc behind the spokes.
    inner = np.array(
        [[0.02, -w * 0.3], [r_rim - 0.02, -w * 0.3], [r_rim - 0.02, face_z - 0.03], [0.02, face_z - 0.03]]
    )
    out["wheel_inner"] = S.revolve(inner, segments=32)
    return out


# ----------------------------------------------------------------------------------------------------------
# Materials and textures
# ----------------------------------------------------------------------------------------------------------
def _body_texture(spec: CarSpec, p: Profile, xs: np.ndarray) -> np.ndarray:
    """A multiplicative body texture (white = paint): door seams, handles' recesses, dark underbody and
    wheel-arch liners, lower cladding, and liveries. u runs round the section, v along the car (0 = rear)."""
    Hh, Ww = 512, 256  # rows = v (along x), cols = u (round the ring)
    img = np.ones((Hh, Ww, 3), dtype=np.float64)
    n_ring = 58  # ring points in build_body: 30 on the right half, 28 mirrored on the left

    def col_range(seg_from, seg_to):
        a = SECTION_SEGMENTS[seg_from][0]
        b = SECTION_SEGMENTS[seg_to][1]
        r0, r1 = int(a / n_ring * Ww), int(b / n_ring * Ww)
        return [(r0, r1), (Ww - r1, Ww - r0)]

    def row(xf):
        # The renderer (like OpenGL / trimesh) puts v = 0 at the image's last row.
        return int((1 - np.clip(xf, 0, 1)) * (Hh - 1))

    L = spec.length
    # Underbody and the insides of the arches: dark (not on the end faces, where the bottom of the
    # section turns up into the bumper).
    front_end = max(spec.face_round, spec.nose_round, 0.05) / L
    rear_end = max(spec.face_round, spec.tail_round, 0.05) / L
    for c0, c1 in col_range("bottom", "bottom"):
        img[row(1 - front_end) : row(rear_end), max(c0 - 1, 0) : c1 + 2] = 0.12
    # A baked "studio" reflection (the renderer has no environment reflections, and a horizon line across the
    # flanks is much of what makes paint read as car paint): the sides below a horizon line reflect the dark
    # ground, above it the bright sky.
    a, b = SECTION_SEGMENTS["corner"][0], SECTION_SEGMENTS["side"][1]
    j = np.arange(Ww) / Ww * n_ring
    jr = np.minimum(j, n_ring - j)  # position round the section, mirrored for the left side
    horizon = a + 0.55 * (b - a)
    shade = np.ones(Ww)
    low = (jr >= a) & (jr < horizon)
    shade[low] = 0.62 + 0.2 * (horizon - jr[low]) / (horizon - a)
    edge = (jr >= horizon) & (jr < horizon + 0.6)
    shade[edge] = 0.9
    img *= shade[None, :, None]
    # Lower cladding.
    if spec.cladding:
        for c0, c1 in col_range("corner", "corner"):
            img[:, c0 : c1 + 3] = 0.15
    # Door seams on the side: vertical dark lines.
    doors = [
        spec.b_pillar_x * L + 0.02,
        (spec.cowl_x * L + 0.05 if spec.open_top else spec.cowl_x * L - 0.04),
    ]
    if spec.body not in ("coupe", "sports", "convertible"):
        doors.append(spec.c_pillar_x * L + 0.02)
    for c0, c1 in col_range("side", "side"):
        for d in doors:
            r = row(d / L)
            img[r : r + 2, c0:c1] *= 0.35
        # shut line along the bottom of the doors
        if spec.body != "race":
            pass
    # Hood and boot shut lines across the top.
    for c0, c1 in col_range("top_corner", "top"):
        for d in (
            (spec.cowl_x * L - 0.06, spec.deck_x * L - 0.05) if spec.bed_x == 0 else (spec.cowl_x * L - 0.06,)
        ):
            r = row(d / L)
            img[r : r + 2, c0:c1] *= 0.45
    # Liveries.
    if spec.livery == "race":
        # Twin stripes over the top, nose to tail.
        a, b = SECTION_SEGMENTS["top"]
        c_mid0 = int((b - 1.2) / n_ring * Ww)
        img[:, c_mid0 - 10 : c_mid0 - 4] = (0.95, 0.95, 0.95)
        img[:, Ww - c_mid0 + 4 : Ww - c_mid0 + 10] = (0.95, 0.95, 0.95)
        img[:, c_mid0 + 1 : Ww - c_mid0 - 1] = (0.95, 0.95, 0.95)
    if spec.livery == "checker":
        for _, c1 in col_range("side", "side"):
            band = slice(c1 - 5, c1 - 1)
            rows = np.arange(row(0.8), row(0.25))
            checks = (rows // 6) % 2 == 0
            img[rows[checks], band] = 0.05
    if spec.livery == "ambulance":
        for c0, c1 in col_range("side", "side"):
            mid = (c0 + c1) // 2
            img[:, mid - 3 : mid + 3] = (0.85, 0.05, 0.05)
        for c0, c1 in col_range("glass", "glass"):
            mid = (c0 + c1) // 2
            img[row(0.66) : row(0.04), mid - 2 : mid + 2] = (0.85, 0.05, 0.05)
    return np.clip(img * 255, 0, 255).astype(np.uint8)


def _text_texture(text: str, fg, bg, size=(256, 64)) -> np.ndarray:
    im = Image.new("RGB", size, tuple(int(c * 255) for c in bg))
    d = ImageDraw.Draw(im)
    font = ImageFont.load_default(size=int(size[1] * 0.7))
    bbox = d.textbbox((0, 0), text, font=font)
    d.text(
        ((size[0] - (bbox[2] - bbox[0])) / 2 - bbox[0], (size[1] - (bbox[3] - bbox[1])) / 2 - bbox[1]),
        text,
        fill=tuple(int(c * 255) for c in fg),
        font=font,
    )
    return np.asarray(im)


def _glass_texture() -> np.ndarray:
    """Tinted glass that fakes the sky's reflection (the renderer has no environment reflections): darker
    low in each pane, lighter and bluer towards its top edge, with a soft diagonal sheen."""

    def make():
        h, w = 64, 64
        v = np.linspace(1.0, 0.0, h)[:, None]  # image row 0 is the top of the pane (v = 1)
        u = np.linspace(0.0, 1.0, w)[None, :]
        sky = np.array([0.32, 0.38, 0.46])
        dark = np.array([0.04, 0.05, 0.06])
        t = np.clip(v**1.6, 0, 1)[..., None]
        sheen = 0.12 * np.exp(-(((u - 0.6 * v - 0.15) / 0.08) ** 2))[..., None]
        img = dark + (sky - dark) * t * 0.75 + sheen
        return np.clip(img * 255, 0, 255).astype(np.uint8)

    return cached_texture("glass/sky-v1", make)


def _grille_texture(kind: str) -> tuple[np.ndarray, np.ndarray]:
    def make():
        h, w = 64, 256
        yy, xx = np.mgrid[0:h, 0:w]
        if kind == "mesh":
            holes = ((xx // 6 + yy // 6) % 2 == 0) & (xx % 6 > 1) & (yy % 6 > 1)
        elif kind == "slot":
            holes = (yy % 16 > 5) & (xx % 40 > 3)
        else:
            holes = yy % 10 > 4
        base = np.where(holes[..., None], 0.03, 0.25) * np.ones(3)
        height = np.where(holes, 0.0, 1.0)
        return np.concatenate(
            [np.clip(base * 255, 0, 255).astype(np.uint8), normal_map_from_height(height, 2.0)], -1
        )

    both = cached_texture(f"grille/{kind}", make)
    return (
        cached_texture(f"grille/{kind}/base", lambda: np.ascontiguousarray(both[..., :3])),
        cached_texture(f"grille/{kind}/normal", lambda: np.ascontiguousarray(both[..., 3:])),
    )


def _car_materials(spec: CarSpec, rng: np.random.Generator, p: Profile, xs: np.ndarray):
    tex_key = f"carbody/{spec!r}"
    body_tex = cached_texture(tex_key, lambda: _body_texture(spec, p, xs))
    rim_rgb = [(0.75, 0.75, 0.77), (0.55, 0.56, 0.58), (0.12, 0.12, 0.13)][int(rng.integers(3))]
    if spec.rim_style == "steel":
        rim_rgb = (0.7, 0.7, 0.72) if rng.uniform() < 0.6 else (0.08, 0.08, 0.08)
    base_tex, normal_tex = tyre_textures(spec.tread, None, 64)
    gb, gn = _grille_texture(spec.grille)
    plate_tex = cached_texture(
        f"plate/{spec.body}/{spec.length:.2f}",
        lambda: _text_texture("DR 5YN7", (0.05, 0.05, 0.1), (0.95, 0.95, 0.92)),
    )
    materials = {
        "glass": material(
            "glass",
            (1.0, 1.0, 1.0),
            roughness=0.08,
            base_color_texture=_glass_texture(),
            texture_key="glass/sky-v1",
        ),
        "headlight": material(
            "headlight", (0.86, 0.88, 0.9), metallic=0.3, roughness=0.12, emissive=(0.25, 0.25, 0.24)
        ),
        "taillight": material("taillight", (0.75, 0.03, 0.03), roughness=0.2, emissive=(0.35, 0.0, 0.0)),
        "grille": material(
            "grille",
            (1.0, 1.0, 1.0),
            roughness=0.45,
            base_color_texture=gb,
            normal_texture=gn,
            texture_key=f"grille/{spec.grille}",
        ),
        "plate": material(
            "plate",
            (1.0, 1.0, 1.0),
            roughness=0.4,
            base_color_texture=plate_tex,
            texture_key=f"plate/{spec.body}/{spec.length:.2f}",
        ),
        "trim": material("trim", (0.04, 0.04, 0.045), roughness=0.55),
        "tyre": material(
            "car-tyre",
            (1.0, 1.0, 1.0),
            roughness=0.85,
            base_color_texture=base_tex,
            normal_texture=normal_tex,
            texture_key=f"{spec.tread}/64",
        ),
        "rim": material("rim", rim_rgb, metallic=0.55, roughness=0.3),
        "wheel_inner": material("wheel-inner", (0.06, 0.06, 0.06), metallic=0.3, roughness=0.6),
        "sign": material(
            "sign",
            (1.0, 1.0, 1.0),
            roughness=0.4,
            emissive=(0.2, 0.18, 0.05),
            base_color_texture=cached_texture(
                "sign/taxi", lambda: _text_texture("TAXI", (0.05, 0.05, 0.05), (0.98, 0.85, 0.2))
            ),
            texture_key="sign/taxi",
        ),
        "beacon_red": material("beacon-red", (0.9, 0.05, 0.05), roughness=0.2, emissive=(0.6, 0.0, 0.0)),
        "beacon_blue": material("beacon-blue", (0.1, 0.2, 0.95), roughness=0.2, emissive=(0.0, 0.1, 0.6)),
    }
    variants = []
    order = rng.permutation(len(spec.colours))
    for k in range(6):
        rgb = jitter_rgb(rng, spec.colours[order[k % len(order)]], 0.04)
        metallic = float(rng.choice([0.0, 0.25, 0.45]))
        rough = float(rng.uniform(0.18, 0.35))
        variants.append(
            {
                "paint": material(
                    "car-paint",
                    rgb,
                    metallic=metallic,
                    roughness=rough,
                    base_color_texture=body_tex,
                    texture_key=tex_key,
                )
            }
        )
    materials["paint"] = variants[0]["paint"]
    return materials, variants
