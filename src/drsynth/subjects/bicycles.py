"""Procedural bicycles: parametric frames (diamond, step-through, mixte, cruiser, BMX, folding, tandem),
wheels with tyres, rims, hubs and spokes, drivetrain (chainring, chain, cassette, cranks, pedals), saddle,
handlebars (drop, flat, riser, swept, BMX, bullhorn) and accessories (fenders, rack, basket, kickstand,
bottle, battery, lights).

Frame geometry follows how bikes are specified: wheelbase, chainstay length, bottom-bracket drop, head and
seat angles, head-tube length, top-tube slope, fork offset. Subject frame: +X forward, +Y up, ground at
y = 0, the drive side (chain) on +Z. Pose: {"steer", "front_wheel", "rear_wheel", "crank" (radians),
"paint" (variant index)}; the default pose is straight ahead with the cranks level.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from drsynth.subjects import shapes as S
from drsynth.subjects.base import Pose
from drsynth.subjects.vehicles import (
    Piece,
    Rig,
    VehicleSubject,
    bezier,
    blend_specs,
    check_breeds,
    jitter_rgb,
    material,
    rotation,
    spline,
    stable_seed,
    translation,
    tyre_textures,
)

Z = np.array([0.0, 0.0, 1.0])


@dataclass(frozen=True)
class BikeSpec:
    """Parameters of one bicycle (metres, degrees). See PRESETS for typical values."""

    frame: str = "diamond"  # diamond | step_through | mixte | cruiser | bmx | folding | tandem
    wheel_d: float = 0.68  # outer tyre diameter
    tyre_w: float = 0.028
    wheelbase: float = 0.99
    chainstay: float = 0.41
    bb_drop: float = 0.07
    head_angle: float = 73.0
    seat_angle: float = 73.5
    head_tube: float = 0.15
    top_slope: float = 4.0  # top tube slope (down towards the seat), degrees
    fork_offset: float = 0.045
    tube_r: float = 0.016
    saddle_h: float = 0.72  # saddle top above the bottom bracket, along the seat tube
    stem_len: float = 0.10
    stem_rise: float = 10.0
    bar: str = "drop"  # drop | flat | riser | swept | bmx | bullhorn
    bar_width: float = 0.42
    crank_len: float = 0.172
    chainring_r: float = 0.10
    suspension: bool = False
    spokes: int = 32
    rim_depth: float = 0.025
    tread: str = "slick"  # slick | knobby
    gumwall: bool = False
    gears: bool = True
    disc_brakes: bool = False
    rim_brakes: bool = True
    fenders: bool = False
    rack: bool = False
    chain_guard: bool = False
    kickstand: bool = False
    basket: bool = False
    bottle: bool = False
    battery: bool = False
    lights: bool = False
    saddle: str = "race"  # race | comfort | cruiser | bmx
    components: str = "silver"  # silver | black
    fork_painted: bool = True
    colours: tuple = ((0.7, 0.05, 0.05),)  # paint families this model comes in


_ROAD_COLOURS = (
    (0.72, 0.04, 0.04),
    (0.03, 0.03, 0.035),
    (0.85, 0.85, 0.85),
    (0.05, 0.18, 0.6),
    (0.9, 0.75, 0.05),
    (0.0, 0.45, 0.55),
)
_MTB_COLOURS = (
    (0.05, 0.05, 0.05),
    (0.85, 0.35, 0.02),
    (0.1, 0.35, 0.12),
    (0.6, 0.02, 0.05),
    (0.2, 0.3, 0.65),
    (0.5, 0.5, 0.52),
)
_CITY_COLOURS = (
    (0.03, 0.03, 0.03),
    (0.55, 0.8, 0.7),
    (0.85, 0.8, 0.65),
    (0.06, 0.1, 0.3),
    (0.4, 0.05, 0.08),
    (0.75, 0.75, 0.75),
)
_FUN_COLOURS = (
    (0.85, 0.3, 0.55),
    (0.1, 0.5, 0.85),
    (0.9, 0.1, 0.1),
    (0.3, 0.75, 0.2),
    (0.5, 0.2, 0.7),
    (0.95, 0.6, 0.05),
)

PRESETS: dict[str, BikeSpec] = {
    "road": BikeSpec(colours=_ROAD_COLOURS, bottle=True),
    "mountain": BikeSpec(
        wheel_d=0.74,
        tyre_w=0.058,
        wheelbase=1.15,
        chainstay=0.435,
        bb_drop=0.055,
        head_angle=67.0,
        seat_angle=74.0,
        head_tube=0.11,
        top_slope=9.0,
        fork_offset=0.044,
        tube_r=0.02,
        saddle_h=0.7,
        stem_len=0.06,
        stem_rise=6.0,
        bar="riser",
        bar_width=0.74,
        chainring_r=0.085,
        suspension=True,
        tread="knobby",
        disc_brakes=True,
        rim_brakes=False,
        rim_depth=0.022,
        components="black",
        fork_painted=False,
        colours=_MTB_COLOURS,
        spokes=32,
    ),
    "hardtail_26": BikeSpec(
        wheel_d=0.67,
        tyre_w=0.054,
        wheelbase=1.07,
        chainstay=0.425,
        bb_drop=0.045,
        head_angle=69.0,
        seat_angle=73.5,
        head_tube=0.12,
        top_slope=7.0,
        fork_offset=0.04,
        tube_r=0.019,
        saddle_h=0.68,
        stem_len=0.09,
        stem_rise=5.0,
        bar="flat",
        bar_width=0.64,
        chainring_r=0.09,
        suspension=True,
        tread="knobby",
        disc_brakes=False,
        rim_brakes=True,
        components="silver",
        fork_painted=False,
        colours=_MTB_COLOURS + _FUN_COLOURS[:2],
        spokes=32,
    ),
    "gravel": BikeSpec(
        wheel_d=0.70,
        tyre_w=0.04,
        wheelbase=1.03,
        chainstay=0.425,
        head_angle=71.0,
        top_slope=7.0,
        tube_r=0.017,
        tread="knobby",
        disc_brakes=True,
        rim_brakes=False,
        components="black",
        colours=((0.35, 0.4, 0.3), (0.6, 0.45, 0.3), (0.1, 0.1, 0.1), (0.2, 0.35, 0.5), (0.7, 0.3, 0.1)),
        bottle=True,
    ),
    "touring": BikeSpec(
        tyre_w=0.035,
        wheelbase=1.05,
        chainstay=0.45,
        head_angle=71.5,
        top_slope=0.0,
        tube_r=0.015,
        fenders=True,
        rack=True,
        bottle=True,
        spokes=36,
        colours=((0.1, 0.25, 0.15), (0.5, 0.1, 0.08), (0.15, 0.2, 0.4), (0.6, 0.6, 0.6)),
    ),
    "hybrid": BikeSpec(
        wheel_d=0.70,
        tyre_w=0.036,
        wheelbase=1.06,
        chainstay=0.44,
        head_angle=71.0,
        top_slope=5.0,
        tube_r=0.019,
        bar="flat",
        bar_width=0.6,
        stem_rise=12.0,
        saddle="comfort",
        disc_brakes=True,
        rim_brakes=False,
        kickstand=True,
        colours=_CITY_COLOURS + _ROAD_COLOURS[:3],
    ),
    "fixie": BikeSpec(
        tyre_w=0.025,
        wheelbase=0.97,
        chainstay=0.39,
        head_angle=74.0,
        seat_angle=74.5,
        top_slope=0.0,
        tube_r=0.015,
        bar="bullhorn",
        bar_width=0.40,
        rim_depth=0.045,
        gears=False,
        rim_brakes=False,
        components="black",
        chainring_r=0.095,
        colours=_FUN_COLOURS + ((0.9, 0.9, 0.9),),
        spokes=28,
    ),
    "city": BikeSpec(
        frame="step_through",
        wheel_d=0.70,
        tyre_w=0.042,
        wheelbase=1.1,
        chainstay=0.46,
        head_angle=68.0,
        seat_angle=70.0,
        head_tube=0.2,
        top_slope=0.0,
        tube_r=0.019,
        saddle_h=0.66,
        stem_len=0.07,
        stem_rise=35.0,
        bar="swept",
        bar_width=0.56,
        saddle="comfort",
        fenders=True,
        rack=True,
        chain_guard=True,
        kickstand=True,
        lights=True,
        gears=False,
        spokes=36,
        colours=_CITY_COLOURS,
    ),
    "dutch": BikeSpec(
        frame="mixte",
        wheel_d=0.71,
        tyre_w=0.045,
        wheelbase=1.15,
        chainstay=0.47,
        head_angle=66.0,
        seat_angle=68.0,
        head_tube=0.24,
        top_slope=-2.0,
        tube_r=0.018,
        saddle_h=0.66,
        stem_len=0.06,
        stem_rise=45.0,
        bar="swept",
        bar_width=0.58,
        saddle="comfort",
        fenders=True,
        rack=True,
        chain_guard=True,
        kickstand=True,
        lights=True,
        gears=False,
        components="black",
        spokes=36,
        basket=True,
        colours=(
            (0.02, 0.02, 0.02),
            (0.55, 0.8, 0.7),
            (0.85, 0.8, 0.65),
            (0.08, 0.12, 0.35),
            (0.45, 0.06, 0.1),
        ),
    ),
    "cruiser": BikeSpec(
        frame="cruiser",
        wheel_d=0.67,
        tyre_w=0.062,
        wheelbase=1.18,
        chainstay=0.48,
        bb_drop=0.09,
        head_angle=68.0,
        seat_angle=68.0,
        head_tube=0.2,
        top_slope=0.0,
        tube_r=0.021,
        saddle_h=0.62,
        stem_len=0.05,
        stem_rise=40.0,
        bar="swept",
        bar_width=0.68,
        saddle="cruiser",
        gumwall=True,
        fenders=True,
        gears=False,
        rim_brakes=False,
        kickstand=True,
        chain_guard=True,
        spokes=36,
        colours=((0.55, 0.85, 0.8), (0.8, 0.1, 0.12), (0.95, 0.9, 0.75), (0.1, 0.1, 0.1), (0.95, 0.55, 0.6)),
    ),
    "bmx": BikeSpec(
        frame="bmx",
        wheel_d=0.51,
        tyre_w=0.055,
        wheelbase=0.98,
        chainstay=0.34,
        bb_drop=-0.01,
        head_angle=75.0,
        seat_angle=71.0,
        head_tube=0.13,
        top_slope=2.0,
        fork_offset=0.028,
        tube_r=0.02,
        saddle_h=0.38,
        stem_len=0.05,
        stem_rise=20.0,
        bar="bmx",
        bar_width=0.7,
        crank_len=0.175,
        chainring_r=0.085,
        gears=False,
        rim_brakes=False,
        saddle="bmx",
        spokes=36,
        tread="knobby",
        components="black",
        colours=_FUN_COLOURS + ((0.8, 0.8, 0.82),),
    ),
    "kids": BikeSpec(
        wheel_d=0.42,
        tyre_w=0.05,
        wheelbase=0.72,
        chainstay=0.3,
        bb_drop=0.0,
        head_angle=70.0,
        seat_angle=70.0,
        head_tube=0.1,
        top_slope=14.0,
        fork_offset=0.03,
        tube_r=0.017,
        saddle_h=0.42,
        stem_len=0.04,
        stem_rise=25.0,
        bar="riser",
        bar_width=0.46,
        crank_len=0.11,
        chainring_r=0.07,
        gears=False,
        chain_guard=True,
        kickstand=True,
        saddle="comfort",
        tread="knobby",
        spokes=20,
        colours=_FUN_COLOURS,
    ),
    "folding": BikeSpec(
        frame="folding",
        wheel_d=0.45,
        tyre_w=0.038,
        wheelbase=1.02,
        chainstay=0.36,
        bb_drop=-0.02,
        head_angle=72.0,
        seat_angle=70.0,
        head_tube=0.12,
        top_slope=0.0,
        tube_r=0.024,
        saddle_h=0.8,
        stem_len=0.05,
        stem_rise=78.0,
        bar="flat",
        bar_width=0.54,
        chainring_r=0.09,
        fenders=True,
        kickstand=True,
        saddle="comfort",
        spokes=28,
        colours=((0.9, 0.9, 0.9), (0.05, 0.05, 0.05), (0.75, 0.05, 0.05), (0.1, 0.35, 0.6), (0.95, 0.7, 0.1)),
    ),
    "ebike": BikeSpec(
        frame="step_through",
        wheel_d=0.70,
        tyre_w=0.05,
        wheelbase=1.13,
        chainstay=0.47,
        head_angle=69.0,
        seat_angle=71.0,
        head_tube=0.18,
        top_slope=0.0,
        tube_r=0.024,
        saddle_h=0.68,
        stem_len=0.08,
        stem_rise=25.0,
        bar="riser",
        bar_width=0.62,
        saddle="comfort",
        fenders=True,
        rack=True,
        kickstand=True,
        lights=True,
        battery=True,
        disc_brakes=True,
        rim_brakes=False,
        components="black",
        colours=_CITY_COLOURS,
    ),
    "fat": BikeSpec(
        wheel_d=0.76,
        tyre_w=0.10,
        wheelbase=1.17,
        chainstay=0.45,
        bb_drop=0.05,
        head_angle=69.0,
        seat_angle=73.0,
        head_tube=0.13,
        top_slope=8.0,
        fork_offset=0.047,
        tube_r=0.022,
        saddle_h=0.7,
        stem_len=0.07,
        stem_rise=6.0,
        bar="riser",
        bar_width=0.72,
        chainring_r=0.08,
        tread="knobby",
        disc_brakes=True,
        rim_brakes=False,
        components="black",
        fork_painted=True,
        rim_depth=0.02,
        colours=_MTB_COLOURS,
    ),
    "tandem": BikeSpec(
        frame="tandem",
        wheel_d=0.69,
        tyre_w=0.035,
        wheelbase=1.75,
        chainstay=0.43,
        head_angle=71.0,
        seat_angle=73.0,
        head_tube=0.17,
        top_slope=0.0,
        tube_r=0.019,
        bar="flat",
        bar_width=0.56,
        stem_rise=15.0,
        saddle="comfort",
        spokes=40,
        colours=_ROAD_COLOURS + _CITY_COLOURS[1:3],
        kickstand=True,
    ),
    "vintage_roadster": BikeSpec(
        wheel_d=0.71,
        tyre_w=0.038,
        wheelbase=1.12,
        chainstay=0.46,
        head_angle=67.0,
        seat_angle=68.0,
        head_tube=0.24,
        top_slope=-1.0,
        tube_r=0.015,
        saddle_h=0.7,
        stem_len=0.05,
        stem_rise=50.0,
        bar="swept",
        bar_width=0.58,
        saddle="cruiser",
        fenders=True,
        chain_guard=True,
        gears=False,
        kickstand=True,
        lights=True,
        spokes=36,
        gumwall=True,
        colours=((0.02, 0.02, 0.02), (0.1, 0.2, 0.1), (0.35, 0.05, 0.05), (0.1, 0.12, 0.3)),
    ),
}

# Blends only mix presets that share a frame family, so a blend is still a coherent bicycle.
FAMILIES = {
    "sport": ["road", "gravel", "touring", "fixie", "hybrid"],
    "mtb": ["mountain", "hardtail_26", "fat"],
    "upright": ["city", "dutch", "ebike", "vintage_roadster", "cruiser"],
    "small": ["bmx", "kids", "folding"],
    "tandem": ["tandem"],
}


def preset_names() -> list[str]:
    return list(PRESETS)


def make_subjects(
    class_name: str, *, breeds: list[str] | None, blends: int, seed: int
) -> list[BicycleSubject]:
    """One subject per preset, plus `blends` bicycles interpolated between presets of the same family."""
    names = check_breeds("bicycle", breeds, PRESETS)
    out = [BicycleSubject(class_name=class_name, breed=n, spec=PRESETS[n], seed=seed) for n in names]
    rng = np.random.default_rng(np.random.SeedSequence([seed, stable_seed("bicycle-blends")]))
    for k in range(blends):
        a = names[int(rng.integers(len(names)))]
        family = next((f for f in FAMILIES.values() if a in f), [a])
        choices = [n for n in family if n in names] or [a]
        b = choices[int(rng.integers(len(choices)))]
        t = float(rng.uniform(0.0, 1.0))
        spec = blend_specs(PRESETS[a], PRESETS[b], t, rng)
        out.append(
            BicycleSubject(
                class_name=class_name,
                breed=f"blend{k:03d}-{a}-{b}",
                spec=spec,
                seed=seed,
                blend_of=(a, b, round(t, 3)),
            )
        )
    return out


class BicycleSubject(VehicleSubject):
    def __init__(self, *, class_name: str, breed: str, spec: BikeSpec, seed: int, blend_of=None):
        super().__init__(
            class_name=class_name, breed=breed, spec=spec, generator="bicycle", blend_of=blend_of
        )
        self._seed = seed

    def default_pose(self) -> Pose:
        return {"steer": 0.0, "front_wheel": 0.0, "rear_wheel": 0.0, "crank": 0.0, "paint": 0}

    def sample_pose(self, rng: np.random.Generator) -> Pose:
        return {
            "steer": float(np.clip(rng.normal(0.0, 0.22), -0.6, 0.6)),
            "front_wheel": float(rng.uniform(0.0, 2 * np.pi)),
            "rear_wheel": float(rng.uniform(0.0, 2 * np.pi)),
            "crank": float(rng.uniform(0.0, 2 * np.pi)),
            "paint": int(rng.integers(self.paint_count())),
        }

    def _build(self) -> Rig:
        rng = np.random.default_rng(np.random.SeedSequence([self._seed, stable_seed("bicycle", self.breed)]))
        return build_bicycle(self.spec, rng)

    def _group_transforms(self, pose: Pose) -> dict[str, np.ndarray]:
        info = self.rig.info
        steer = rotation(info["steer_axis"], float(pose.get("steer", 0.0)), info["steer_pivot"])
        crank = float(pose.get("crank", 0.0))
        out = {
            "steer": steer,
            "front_wheel": steer
            @ translation(info["front_axle"])
            @ rotation(Z, -float(pose.get("front_wheel", 0.0))),
            "rear_wheel": translation(info["rear_axle"]) @ rotation(Z, -float(pose.get("rear_wheel", 0.0))),
        }
        for tag in ("", "2"):
            if f"bb{tag}" not in info:
                continue
            bb = info[f"bb{tag}"]
            out[f"crank{tag}"] = rotation(Z, -crank, bb)
            arm = info["crank_len"][0]
            for side, phase, z in (("r", 0.0, info["pedal_z"][0]), ("l", np.pi, -info["pedal_z"][0])):
                a = -crank + phase
                out[f"pedal{tag}_{side}"] = translation(
                    bb + np.array([arm * math.cos(a), arm * math.sin(a), z])
                )
        return out


# ----------------------------------------------------------------------------------------------------------
# Geometry
# ----------------------------------------------------------------------------------------------------------
def _v(x, y, z=0.0) -> np.ndarray:
    return np.array([x, y, z], dtype=np.float64)


def _line(a, b, n=2) -> np.ndarray:
    return np.linspace(np.asarray(a, float), np.asarray(b, float), n)


def _intersect(p, d, q, e) -> np.ndarray:
    """Intersection of 2-D lines p + s d and q + t e (x/y only)."""
    m = np.array([[d[0], -e[0]], [d[1], -e[1]]])
    s, _ = np.linalg.solve(m, (q - p)[:2])
    return p + s * d


def build_bicycle(spec: BikeSpec, rng: np.random.Generator) -> Rig:
    pieces: list[Piece] = []

    def add(group, name, mesh, slot, texturable=False):
        pieces.append(Piece(group=group, name=name, mesh=mesh, slot=slot, texturable=texturable))

    R = spec.wheel_d / 2
    wb = spec.wheelbase
    rear = _v(-wb / 2, R)
    front = _v(wb / 2, R)
    tandem = spec.frame == "tandem"
    cs = spec.chainstay
    bb = rear + _v(math.sqrt(max(cs**2 - spec.bb_drop**2, 0.01)), -spec.bb_drop)
    ha = math.radians(spec.head_angle)
    u = _v(-math.cos(ha), math.sin(ha))  # steering axis, pointing up and back
    n1 = _v(math.sin(ha), math.cos(ha))  # perpendicular in the side plane, forward-up
    pivot = front - spec.fork_offset * n1
    fork_len = R + 0.035 + 0.25 * spec.tyre_w + (0.12 if spec.suspension else 0.0)
    crown = pivot + math.sqrt(max(fork_len**2 - spec.fork_offset**2, 0.01)) * u
    ht_bot = crown + 0.012 * u
    ht_top = ht_bot + spec.head_tube * u
    sa = math.radians(spec.seat_angle)
    s_dir = _v(-math.cos(sa), math.sin(sa))
    r = spec.tube_r

    # Seat tube top: where a top tube from the head tube (sloping down by top_slope) meets the seat axis.
    slope = math.radians(spec.top_slope)
    tt_front = ht_top - 0.025 * u
    tt_dir = _v(-math.cos(slope), -math.sin(slope))
    bb_seat = bb
    if tandem:
        # Stoker bottom bracket sits behind the captain's; the seat tube we compute is the captain's.
        bb2 = bb
        bb = bb2 + _v(0.68, 0.0)
        bb_seat = bb
    st_top = _intersect(tt_front, tt_dir, bb_seat, s_dir)
    st_len = float(np.linalg.norm(st_top - bb_seat))
    if spec.frame in ("bmx", "folding") or st_len < 0.18:
        st_len = max(st_len, 0.18 if spec.frame != "bmx" else 0.2)
        st_top = bb_seat + st_len * s_dir

    frame_tubes: list[tuple[np.ndarray, float]] = []  # (path, radius) drawn in paint

    def tube(path, radius):
        frame_tubes.append((np.asarray(path, float), radius))

    # Head tube, seat tube, bottom bracket shell.
    tube(_line(ht_bot - 0.01 * u, ht_top + 0.005 * u), r * 1.25)
    tube(_line(bb_seat, st_top + 0.02 * s_dir), r * 0.95)
    frame_tubes.append((_line(bb_seat + _v(0, 0, -0.045), bb_seat + _v(0, 0, 0.045)), r * 1.15))
    stay_r = r * 0.55
    seat_cluster = st_top - 0.02 * s_dir
    dt_end = ht_bot + 0.035 * u

    if spec.frame in ("diamond", "bmx", "tandem"):
        tube(_line(tt_front, st_top), r)
        tube(_line(bb_seat + 0.01 * s_dir, dt_end), r * 1.15)
    elif spec.frame == "step_through":
        low = bb_seat + 0.16 * s_dir
        start = ht_bot + 0.45 * spec.head_tube * u
        ctrl = _v(low[0] + 0.15, low[1] + 0.02)
        tube(bezier(start, ctrl, low, 18), r * 1.05)
        tube(_line(bb_seat + 0.01 * s_dir, dt_end), r * 1.2)
    elif spec.frame == "mixte":
        tube(_line(bb_seat + 0.01 * s_dir, dt_end), r * 1.15)
        start = ht_bot + 0.5 * spec.head_tube * u
        low = bb_seat + 0.22 * s_dir
        tube(bezier(start, _v((start[0] + low[0]) / 2, (start[1] + low[1]) / 2 - 0.08), low, 18), r)
        for zs in (-1, 1):  # twin lateral stays from the head tube to the rear dropouts
            a = ht_top - 0.03 * u + _v(0, 0, zs * 0.012)
            m = st_top - 0.12 * s_dir + _v(0, 0, zs * 0.03)
            e = rear + _v(0.02, 0.0, zs * 0.065)
            tube(spline(np.stack([a, m, e]), 8), r * 0.45)
    elif spec.frame == "cruiser":
        a = tt_front
        e = st_top + _v(0.0, -0.02)
        tube(bezier(a, _v((a[0] + e[0]) / 2, min(a[1], e[1]) - 0.12), e, 20), r)
        # Cantilever twin tube: from the head tube sweeping down past the seat tube to the rear dropouts.
        a2 = ht_bot + 0.5 * spec.head_tube * u
        for zs in (-1, 1):
            m = bb_seat + 0.25 * s_dir + _v(0, 0, zs * 0.03)
            e2 = rear + _v(0.03, 0.0, zs * 0.065)
            tube(
                spline(
                    np.stack(
                        [a2 + _v(0, 0, zs * 0.01), _v((a2[0] + m[0]) / 2, m[1] + 0.02, zs * 0.02), m, e2]
                    ),
                    8,
                ),
                r * 0.55,
            )
        tube(bezier(bb_seat + 0.01 * s_dir, _v(bb_seat[0] + 0.35, bb_seat[1] + 0.02), dt_end, 18), r * 1.2)
    elif spec.frame == "folding":
        start = ht_bot + 0.3 * spec.head_tube * u
        low = bb_seat + 0.22 * s_dir
        tube(_line(start, low), r * 1.35)
        tube(_line(bb_seat + 0.01 * s_dir, bb_seat + _v(0.12, 0.08)), r)
        frame_tubes.append((_line(start + _v(0, -0.0, -0.035), start + _v(0, 0, 0.035)), r * 1.5))  # hinge

    # Rear triangle: seat stays and chain stays, one per side.
    drop_z = 0.068 if spec.tyre_w < 0.05 else 0.075 + spec.tyre_w * 0.2
    stay_bb = bb2 if tandem else bb_seat
    stay_top = seat_cluster
    if tandem:
        st2_top = bb2 + (st_len * 0.92) * s_dir
        stay_top = st2_top - 0.02 * s_dir
    for zs in (-1, 1):
        tube(
            spline(
                np.stack(
                    [
                        stay_top + _v(0, 0, zs * 0.015),
                        (stay_top + rear) / 2 + _v(0, 0, zs * drop_z * 0.75),
                        rear + _v(0, 0, zs * drop_z),
                    ]
                ),
                6,
            ),
            stay_r,
        )
        tube(
            spline(
                np.stack(
                    [
                        stay_bb + _v(0.02, 0, zs * 0.03),
                        (stay_bb + rear) / 2 + _v(0, 0.01, zs * drop_z * 0.9),
                        rear + _v(0, 0, zs * drop_z),
                    ]
                ),
                6,
            ),
            stay_r * 1.1,
        )
        # dropout plates
        frame_tubes.append(
            (_line(rear + _v(-0.012, 0, zs * drop_z), rear + _v(0.025, 0, zs * drop_z)), stay_r * 1.2)
        )
    if tandem:
        tube(_line(bb2, st2_top + 0.02 * s_dir), r * 0.95)  # stoker seat tube
        tube(_line(st_top, st2_top), r)  # second top tube
        tube(_line(bb + _v(0, 0, 0), bb2), r * 1.1)  # boom tube
        tube(_line(st_top - 0.05 * s_dir, bb2 + 0.03 * s_dir), r * 0.8)  # diagonal
    # Bridge between seat stays (brake mount) and the chainstay bridge.
    stay_bridge = stay_top + 0.35 * (rear - stay_top)
    frame_tubes.append(
        (_line(stay_bridge + _v(0, 0, -drop_z * 0.8), stay_bridge + _v(0, 0, drop_z * 0.8)), stay_r * 0.7)
    )

    frame_mesh = S.concat([S.tube(p, rad, sides=14) for p, rad in frame_tubes])
    add("body", "frame", frame_mesh, "paint", texturable=True)

    # ---- fork (steer group) --------------------------------------------------------------------------
    steer_parts: dict[str, list] = {"fork": [], "metal": [], "dark": [], "grip": []}
    front_hub_z = 0.05
    fork_half = max(spec.tyre_w / 2 + 0.014, 0.03)
    if spec.suspension:
        for zs in (-1, 1):
            top = crown + _v(0, 0, zs * (fork_half + 0.005))
            mid = top + (front - crown) * 0.42
            bottom = front + _v(0, 0, zs * front_hub_z)
            steer_parts["metal"].append(S.tube(_line(top, mid + _v(0, 0, 0)), 0.017))
            steer_parts["dark"].append(
                S.tube(_line(mid - (front - crown) * 0.05, bottom + _v(0, 0, zs * 0.004)), 0.022)
            )
        arch_a = crown + (front - crown) * 0.5 + _v(0.0, 0, -(fork_half + 0.005))
        arch_b = arch_a + _v(0, 0, 2 * (fork_half + 0.005))
        steer_parts["dark"].append(
            S.tube(bezier(arch_a, (arch_a + arch_b) / 2 + _v(0.06, 0.05, 0), arch_b, 10), 0.012)
        )
        steer_parts["dark"].append(S.rounded_box((0.05, 0.035, 2 * fork_half + 0.05), 0.01, center=crown))
    else:
        for zs in (-1, 1):
            top = crown + _v(0, 0, zs * fork_half)
            bottom = front + _v(0, 0, zs * front_hub_z)
            mid = (top + bottom) / 2 + 0.012 * n1
            steer_parts["fork"].append(
                S.tube(spline(np.stack([top, mid, bottom]), 6), np.linspace(r * 0.85, r * 0.5, 13))
            )
        steer_parts["fork"].append(S.rounded_box((0.045, 0.03, 2 * fork_half + 0.03), 0.008, center=crown))
    # Headset spacers + stem + handlebar.
    steer_top = ht_top + 0.035 * u
    steer_parts["dark" if spec.components == "black" else "metal"].append(
        S.tube(_line(ht_top, steer_top + 0.01 * u), r * 0.9)
    )
    rise = math.radians(spec.stem_rise)
    bar_c = steer_top + spec.stem_len * _v(math.cos(rise), math.sin(rise))
    comp_slot = "dark" if spec.components == "black" else "metal"
    steer_parts[comp_slot].append(S.tube(_line(steer_top, bar_c), 0.016))
    bar_path, grip_paths, lever_pts = _handlebar(spec, bar_c)
    steer_parts[comp_slot].append(S.tube(bar_path, 0.0115, sides=10))
    if spec.bar == "bmx":
        steer_parts[comp_slot].append(
            S.tube(_line(bar_c + _v(-0.025, 0.12, -0.14), bar_c + _v(-0.025, 0.12, 0.14)), 0.009)
        )
    for gp in grip_paths:
        steer_parts["grip"].append(S.tube(gp, 0.0165 if spec.bar != "drop" else 0.0135, sides=10))
    for a, b in lever_pts:
        steer_parts["dark"].append(S.tube(_line(a, b), 0.006, sides=6))
    # Front brake.
    if spec.rim_brakes:
        steer_parts["dark"].append(
            S.rounded_box((0.03, 0.05, 2 * fork_half + 0.02), 0.008, center=crown + 0.035 * n1 - 0.02 * u)
        )
    # Front fender, basket, lamp.
    if spec.fenders:
        steer_parts.setdefault("fender", []).append(
            _fender(front, R, spec.tyre_w, math.radians(-40), math.radians(150))
        )
    if spec.basket:
        steer_parts.setdefault("basket", []).append(_basket(bar_c + _v(0.2, -0.12), front))
    if spec.lights:
        steer_parts.setdefault("lamp", []).append(
            S.rounded_box((0.05, 0.045, 0.05), 0.018, center=crown + 0.06 * n1 + 0.02 * u)
        )
    for slot, meshes in steer_parts.items():
        if meshes:
            if slot == "fork":
                add(
                    "steer",
                    "fork",
                    S.concat(meshes),
                    "paint" if spec.fork_painted else comp_slot,
                    texturable=spec.fork_painted,
                )
            else:
                add("steer", f"steer_{slot}", S.concat(meshes), slot, texturable=slot in ("fender", "basket"))

    # ---- wheels ---------------------------------------------------------------------------------------
    for which, hub_w in (("front_wheel", front_hub_z), ("rear_wheel", drop_z)):
        for slot, mesh in _wheel(spec, hub_w, rear=which == "rear_wheel").items():
            add(which, f"{which}_{slot}", mesh, slot)

    # ---- drivetrain -----------------------------------------------------------------------------------
    body: dict[str, list] = {
        "metal": [],
        "dark": [],
        "chain": [],
        "saddle": [],
        "rack": [],
        "fender": [],
        "other": [],
    }
    cog_r = 0.045 if not spec.gears else 0.05
    chain_z = 0.045
    body["chain"].append(
        _chain(bb[:2] if not tandem else bb2[:2], spec.chainring_r, rear[:2], cog_r * 0.8, chain_z)
    )
    cranks = [("", bb)] + ([("2", bb2)] if tandem else [])
    for tag, c in cranks:
        crank_meshes = [
            _chainring(spec.chainring_r, c, chain_z),
            S.tube(_line(c + _v(0, 0, -0.08), c + _v(0, 0, 0.08)), 0.012),
        ]
        for zs in (-1, 1):
            # Right arm forward, left arm backward (cranks sit 180 degrees apart).
            end = c + _v(zs * spec.crank_len, 0, zs * 0.075)
            arm = _line(c + _v(0, 0, zs * 0.075), end, 4)
            crank_meshes.append(S.sweep_section(arm, S.superellipse(12, 0.007, 0.014, 4.0), up=(0, 1, 0)))
        if tandem:  # timing chainring on the left
            crank_meshes.append(_chainring(0.08, c, -chain_z))
        add(f"crank{tag}", f"crank{tag}", S.concat(crank_meshes), comp_slot)
        for side in ("r", "l"):
            add(f"pedal{tag}_{side}", f"pedal{tag}_{side}", _pedal(side), "dark")
    if tandem:
        body["chain"].append(_chain(bb[:2], 0.08, bb2[:2], 0.08, -chain_z))
    pedal_z = 0.075
    if spec.gears:
        # Rear derailleur hanging below the cassette.
        body["dark"].append(S.rounded_box((0.05, 0.07, 0.015), 0.006, center=rear + _v(0.0, -0.06, 0.05)))
    if spec.chain_guard:
        guard = spline(
            np.stack(
                [
                    bb + _v(0.06, spec.chainring_r + 0.02),
                    (bb + rear) / 2 + _v(0, spec.chainring_r * 0.8 + 0.03),
                    rear + _v(0.06, cog_r + 0.03),
                ]
            ),
            8,
        )
        body["fender"].append(
            S.sweep_section(
                guard + _v(0, 0, chain_z + 0.012), S.superellipse(12, 0.004, 0.035, 2.5), up=(0, 0, 1)
            )
        )

    # ---- seat post and saddle ------------------------------------------------------------------------
    seat_h = max(spec.saddle_h, st_len + 0.07)
    saddles = [(bb_seat, st_top, seat_h)]
    if tandem:
        saddles.append((bb2, st2_top, max(spec.saddle_h * 0.98, st_len * 0.92 + 0.07)))
    for base, top, h in saddles:
        clamp = base + h * s_dir
        body[comp_slot].append(S.tube(_line(top, clamp), 0.0135))
        body["saddle"].append(_saddle(spec.saddle, clamp))
        if spec.saddle == "cruiser":
            for zs in (-1, 1):
                body["metal"].append(
                    S.tube(
                        _line(clamp + _v(-0.09, 0.0, zs * 0.06), clamp + _v(-0.09, 0.05, zs * 0.06)), 0.008
                    )
                )
    if tandem:
        # Stoker's handlebar on the captain's seat post.
        post = saddles[0][0] + (saddles[0][2] - 0.08) * s_dir
        c2 = post + _v(-0.14, 0.02)
        body[comp_slot].append(S.tube(_line(post, c2), 0.013))
        body[comp_slot].append(S.tube(_line(c2 + _v(0, 0, -0.24), c2 + _v(0, 0, 0.24)), 0.011))
        body["other"].append(S.tube(_line(c2 + _v(0, 0, -0.24), c2 + _v(0, 0, -0.13)), 0.016))
        body["other"].append(S.tube(_line(c2 + _v(0, 0, 0.13), c2 + _v(0, 0, 0.24)), 0.016))

    # ---- accessories ---------------------------------------------------------------------------------
    if spec.fenders:
        body["fender"].append(_fender(rear, R, spec.tyre_w, math.radians(10), math.radians(200)))
    if spec.rack:
        top_y = R + 0.12
        x0, x1 = rear[0] - 0.16, rear[0] + 0.2
        rails = []
        for zs in (-1, 0, 1):
            rails.append((_v(x0, top_y, zs * 0.07), _v(x1, top_y, zs * 0.07)))
        for x in (x0, (x0 + x1) / 2):
            rails.append((_v(x, top_y, -0.07), _v(x, top_y, 0.07)))
        for zs in (-1, 1):
            rails.append((_v(x0 + 0.03, top_y, zs * 0.07), rear + _v(0.0, 0, zs * (drop_z + 0.006))))
            rails.append((_v(x1, top_y, zs * 0.07), seat_cluster + _v(-0.02, -0.03, zs * 0.02)))
        a, b = zip(*rails, strict=True)
        body["rack"].append(S.prisms(np.array(a), np.array(b), 0.005, sides=6))
    if spec.kickstand:
        foot = bb + _v(-0.22, -bb[1] + 0.005, -0.16)
        body["dark"].append(S.tube(_line(bb + _v(-0.06, 0.0, -0.04), foot), 0.008, sides=8))
    if spec.bottle and spec.frame == "diamond":
        dt = dt_end - bb_seat
        c = bb_seat + 0.45 * dt + 0.05 * _v(-dt[1], dt[0]) / np.linalg.norm(dt)
        body["other"].append(
            S.sweep_section(
                _line(c - 0.1 * dt / np.linalg.norm(dt), c + 0.11 * dt / np.linalg.norm(dt), 6),
                S.superellipse(14, 0.035, 0.035),
                scale=np.array([0.9, 1, 1, 1, 1, 0.6]),
            )
        )
    if spec.battery:
        dt = dt_end - bb_seat
        d = dt / np.linalg.norm(dt)
        c = bb_seat + 0.5 * dt + 0.045 * _v(-d[1], d[0])
        body["dark"].append(
            S.sweep_section(
                _line(c - 0.2 * d, c + 0.2 * d, 6),
                S.superellipse(16, 0.04, 0.035, 3.0),
                scale=np.array([0.8, 1, 1, 1, 1, 0.8]),
            )
        )
    if spec.lights:
        body["other"].append(
            S.rounded_box((0.02, 0.03, 0.05), 0.006, center=(rear + seat_cluster) / 2 + _v(-0.12, 0.08))
        )
    if spec.disc_brakes:
        body["dark"].append(
            S.rounded_box((0.06, 0.035, 0.02), 0.006, center=rear + _v(-0.04, 0.05, -drop_z + 0.005))
        )

    slots_texturable = {"saddle", "fender", "rack", "other"}
    for slot, meshes in body.items():
        if meshes:
            add("body", f"body_{slot}", S.concat(meshes), slot, texturable=slot in slots_texturable)

    materials, variants = _bike_materials(spec, rng)
    info = {
        "steer_axis": u,
        "steer_pivot": pivot,
        "front_axle": front,
        "rear_axle": rear,
        "bb": bb,
        "crank_len": np.array([spec.crank_len]),
        "pedal_z": np.array([pedal_z]),
    }
    if tandem:
        info["bb2"] = bb2
    return Rig(pieces=pieces, materials=materials, paint_variants=variants, info=info)


def _handlebar(spec: BikeSpec, c: np.ndarray):
    """(bar path, grip paths, brake lever segments) for the bar style, centred on the stem clamp `c`."""
    w = spec.bar_width / 2
    if spec.bar == "drop":
        side = np.array(
            [
                [0, 0, 0.0],
                [0, 0, 0.1],
                [0.01, 0, w - 0.04],
                [0.05, 0.0, w],
                [0.1, -0.01, w],
                [0.12, -0.05, w],
                [0.1, -0.11, w],
                [0.05, -0.13, w],
                [-0.03, -0.13, w],
            ]
        )
        grip_from = 3
        levers = [(c + _v(0.1, -0.01, zs * w), c + _v(0.12, 0.03, zs * w)) for zs in (-1, 1)]
    elif spec.bar == "bullhorn":
        side = np.array(
            [[0, 0, 0.0], [0, 0, 0.1], [0.0, 0, w - 0.03], [0.04, 0.0, w], [0.12, 0.03, w], [0.17, 0.07, w]]
        )
        grip_from = 3
        levers = []
    elif spec.bar == "swept":
        side = np.array(
            [[0, 0, 0.0], [0.0, 0.0, 0.08], [-0.04, 0.02, w * 0.6], [-0.13, 0.04, w * 0.92], [-0.22, 0.04, w]]
        )
        grip_from = 3
        levers = [(c + _v(-0.1, 0.03, zs * w * 0.9), c + _v(-0.05, 0.03, zs * w * 1.0)) for zs in (-1, 1)]
    elif spec.bar == "bmx":
        side = np.array(
            [
                [0, 0, 0.0],
                [0, 0, 0.07],
                [-0.015, 0.1, 0.12],
                [-0.03, 0.2, 0.16],
                [-0.04, 0.22, 0.2],
                [-0.05, 0.22, w],
            ]
        )
        grip_from = 4
        levers = []
    else:  # flat / riser
        rise = 0.035 if spec.bar == "riser" else 0.0
        side = np.array(
            [
                [0, 0, 0.0],
                [0, 0, 0.06],
                [0, rise * 0.5, 0.1],
                [-0.01, rise, 0.16],
                [-0.02, rise, w - 0.12],
                [-0.03, rise, w],
            ]
        )
        grip_from = 4
        levers = [
            (c + _v(-0.015, rise, zs * (w - 0.15)), c + _v(0.07, rise - 0.01, zs * (w - 0.09)))
            for zs in (-1, 1)
        ]
    right = spline(side, 6)
    left = right[::-1] * np.array([1, 1, -1])
    path = np.concatenate([left[:-1], right]) + c
    k = grip_from * 6
    grips = [right[k:] + c, (right[k:] * np.array([1, 1, -1]))[::-1] + c]
    return path, grips, levers


def _wheel(spec: BikeSpec, hub_half: float, *, rear: bool) -> dict[str, np.ndarray]:
    """Wheel meshes in the wheel frame (axle = z, centre at the origin), by material slot."""
    R = spec.wheel_d / 2
    tw = spec.tyre_w
    th = min(tw * 0.95, R * 0.3)
    rc = R - th / 2
    out = {}
    # Tyre: elliptic section; v = 0 at the rim side, 0.5 on the tread.
    k = 10
    v = np.arange(k) / k
    section = np.stack([-(th / 2) * np.cos(2 * np.pi * v), (tw / 2) * np.sin(2 * np.pi * v)], -1)
    if spec.tread == "knobby":
        # Knobs in the silhouette (3 ring angles per knob: up, up, down) - they are what says "off-road".
        knobs = int(round(2 * np.pi * R / 0.028))
        radii = rc + np.tile([1.0, 1.0, 0.0], knobs) * min(0.004 + tw * 0.05, 0.008)
    else:
        radii = np.full(72, rc)
    out["tyre"] = S.torus_ring(section, radii, np.zeros(len(radii)))
    # Rim: box section under the tyre bead.
    rw = max(tw * 0.7, 0.018) / 2
    r_out = rc - th * 0.3
    r_in = r_out - spec.rim_depth
    out["rim"] = S.revolve(
        np.array([[r_in, -rw * 0.6], [r_out, -rw], [r_out, rw], [r_in, rw * 0.6]]), segments=72
    )
    # Hub and spokes.
    hub = np.array(
        [
            [0.006, -hub_half - 0.004],
            [0.024, -hub_half + 0.002],
            [0.024, -hub_half + 0.008],
            [0.014, -hub_half + 0.014],
            [0.013, 0.0],
            [0.014, hub_half - 0.014],
            [0.024, hub_half - 0.008],
            [0.024, hub_half - 0.002],
            [0.006, hub_half + 0.004],
        ]
    )
    hubs = [S.revolve(hub, segments=16, closed_profile=False)]
    n = spec.spokes
    i = np.arange(n)
    a = 2 * np.pi * i / n
    side = np.where(i % 2 == 0, 1.0, -1.0)
    lead = np.where((i // 2) % 2 == 0, 1.0, -1.0)
    ha = a + lead * (3.0 * 2 * np.pi / n)
    flange_r = 0.022
    hub_pts = np.stack([flange_r * np.cos(ha), flange_r * np.sin(ha), side * (hub_half - 0.005)], -1)
    rim_pts = np.stack([(r_in + 0.002) * np.cos(a), (r_in + 0.002) * np.sin(a), side * 0.002], -1)
    # Spokes are drawn a little thicker than real (1.1 mm) so they survive 224 px renders as the fine
    # lines photos show.
    out["spoke"] = S.prisms(hub_pts, rim_pts, 0.0007, sides=4)
    if rear:
        cogs = 6 if spec.gears else 1
        for c in range(cogs):
            rr = 0.05 - c * 0.0045 if spec.gears else 0.04
            z = 0.018 + c * 0.0045
            hubs.append(
                S.revolve(np.array([[0.015, z], [rr, z], [rr, z + 0.002], [0.015, z + 0.002]]), segments=28)
            )
    if spec.disc_brakes:
        z = -hub_half + 0.01
        hubs.append(
            S.revolve(np.array([[0.02, z], [0.08, z], [0.08, z + 0.002], [0.02, z + 0.002]]), segments=36)
        )
    out["hub"] = S.concat(hubs)
    return out


def _chainring(radius: float, centre: np.ndarray, z: float):
    teeth = max(int(round(2 * np.pi * radius / 0.0127)), 20)
    angles = teeth * 3
    pattern = np.tile([0.0, 1.0, 0.0], teeth)
    radii = radius - 0.004 + pattern * 0.005
    section = np.array([[-0.012, -0.0018], [0.0, -0.0018], [0.0, 0.0018], [-0.012, 0.0018]])
    ring = S.torus_ring(section, radii, np.full(angles, z))
    # Spider arms.
    k = 5
    th = 2 * np.pi * np.arange(k) / k + 0.3
    a = np.stack([np.zeros(k), np.zeros(k), np.full(k, z)], -1)
    b = np.stack([(radius - 0.01) * np.cos(th), (radius - 0.01) * np.sin(th), np.full(k, z)], -1)
    arms = S.prisms(a, b, 0.006, sides=4)
    m = S.concat([ring, arms])
    m.apply_translation(centre * np.array([1, 1, 0]))
    return m


def _chain(c1, r1, c2, r2, z):
    """A closed chain loop around two sprockets (centres c1 front, c2 rear, in the x/y plane at depth z)."""
    c1, c2 = np.asarray(c1, float), np.asarray(c2, float)
    d = c2 - c1
    dist = np.linalg.norm(d)
    e = d / dist
    phi = math.acos(np.clip((r1 - r2) / dist, -1, 1))

    def rot(v, a):
        return np.array([v[0] * math.cos(a) - v[1] * math.sin(a), v[0] * math.sin(a) + v[1] * math.cos(a)])

    n_up, n_dn = rot(e, -phi), rot(e, phi)
    if n_up[1] < n_dn[1]:
        n_up, n_dn = n_dn, n_up
    a_up1, a_dn1 = math.atan2(n_up[1], n_up[0]), math.atan2(n_dn[1], n_dn[0])
    # Around the front sprocket the long way (through its front, away from c2), then the bottom run,
    # around the rear sprocket through its back, then the top run.
    arc1 = np.linspace(a_dn1, a_up1 + (2 * np.pi if a_up1 < a_dn1 else 0.0), 28)
    # pick the arc that passes away from c2
    mid = (arc1[0] + arc1[-1]) / 2
    if np.dot([math.cos(mid), math.sin(mid)], e) > 0:
        arc1 = np.linspace(a_dn1, a_up1 - (2 * np.pi if a_up1 > a_dn1 else 0.0), 28)
    p1 = c1[None] + r1 * np.stack([np.cos(arc1), np.sin(arc1)], -1)
    arc2 = np.linspace(a_up1, a_dn1 + (2 * np.pi if a_dn1 < a_up1 else 0.0), 16)
    mid = (arc2[0] + arc2[-1]) / 2
    if np.dot([math.cos(mid), math.sin(mid)], e) < 0:
        arc2 = np.linspace(a_up1, a_dn1 - (2 * np.pi if a_dn1 > a_up1 else 0.0), 16)
    p2 = c2[None] + r2 * np.stack([np.cos(arc2), np.sin(arc2)], -1)
    top = np.linspace(p1[-1], p2[0], 12)[1:-1]
    bottom = np.linspace(p2[-1], p1[0], 12)[1:-1]
    loop = np.concatenate([p1, top, p2, bottom])
    # Rings: a flat rectangle section (8 mm tall, 5 mm wide) round the loop.
    nxt = np.roll(loop, -1, axis=0)
    prv = np.roll(loop, 1, axis=0)
    t = nxt - prv
    t /= np.linalg.norm(t, axis=1, keepdims=True)
    normal = np.stack([-t[:, 1], t[:, 0]], -1)
    sec = S.superellipse(8, 0.004, 0.0028, 4.0)
    rings = np.zeros((len(loop), len(sec), 3))
    rings[..., :2] = loop[:, None, :] + sec[None, :, 0:1] * normal[:, None, :]
    rings[..., 2] = z + sec[None, :, 1]
    return S.ring_surface(rings, closed_rows=True)


def _pedal(side: str):
    zs = 1.0 if side == "r" else -1.0
    body = S.rounded_box((0.09, 0.022, 0.095), 0.006, center=(0.0, 0.0, zs * 0.055))
    axle = S.tube(_line(_v(0, 0, 0), _v(0, 0, zs * 0.02)), 0.006, sides=8)
    return S.concat([body, axle])


def _saddle(kind: str, clamp: np.ndarray):
    length, rear_w, nose_w, thick = {
        "race": (0.27, 0.07, 0.017, 0.035),
        "comfort": (0.26, 0.1, 0.028, 0.055),
        "cruiser": (0.28, 0.14, 0.04, 0.07),
        "bmx": (0.24, 0.07, 0.025, 0.045),
    }[kind]
    x = np.linspace(-length * 0.45, length * 0.55, 12)
    t = (x - x[0]) / (x[-1] - x[0])
    half_w = nose_w + (rear_w - nose_w) * np.clip(1.0 - t * 1.5, 0.0, 1.0) ** 0.8
    half_w = np.maximum(half_w * np.sqrt(np.clip(1 - (2 * t - 1) ** 16, 0.05, 1)), 0.006)
    half_h = thick / 2 * np.sqrt(np.clip(1 - (2 * t - 1) ** 12, 0.05, 1))
    y = 0.025 + 0.012 * (2 * t - 0.5) ** 2
    path = np.stack([x, y, np.zeros_like(x)], -1) + clamp
    m = S.sweep_section(
        path, S.superellipse(18, 1.0, 1.0, 2.6), scale=np.stack([half_w, half_h], -1), up=(0, 1, 0)
    )
    return m


def _fender(axle: np.ndarray, R: float, tw: float, a0: float, a1: float):
    """A mudguard: a curved strip over the tyre from angle a0 to a1 (radians, 0 = forward, CCW = up)."""
    a = np.linspace(a0, a1, 28)
    rr = R + 0.018
    path = np.stack([axle[0] + rr * np.cos(a), axle[1] + rr * np.sin(a), np.zeros_like(a)], -1)
    w = tw / 2 + 0.012
    sec = np.array(
        [
            [-w, -0.004],
            [-w * 0.8, 0.003],
            [0.0, 0.006],
            [w * 0.8, 0.003],
            [w, -0.004],
            [w * 0.8, -0.001],
            [0.0, 0.0015],
            [-w * 0.8, -0.001],
        ]
    )
    # Section axes: side = along the axle (z), normal = radial outward. sweep_section's 'up' is radial.
    return S.sweep_section(path, sec[:, [0, 1]], up=(math.cos(a0), math.sin(a0), 0.0))


def _basket(centre: np.ndarray, axle: np.ndarray):
    return S.rounded_box((0.3, 0.22, 0.36), 0.03, center=centre)


def _bike_materials(spec: BikeSpec, rng: np.random.Generator):
    silver = material("alu", (0.72, 0.72, 0.74), metallic=0.6, roughness=0.32)
    black = material("black-parts", (0.035, 0.035, 0.04), metallic=0.2, roughness=0.45)
    comp = black if spec.components == "black" else silver
    wall = (0.62, 0.45, 0.26) if spec.gumwall else None
    repeats = int(round(2 * np.pi * spec.wheel_d / 2 / (0.028 if spec.tread == "knobby" else 0.05)))
    base_tex, normal_tex = tyre_textures(spec.tread, wall, repeats)
    tyre = material(
        "tyre",
        (1.0, 1.0, 1.0),
        roughness=0.88,
        base_color_texture=base_tex,
        normal_texture=normal_tex,
        texture_key=f"{spec.tread}/{wall}/{repeats}",
    )
    saddle_rgb = (
        (0.3, 0.17, 0.08)
        if spec.saddle in ("cruiser",) or (spec.saddle == "comfort" and rng.uniform() < 0.3)
        else (0.03, 0.03, 0.03)
    )
    grip_rgb = (
        saddle_rgb
        if spec.bar in ("swept",)
        else [(0.03, 0.03, 0.03), (0.85, 0.85, 0.82), (0.3, 0.17, 0.08)][
            int(rng.integers(3)) if spec.bar == "drop" else 0
        ]
    )
    materials = {
        "metal": silver,
        "dark": black,
        "tyre": tyre,
        # Mostly black rims and hubs, like most bikes sold today; silver rims read as clock faces to an
        # ImageNet classifier more often (measured with drsynth realism).
        "rim": silver
        if spec.components == "silver" and spec.rim_depth < 0.04 and rng.uniform() < 0.15
        else black,
        "spoke": material("spoke", (0.78, 0.78, 0.8), metallic=0.7, roughness=0.3)
        if spec.components == "silver"
        else black,
        "hub": black,
        "chain": material("chain", (0.32, 0.32, 0.34), metallic=0.7, roughness=0.45),
        "saddle": material("saddle", saddle_rgb, roughness=0.55),
        "grip": material("grip", grip_rgb, roughness=0.8),
        "rack": comp,
        "basket": material("wicker", (0.55, 0.38, 0.2), roughness=0.85),
        "lamp": material("lamp", (0.9, 0.9, 0.85), roughness=0.2, emissive=(0.4, 0.4, 0.35)),
        "other": material(
            "bottle",
            jitter_rgb(rng, [(0.1, 0.1, 0.1), (0.9, 0.9, 0.9), (0.1, 0.4, 0.8)][int(rng.integers(3))]),
            roughness=0.35,
        ),
    }
    # Paint variants: a few colours from the model's colour families, gloss or satin.
    variants = []
    order = rng.permutation(len(spec.colours))
    for k in range(6):
        base = spec.colours[order[k % len(order)]]
        rgb = jitter_rgb(rng, base, 0.05)
        finish = rng.uniform()
        metallic, rough = (0.35, 0.3) if finish < 0.35 else (0.0, 0.25) if finish < 0.75 else (0.0, 0.6)
        paint = material("bike-paint", rgb, metallic=metallic, roughness=rough)
        v = {"paint": paint}
        v["fender"] = paint if (spec.frame in ("cruiser", "step_through", "mixte") or k % 2 == 0) else black
        variants.append(v)
    materials["paint"] = variants[0]["paint"]
    materials["fender"] = variants[0]["fender"]
    return materials, variants
