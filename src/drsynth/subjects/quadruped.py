"""A parametric, articulated quadruped (cats and dogs) built from smooth lofted parts.

A breed is an `Anatomy` (shape, metres and ratios) plus a `Coat` (colours and pattern, see `coats`). The body
is a set of rigid parts hung on a small skeleton: torso, neck, head (with eyes, nose and ears), three segments
per leg and a chain of tail segments. Each part is a smooth loft (superelliptic sections along a path) whose
rounded ends overlap its neighbours like ball joints, so a pose only moves parts: geometry and the coat
texture are built once per breed (lazily, on the first `parts()` call) and the renderer caches them by key.

Joints have per-axis limits (`JOINT_LIMITS`); `sample_pose` draws a pose family (stand, walk, sit, sphinx,
side-lying, play bow) and keeps every joint inside its limits. Frame: +Y up, ground y = 0, facing +X, metres;
+Z is the animal's left.
"""

from __future__ import annotations

import dataclasses
import math
import threading
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import trimesh

from drsynth.subjects import geometry as geo
from drsynth.subjects.base import Part, Pose, Subject, SurfaceMaterial

# ---------------------------------------------------------------------------------------------- anatomy


@dataclass(frozen=True)
class Anatomy:
    """Shape parameters of one breed. Lengths in metres unless the name says `_ratio` / `_frac`."""

    shoulder_height: float  # ground to withers
    body_length_ratio: float  # torso length / shoulder height
    chest_depth_ratio: float  # torso depth at the chest / shoulder height
    girth_ratio: float  # torso width / torso depth
    waist_ratio: float  # tuck-up: depth at the waist / chest depth
    rump_rise: float  # rump height above withers, fraction of shoulder height (cats > 0)
    leg_thickness: float  # forearm radius / chest depth
    paw_size: float  # paw radius / forearm radius
    neck_length_ratio: float  # neck length / shoulder height
    neck_thickness: float  # neck radius / chest depth
    neck_angle_deg: float  # neck carriage above horizontal
    head_length: float  # back of skull to nose tip, metres
    skull_width_ratio: float  # skull width / head length
    skull_height_ratio: float  # skull height / skull width
    muzzle_frac: float  # muzzle length / head length
    muzzle_width_ratio: float  # muzzle width / skull width
    muzzle_height_ratio: float  # muzzle height / skull height
    stop: float  # 0 = flat forehead-to-muzzle line, 1 = pronounced stop
    cheek: float  # cheek/jowl fullness
    eye_size: float  # eye radius / skull width
    eye_spacing: float  # eye half-distance / skull half-width
    eye_forward: float  # 0 = eyes on the sides, 1 = straight forward
    ear_length: float  # ear length / head length
    ear_width: float  # ear base width / ear length
    ear_floppiness: float  # 0 erect .. 1 hanging
    ear_tilt_deg: float  # outward tilt of erect ears
    ear_roundness: float  # 0 pointed tip .. 1 rounded
    ear_set: float  # 0 = on top of the head, 1 = on the sides
    tail_length_ratio: float  # tail length / torso length
    tail_thickness: float  # tail base radius / chest depth
    tail_carriage_deg: float  # tail base angle above horizontal (negative: hanging)
    tail_curl_deg: float  # total extra bend along the tail (upwards); 300+ = curled over the back
    fluff: float  # 0 sleek .. 1 very fluffy (silhouette tufts, thicker)
    species: Literal["cat", "dog"] = "dog"

    def blend(self, other: Anatomy, t: float) -> Anatomy:
        """Linear interpolation of every numeric field (t = 0: self, 1: other)."""
        vals: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            a, b = getattr(self, f.name), getattr(other, f.name)
            vals[f.name] = a + (b - a) * t if isinstance(a, float) else a
        return Anatomy(**vals)

    def jitter(self, rng: np.random.Generator, amount: float = 0.06) -> Anatomy:
        """Small random variation of every numeric field (relative, clipped to stay sane)."""
        vals: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            a = getattr(self, f.name)
            if isinstance(a, float):
                if f.name.endswith("_deg"):
                    a = a + rng.normal(0.0, 8.0 * amount / 0.06)
                elif f.name in (
                    "ear_floppiness",
                    "stop",
                    "cheek",
                    "fluff",
                    "ear_roundness",
                    "ear_set",
                    "eye_forward",
                ):
                    a = float(np.clip(a + rng.normal(0.0, amount), 0.0, 1.0))
                else:
                    a = a * float(np.exp(rng.normal(0.0, amount)))
            vals[f.name] = a
        return Anatomy(**vals)


# ---------------------------------------------------------------------------------------------- joints

#: joint -> axis -> (low, high) radians, relative to the breed's rest carriage. Positive pitch turns the
#: part's forward/down end towards +X-then-up (counter-clockwise seen from the animal's left).
JOINT_LIMITS: dict[str, tuple[float, float]] = {
    "body.pitch": (-0.45, 1.05),
    "body.roll": (-1.5, 1.5),
    "neck.pitch": (-0.9, 0.7),
    "neck.yaw": (-0.7, 0.7),
    "head.pitch": (-0.7, 0.6),
    "head.yaw": (-0.8, 0.8),
    "head.roll": (-0.45, 0.45),
    "ear_l.pitch": (-0.5, 0.35),
    "ear_r.pitch": (-0.5, 0.35),
    "ear_l.roll": (-0.35, 0.5),
    "ear_r.roll": (-0.35, 0.5),
    **{f"{leg}_shoulder.pitch": (-1.3, 1.5) for leg in ("fl", "fr")},
    **{f"{leg}_shoulder.roll": (-0.25, 0.35) for leg in ("fl", "fr")},
    **{f"{leg}_elbow.pitch": (-0.2, 2.4) for leg in ("fl", "fr")},
    **{f"{leg}_wrist.pitch": (-1.7, 0.4) for leg in ("fl", "fr")},
    **{f"{leg}_hip.pitch": (-0.9, 1.9) for leg in ("hl", "hr")},
    **{f"{leg}_hip.roll": (-0.25, 0.45) for leg in ("hl", "hr")},
    **{f"{leg}_knee.pitch": (-2.6, 0.3) for leg in ("hl", "hr")},
    **{f"{leg}_hock.pitch": (-0.3, 2.8) for leg in ("hl", "hr")},
    **{f"tail{i}.pitch": (-0.7, 0.7) for i in range(5)},
    **{f"tail{i}.yaw": (-0.6, 0.6) for i in range(5)},
}
TAIL_SEGMENTS = 5
POSE_FAMILIES = ("stand", "walk", "sit", "sphinx", "side", "bow")
#: Share of sampled dog poses with an open, panting mouth (tongue out); default stances keep it closed.
PANT_PROBABILITY = 0.6
MOUTH_PARTS = ("mouth", "tongue")
#: Shell-fur length per part, relative to the coat's: short on the face (eyes and nose stay clear) and ears.
FUR_SCALE = {"head": 0.3, "ear_l": 0.25, "ear_r": 0.25}


def clip_pose(pose: dict[str, float]) -> dict[str, float]:
    """Every joint value clipped into its limits (unknown keys are kept: e.g. the pose family)."""
    out: dict[str, Any] = {}
    for k, v in pose.items():
        if k in JOINT_LIMITS:
            lo, hi = JOINT_LIMITS[k]
            out[k] = float(min(max(float(v), lo), hi))
        else:
            out[k] = v
    return out


def _rot(axis: str, angle: float) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    m = np.eye(4)
    if axis == "z":  # pitch
        m[:2, :2] = [[c, -s], [s, c]]
    elif axis == "y":  # yaw
        m[0, 0], m[0, 2], m[2, 0], m[2, 2] = c, s, -s, c
    else:  # x: roll
        m[1:3, 1:3] = [[c, -s], [s, c]]
    return m


def _trans(v: np.ndarray) -> np.ndarray:
    m = np.eye(4)
    m[:3, 3] = v
    return m


@dataclass
class Bone:
    name: str
    parent: str | None
    pivot: np.ndarray  # rest position in the subject frame
    rest_pitch: float = 0.0  # breed carriage (tail curl, ear flop) baked in as a rest rotation
    rest_roll: float = 0.0
    rest_yaw: float = 0.0


# ---------------------------------------------------------------------------------------------- the model


@dataclass
class PartGeom:
    """One part's rest geometry in its bone frame, plus the loft grid used to map the coat onto it."""

    name: str
    bone: str
    mesh: trimesh.Trimesh
    kind: Literal["fur", "eye", "nose", "whisker", "mouth", "tongue"] = "fur"


class QuadrupedModel:
    """The rest-pose skeleton and part geometry of one breed (no textures; see `coats`)."""

    def __init__(self, a: Anatomy, *, detail: float = 1.0):
        self.a = a
        self.detail = detail
        self.bones: dict[str, Bone] = {}
        self.parts: list[PartGeom] = []
        self.keypoints: dict[str, tuple[str, np.ndarray, float]] = {}  # name -> (bone, local point, radius)
        self._build()

    # -- helpers -------------------------------------------------------------------------------------
    def _seg(self, base: int) -> int:
        return max(6, int(round(base * self.detail)))

    def _bone(self, name: str, parent: str | None, pivot, **rest) -> Bone:
        b = Bone(name, parent, np.asarray(pivot, dtype=np.float64), **rest)
        self.bones[name] = b
        return b

    def _add(self, name: str, bone: str, mesh_world_rest: trimesh.Trimesh, kind="fur") -> None:
        """Add a part given in rest subject coordinates; stored relative to its bone's pivot."""
        mesh = mesh_world_rest.copy()
        mesh.apply_translation(-self.bones[bone].pivot)
        self.parts.append(PartGeom(name, bone, mesh, kind))

    # -- construction --------------------------------------------------------------------------------
    def _build(self) -> None:
        a = self.a
        H = a.shoulder_height
        D = a.chest_depth_ratio * H  # chest depth
        W = a.girth_ratio * D  # torso width
        L = a.body_length_ratio * H  # withers to rump
        fluff = a.fluff
        self.H, self.D, self.W, self.L = H, D, W, L
        x_front, x_rear = L / 2, -L / 2
        top_rear = H * (1.0 + a.rump_rise)

        # Root "body" bone at the torso centre; torso part hangs on it.
        body_c = np.array([0.0, H - 0.5 * D, 0.0])
        self._bone("body", None, body_c)

        # ---- torso: a smooth union of ellipsoids (ribcage, chest, belly, hindquarters, shoulders, haunches),
        # meshed as a loft along the body axis so the coat's UVs run head -> tail.
        yb = H - 0.5 * D
        yr = top_rear - 0.5 * D
        waist = a.waist_ratio
        blobs = [
            (np.array([x_front - 0.38 * L, yb, 0.0]), np.array([0.42 * L, 0.5 * D, 0.5 * W])),  # ribcage
            (  # chest: kept behind the shoulders (further forward it read as a pigeon breast)
                np.array([x_front - 0.15 * L, yb + 0.03 * D, 0.0]),
                np.array([0.14 * L + 0.14 * D, 0.46 * D, 0.44 * W]),
            ),
            (  # brisket: the deep chest reaching down to the elbows, behind the front legs; without it a
                # side view is a bar on four sticks ("horizontal bar", "stretcher" to ImageNet)
                np.array([x_front - 0.3 * L, yb - 0.22 * D, 0.0]),
                np.array([0.2 * L, 0.45 * D, 0.42 * W]),
            ),
            (
                np.array([-0.05 * L, yb + (1 - waist) * 0.25 * D, 0.0]),
                np.array([0.32 * L, 0.5 * waist * D, 0.43 * W]),
            ),
            (
                np.array([x_rear + 0.12 * L, yr + 0.02 * D, 0.0]),
                np.array([0.18 * L + 0.22 * D, 0.42 * D, 0.45 * W]),
            ),
        ]
        for zs in (1.0, -1.0):
            blobs.append(
                (
                    np.array([x_front - 0.16 * L, yb - 0.05 * D, zs * 0.2 * W]),
                    np.array([0.16 * L, 0.38 * D, 0.3 * W]),
                )
            )
            blobs.append(
                (
                    np.array([x_rear + 0.14 * L, yr - 0.12 * D, zs * 0.2 * W]),
                    np.array([0.2 * L, 0.36 * D, 0.32 * W]),
                )
            )
        k_blend = 0.18 * D

        def torso_sdf(p: np.ndarray) -> np.ndarray:
            d = geo.sdf_ellipsoid(p, *blobs[0])
            for c, r in blobs[1:]:
                d = geo.smooth_union(d, geo.sdf_ellipsoid(p, c, r), k_blend)
            return d

        torso = geo.axial_mesh(
            torso_sdf,
            [x_rear, yr, 0.0],
            [x_front, yb + 0.03 * D, 0.0],
            stations=self._seg(30),
            segments=self._seg(34),
            r_max=2.0 * (L + D),
        )
        self._add("torso", "body", torso)
        self.torso_sdf = torso_sdf

        # ---- neck -----------------------------------------------------------------------------------
        neck_base = np.array([x_front - 0.28 * D, H - 0.5 * D, 0.0])  # inside the chest: no visible seam
        ang = math.radians(a.neck_angle_deg)
        neck_len = a.neck_length_ratio * H
        neck_dir = np.array([math.cos(ang), math.sin(ang), 0.0])
        neck_end = neck_base + neck_dir * neck_len
        self._bone("neck", "body", neck_base)
        nr0 = a.neck_thickness * D * (1 + 0.35 * fluff)
        # The neck meets the skull almost at its full width (fur hides the narrowing of real necks).
        nr1 = min(nr0 * 0.95, 0.4 * a.skull_width_ratio * a.head_length * (1 + 0.3 * fluff))
        neck = geo.capsule_along(
            neck_base, neck_end, nr0, nr1, stations=self._seg(12), segments=self._seg(20)
        )
        self._add("neck", "neck", neck)

        # ---- head -----------------------------------------------------------------------------------
        self._bone("head", "neck", neck_end)
        self._build_head(neck_end, nr1)

        # ---- legs -----------------------------------------------------------------------------------
        fr = a.leg_thickness * D  # forearm radius
        for side, zs in (("l", 1.0), ("r", -1.0)):
            # Front: shoulder -> elbow -> wrist -> paw (vertical at rest).
            sh = np.array([x_front - 0.1 * L - 0.15 * D, H - 0.42 * D, zs * 0.30 * W])
            leg_len = sh[1]
            elbow = sh + np.array([-0.05 * D, -0.42 * leg_len, 0.0])
            wrist = np.array([elbow[0] + 0.03 * D, 0.16 * leg_len, sh[2]])
            paw_c = np.array([wrist[0] + 0.25 * fr, fr * self.a.paw_size * 0.85 * 0.62, sh[2]])
            self._leg(
                f"f{side}", ("shoulder", "elbow", "wrist"), [sh, elbow, wrist, paw_c], fr, upper_scale=2.0
            )
            # Hind: hip -> knee (stifle) -> hock -> paw.
            hip = np.array([x_rear + 0.12 * D, top_rear - 0.42 * D, zs * 0.30 * W])
            hh = hip[1]
            knee = hip + np.array([0.22 * hh, -0.40 * hh, 0.0])
            hock = np.array([knee[0] - 0.30 * hh, 0.26 * hh, hip[2]])
            paw_h = np.array([hock[0] + 0.06 * hh, fr * 1.05 * self.a.paw_size * 0.85 * 0.62, hip[2]])
            self._leg(
                f"h{side}", ("hip", "knee", "hock"), [hip, knee, hock, paw_h], fr * 1.05, upper_scale=2.5
            )

        # ---- tail -----------------------------------------------------------------------------------
        tail_base = np.array([x_rear - 0.02 * D, top_rear - 0.18 * D, 0.0])
        tl = a.tail_length_ratio * L
        seg_len = tl / TAIL_SEGMENTS
        tr0 = a.tail_thickness * D * 0.65 * (1 + 0.5 * fluff)
        parent = "body"
        pivot = tail_base
        carriage = math.radians(a.tail_carriage_deg)
        curl = math.radians(a.tail_curl_deg) / TAIL_SEGMENTS
        for i in range(TAIL_SEGMENTS):
            r0 = tr0 * (1.0 - 0.55 * i / TAIL_SEGMENTS)
            r1 = tr0 * (1.0 - 0.55 * (i + 1) / TAIL_SEGMENTS)
            if i == TAIL_SEGMENTS - 1:
                r1 *= 0.6
            # Rest: pointing straight back (-X); carriage and curl are rest rotations of the bones.
            rest = carriage if i == 0 else curl
            b = self._bone(f"tail{i}", parent, pivot, rest_pitch=-rest)
            end = pivot + np.array([-seg_len, 0.0, 0.0])
            seg = geo.capsule_along(pivot, end, r0, r1, stations=self._seg(8), segments=self._seg(12))
            self._add(f"tail{i}", b.name, seg)
            parent, pivot = b.name, end
        self.keypoints["tail_tip"] = (parent, np.array([-seg_len, 0.0, 0.0]), tr0 * 0.3)

    def _leg(
        self, leg: str, joints: tuple[str, str, str], pts: list[np.ndarray], r: float, upper_scale: float
    ) -> None:
        a = self.a
        parent = "body"
        radii = [
            (r * upper_scale * (1 + 0.3 * a.fluff), r * 1.15 * (1 + 0.2 * a.fluff)),
            (r * 1.25, r * 0.85),
            (r * 0.85, r * a.paw_size * 0.75),
        ]
        for k, jn in enumerate(joints):
            bone = f"{leg}_{jn}"
            self._bone(bone, parent, pts[k])
            r0, r1 = radii[k]
            # Upper segments are muscles: broad front-to-back, flatter side-to-side.
            seg = geo.capsule_along(
                pts[k],
                pts[k + 1],
                r0,
                r1,
                stations=self._seg(10 if k < 2 else 8),
                segments=self._seg(14),
                side=(1, 0, 0),
                flatten=0.72 if k == 0 else 0.92,
            )
            self._add(f"{leg}_{jn}", bone, seg)
            parent = bone
        # The paw: a rounded oval ahead of the wrist/hock segment's end.
        pr = r * a.paw_size * 0.85
        paw_c = pts[3]
        k = self._seg(10)
        path = np.stack(
            [
                np.linspace(paw_c[0] - 0.75 * pr, paw_c[0] + 1.1 * pr, k),
                np.full(k, paw_c[1]),
                np.full(k, paw_c[2]),
            ],
            -1,
        )
        prof = geo.rounded_profile(np.linspace(0, 1, k), 0.4, 0.5)
        paw = geo.sweep(path, pr * prof, 0.62 * pr * prof, segments=self._seg(14), exponent=2.2)
        self._add(f"{leg}_paw", parent, paw)
        self.keypoints[f"{leg}_paw"] = (
            parent,
            paw_c - self.bones[parent].pivot + np.array([0, -0.62 * pr, 0]),
            0.0,
        )

    def _build_head(self, joint: np.ndarray, neck_r: float) -> None:
        """Skull, muzzle, cheeks, eyes, nose and ears. The head surface is a smooth union of ellipsoids
        (cranium, muzzle, cheeks, chin, whisker pads, brows) meshed once from its signed distance."""
        a = self.a
        cat = a.species == "cat"
        HL = a.head_length
        SW = a.skull_width_ratio * HL
        SH = a.skull_height_ratio * SW
        MW = a.muzzle_width_ratio * SW
        MH = a.muzzle_height_ratio * SH
        mf = a.muzzle_frac
        ML = mf * HL  # muzzle length in front of the stop
        rx, ry, rz = 0.5 * (1.0 - mf) * HL * 1.08, 0.5 * SH, 0.5 * SW
        # Cranium centre: up and forward of the neck joint, so the neck enters the back of the skull.
        C = joint + np.array([0.45 * rx, 0.35 * ry, 0.0])
        x_tip = C[0] - rx + HL
        mrx = max(0.62 * ML, 0.3 * rx)
        m_c = np.array([x_tip - mrx, C[1] - ry + MH * 0.5 + 0.04 * SH, C[2]])
        m_r = np.array([mrx, 0.5 * MH, 0.5 * MW])
        ck = 1.0 + 0.35 * a.cheek
        parts = [
            ("cranium", C, np.array([rx, ry, rz])),
            ("muzzle", m_c, m_r),
        ]
        cheeks = [
            (
                C + np.array([0.25 * rx, (-0.25 if cat else -0.4) * ry, s * 0.5 * rz]),
                np.array([0.55 * rx, 0.5 * ry * ck, 0.5 * rz * ck]),
            )
            for s in (1.0, -1.0)
        ]
        # Cats: small whisker pads and chin under a face that narrows from the cheekbones; a heavy lower face
        # reads as a dog's muzzle (or a mask) to ImageNet.
        pad_r = 0.3 * MW * (1.0 + 0.3 * a.cheek * (not cat))
        pads = [
            (
                np.array([x_tip - 0.85 * pad_r, m_c[1] - 0.1 * MH, s * 0.42 * MW]),
                np.array([pad_r, pad_r * 0.85, pad_r]),
            )
            for s in (1.0, -1.0)
        ]
        chin = (
            np.array([x_tip - 1.3 * mrx, m_c[1] - (0.32 if cat else 0.42) * MH, C[2]]),
            np.array([0.7 * mrx, 0.28 * MH, 0.36 * MW]) * (0.75 if cat else 1.0),
        )
        brows = [
            (C + np.array([0.62 * rx, 0.35 * ry, s * 0.38 * rz]), np.array([0.34 * rx, 0.3 * ry, 0.32 * rz]))
            for s in (1.0, -1.0)
        ]
        k_muzzle = (0.5 - 0.35 * a.stop) * min(MH, MW)

        def sdf(p: np.ndarray) -> np.ndarray:
            d = geo.sdf_ellipsoid(p, C, parts[0][2])
            d = geo.smooth_union(d, geo.sdf_ellipsoid(p, m_c, m_r), k_muzzle)
            for c, r in cheeks:
                d = geo.smooth_union(d, geo.sdf_ellipsoid(p, c, r), 0.25 * rz)
            for c, r in pads:
                d = geo.smooth_union(d, geo.sdf_ellipsoid(p, c, r), 0.35 * pad_r)
            d = geo.smooth_union(d, geo.sdf_ellipsoid(p, *chin), 0.3 * MH)
            if a.stop > 0.2:
                for c, r in brows:
                    d = geo.smooth_union(d, geo.sdf_ellipsoid(p, c, r * (0.7 + 0.3 * a.stop)), 0.3 * ry)
            return d

        centre = C + np.array([0.25 * rx, -0.2 * ry, 0.0])
        r_max = 1.6 * max(HL, SW, SH)
        head = geo.star_mesh(sdf, centre, r_max=r_max, rows=self._seg(34), cols=self._seg(40))
        self._add("head", "head", head)
        stop_x = x_tip - ML
        self.head_info = dict(
            C=C,
            rx=rx,
            ry=ry,
            rz=rz,
            x_tip=x_tip,
            stop_x=stop_x,
            SW=SW,
            SH=SH,
            HL=HL,
            MH=MH,
            MW=MW,
            muzzle_c=m_c,
            muzzle_r=m_r,
        )
        self._head_sdf = sdf

        # ---- eyes: on the front of the cranium, looking forward (cats) or forward-out (dogs) -------------
        er = a.eye_size * SW
        for side, zs in (("l", 1.0), ("r", -1.0)):
            aim = np.array([C[0] + rx, C[1] + (0.12 if cat else 0.2) * ry, zs * a.eye_spacing * rz * 0.95])
            surface = geo.ray_to_surface(sdf, C, aim - C, r_max)
            gaze = np.array([0.35 + 1.1 * a.eye_forward, 0.1, zs * (1.2 - a.eye_forward)])
            gaze /= np.linalg.norm(gaze)
            centre_e = surface - gaze * 0.62 * er  # set into the face: a bulging eyeball reads as a toy
            eye = geo.uv_sphere(er, rows=self._seg(12), cols=self._seg(16), axis="x")
            eye.apply_transform(_align_x_to(gaze))
            eye.apply_translation(centre_e)
            self._add(f"eye_{side}", "head", eye, kind="eye")
            self.keypoints[f"eye_{side}"] = ("head", centre_e - self.bones["head"].pivot, er)

        # ---- nose: on the front of the muzzle, upper half ---------------------------------------------------
        nw = MW * (0.52 if not cat else 0.3)
        nh = MH * (0.36 if not cat else 0.2)
        nd = nw * (0.5 if not cat else 0.35)
        ny = m_c[1] + (0.22 if not cat else 0.28) * MH
        front = geo.ray_to_surface(sdf, np.array([m_c[0], ny, C[2]]), [1.0, 0.0, 0.0], r_max)
        k = 8
        npath = np.stack(
            [np.linspace(front[0] - nd, front[0] + 0.25 * nd, k), np.full(k, ny), np.full(k, C[2])], -1
        )
        nprof = geo.rounded_profile(np.linspace(0, 1, k), 0.3, 0.55)
        nt = np.linspace(0.0, 2 * np.pi, 16, endpoint=False)
        # Ring angle pi/2 points down here: noses are narrower below (cats: a triangle pointing down).
        nrad = np.ones((k, 16)) * (1 - (0.4 if cat else 0.15) * np.clip(np.sin(nt), 0, 1))[None]
        nose = geo.sweep(npath, nw / 2 * nprof, nh / 2 * nprof, segments=16, exponent=2.4, radial=nrad)
        self._add("nose", "head", nose, kind="nose")

        # ---- open mouth (dogs): a dark gap along the lips and a hanging tongue, shown only in poses that
        # pant (`pose["mouth_open"]`). Panting is a common dog expression in photos, and open-mouthed dogs were
        # among the real photos a render-trained classifier missed (its measured effect: docs/benchmarks.md).
        if not cat:
            lip_y = m_c[1] - 0.4 * MH
            gap = geo.uv_sphere(1.0, rows=self._seg(10), cols=self._seg(16), axis="x")
            gap.apply_scale([0.9 * mrx, 0.1 * MH, 0.56 * MW])
            gap.apply_translation([x_tip - 1.0 * mrx, lip_y, C[2]])
            self._add("mouth", "head", gap, kind="mouth")
            tl = 0.45 * ML + 0.2 * MH  # tongue length, lips to tip along its curve
            tt = np.linspace(0.0, 1.0, 10)
            # From inside the mouth forward over the lower lip, then hanging down.
            ang = np.radians(-5 - 75 * tt**1.5)
            seg = tl / (len(tt) - 1)
            x0 = x_tip - 0.45 * mrx
            path = np.stack(
                [
                    x0 + np.concatenate([[0.0], np.cumsum(np.cos(ang[:-1]) * seg)]),
                    lip_y - 0.02 * MH + np.concatenate([[0.0], np.cumsum(np.sin(ang[:-1]) * seg)]),
                    np.full(len(tt), C[2]),
                ],
                -1,
            )
            prof = geo.rounded_profile(tt, 0.0, 0.3)
            width = 0.24 * MW * (0.85 + 0.15 * np.sin(np.pi * tt)) * np.maximum(prof, 0.05)
            thick = 0.07 * MW * np.maximum(prof, 0.2)
            tongue = geo.sweep(path, width, thick, segments=16, exponent=2.6, cap_start=True)
            self._add("tongue", "head", tongue, kind="tongue")

        # ---- whiskers (cats): thin white tapered hairs fanning out from the whisker pads --------------------
        if cat:
            hairs = []
            wl = 0.62 * HL
            for zs in (1.0, -1.0):
                root = np.array([x_tip - 0.7 * pad_r, m_c[1] - 0.05 * MH, zs * 0.55 * MW])
                for j in range(6):
                    yaw = math.radians(50 + 9 * j)  # from straight ahead towards the side
                    dip = math.radians(-12 + 7 * j)
                    d = np.array(
                        [math.cos(yaw) * math.cos(dip), math.sin(dip), zs * math.sin(yaw) * math.cos(dip)]
                    )
                    k = 6
                    tt = np.linspace(0.0, 1.0, k)
                    # A gentle downward arc.
                    path = (
                        root[None]
                        + (d[None] * tt[:, None] - np.array([0, 0.18, 0])[None] * tt[:, None] ** 2) * wl
                    )
                    path = path + (root - path[0])
                    rad = 0.0007 * (1.0 - 0.85 * tt) + 0.0001
                    hairs.append(geo.sweep(path, rad, rad, segments=3, side=(0.0, 1.0, 0.0)))
            self._add("whiskers", "head", trimesh.util.concatenate(hairs), kind="whisker")

        # ---- ears -------------------------------------------------------------------------------------
        el = a.ear_length * HL
        ew = a.ear_width * el
        phi = math.radians(20 + 62 * a.ear_set)  # from the top of the skull towards its side
        for side, zs in (("l", 1.0), ("r", -1.0)):
            d = np.array([-0.15 * rx, math.cos(phi) * ry, zs * math.sin(phi) * rz])
            surf = geo.ray_to_surface(sdf, C, d, r_max)
            base = surf - 0.15 * (surf - C)
            self._bone(f"ear_{side}", "head", base)
            ear = self._ear(el, ew, zs)
            ear.apply_translation(base)
            self._add(f"ear_{side}", f"ear_{side}", ear)

    def _ear(self, el: float, ew: float, zs: float) -> trimesh.Trimesh:
        """An ear in the ear-bone frame (base at the origin). Erect ears are cupped triangles facing forward
        and a little outward; floppy ears fold outwards at the base and hang against the side of the head."""
        a = self.a
        n = self._seg(14)
        m = self._seg(16)
        t = np.linspace(0.0, 1.0, n)
        flop = a.ear_floppiness
        tilt = math.radians(a.ear_tilt_deg)
        # Bend from vertical towards the outside; floppy ears fold over near the base then hang.
        ang = tilt + flop * (2.85 * np.clip(t / 0.18, 0, 1) + 0.35 * np.clip(t - 0.18, 0, 1))
        seg = el / (n - 1)
        y = np.concatenate([[0.0], np.cumsum(np.cos(ang[:-1]) * seg)])
        z = np.concatenate([[0.0], np.cumsum(np.sin(ang[:-1]) * seg)]) * zs
        x = -0.12 * el * t * (1 - flop) - 0.08 * el * flop * t
        path = np.stack([x, y, z], -1)
        # Width: pointed triangle to rounded leaf.
        r = a.ear_roundness
        pointed = 1.0 - t
        rounded = np.sqrt(np.clip(1.0 - t**2, 0.0, 1.0)) * (1.0 - 0.25 * t)
        width = (
            ew / 2 * np.maximum((1 - r) * pointed + r * rounded, 0.03) * (1 + 0.25 * flop * np.sin(np.pi * t))
        )
        thick = np.maximum(0.07 * ew * (1 - 0.7 * t), 0.012 * ew) * (1 + 0.4 * a.fluff)
        theta = np.linspace(0.0, 2 * np.pi, m, endpoint=False)
        # The ear's broad face points forward for erect ears and outward for hanging ones.
        # Face normal (cos g, 0, zs sin g): forward for erect ears, outward for hanging ones; width axis
        # perpendicular to it in the horizontal plane.
        g = 0.35 + 1.1 * flop
        w_axis = np.array([-zs * math.sin(g), 0.0, math.cos(g)])
        _, sides, ups = geo.transport_frames(path, side=w_axis)
        ring_w = width[:, None] * np.cos(theta)[None]
        # Cupped: the edges curl towards the front of the ear (erect ears), shallower when hanging.
        cup = 0.3 * (1 - 0.6 * flop)
        ring_h = thick[:, None] * np.sin(theta)[None] + cup * width[:, None] * (np.cos(theta)[None] ** 2)
        rings = path[:, None, :] + ring_w[..., None] * sides[:, None, :] + ring_h[..., None] * ups[:, None, :]
        rings[0] = path[0] + 0.7 * (rings[0] - path[0]) - np.array([0, 0.12 * el, 0])
        return geo.loft(rings)

    # -- pose ------------------------------------------------------------------------------------------
    def _fk_tables(self) -> None:
        """Per-bone parent index and offset, per-part corners: precomputed once for fast posing."""
        names = list(self.bones)
        self._bone_index = {n: i for i, n in enumerate(names)}
        self._fk = [
            (
                n,
                -1 if b.parent is None else self._bone_index[b.parent],
                b.pivot if b.parent is None else b.pivot - self.bones[b.parent].pivot,
                (b.rest_yaw, b.rest_pitch, b.rest_roll),
                (f"{n}.yaw", f"{n}.pitch", f"{n}.roll"),
            )
            for n, b in self.bones.items()
        ]
        self._corners = np.stack([trimesh.bounds.corners(pg.mesh.bounds) for pg in self.parts])  # P x 8 x 3
        self._part_bone = np.array([self._bone_index[pg.bone] for pg in self.parts])
        self._part_names = [pg.name for pg in self.parts]
        self._masks: dict[tuple[str, ...] | None, np.ndarray] = {}

    def _pose_rt(self, pose: dict[str, float]) -> tuple[np.ndarray, np.ndarray]:
        """World rotations (B x 3 x 3) and translations (B x 3) of every bone."""
        if not hasattr(self, "_fk"):
            self._fk_tables()
        n = len(self._fk)
        rots = np.empty((n, 3, 3))
        trans = np.empty((n, 3))
        get = pose.get
        for i, (_name, parent, offset, (ry, rz, rx), (k_yaw, k_pitch, k_roll)) in enumerate(self._fk):
            yaw = ry + get(k_yaw, 0.0)
            pitch = rz + get(k_pitch, 0.0)
            roll = rx + get(k_roll, 0.0)
            if yaw == 0.0 and pitch == 0.0 and roll == 0.0:
                if parent < 0:
                    rots[i] = np.eye(3)
                    trans[i] = offset
                else:
                    rots[i] = rots[parent]
                    trans[i] = trans[parent] + rots[parent] @ offset
                continue
            cy, sy = math.cos(yaw), math.sin(yaw)
            cz, sz = math.cos(pitch), math.sin(pitch)
            cx, sx = math.cos(roll), math.sin(roll)
            # Ry @ Rz @ Rx in closed form.
            r = np.array(
                [
                    [cy * cz, -cy * sz * cx + sy * sx, cy * sz * sx + sy * cx],
                    [sz, cz * cx, -cz * sx],
                    [-sy * cz, sy * sz * cx + cy * sx, -sy * sz * sx + cy * cx],
                ]
            )
            if parent < 0:
                rots[i] = r
                trans[i] = offset
            else:
                rots[i] = rots[parent] @ r
                trans[i] = trans[parent] + rots[parent] @ offset
        return rots, trans

    def bone_transforms(self, pose: dict[str, float]) -> dict[str, np.ndarray]:
        """World (subject-frame) 4x4 transform of every bone for a pose (joint values are added to rest)."""
        rots, trans = self._pose_rt(pose)
        out: dict[str, np.ndarray] = {}
        for i, (name, *_rest) in enumerate(self._fk):
            m = np.eye(4)
            m[:3, :3] = rots[i]
            m[:3, 3] = trans[i]
            out[name] = m
        return out

    def keypoint_heights(self, pose: dict[str, float]) -> dict[str, float]:
        rots, trans = self._pose_rt(pose)
        out = {}
        for k, (bone, pt, r) in self.keypoints.items():
            i = self._bone_index[bone]
            out[k] = float(rots[i][1] @ pt + trans[i][1] - r)
        return out

    def lowest_y(self, pose: dict[str, float], names: list[str] | None = None) -> float:
        """Lowest point of the posed parts (all but the mouth, or the named ones), from each part's bounding
        box corners. A hanging tongue never lifts the animal off the ground."""
        rots, trans = self._pose_rt(pose)
        key = tuple(names) if names is not None else None
        sel = self._masks.get(key)
        if sel is None:
            wanted = names if names is not None else [n for n in self._part_names if n not in MOUTH_PARTS]
            sel = self._masks[key] = np.isin(self._part_names, wanted)
        bones = self._part_bone[sel]
        # y of every corner: row 1 of each part's bone rotation dotted with the corners, plus its y offset.
        y = np.einsum("pj,pkj->pk", rots[bones, 1, :], self._corners[sel]) + trans[bones, 1][:, None]
        return float(y.min()) if y.size else float("inf")


def _align_x_to(d: np.ndarray) -> np.ndarray:
    """Rotation (4x4) taking +X to the unit vector d."""
    x = np.array([1.0, 0.0, 0.0])
    d = d / np.linalg.norm(d)
    v = np.cross(x, d)
    s = np.linalg.norm(v)
    c = float(np.dot(x, d))
    m = np.eye(4)
    if s < 1e-9:
        if c < 0:
            m[:3, :3] = np.diag([-1.0, -1.0, 1.0])
        return m
    vx = np.array([[0, -v[2], v[1]], [v[2], 0, -v[0]], [-v[1], v[0], 0]])
    m[:3, :3] = np.eye(3) + vx + vx @ vx * ((1 - c) / s**2)
    return m


# ---------------------------------------------------------------------------------------------- poses


def _legs(pose: dict[str, float], leg: str, a: float, b: float, c: float, roll: float = 0.0) -> None:
    j = ("shoulder", "elbow", "wrist") if leg[0] == "f" else ("hip", "knee", "hock")
    pose[f"{leg}_{j[0]}.pitch"] = a
    pose[f"{leg}_{j[1]}.pitch"] = b
    pose[f"{leg}_{j[2]}.pitch"] = c
    if roll:
        pose[f"{leg}_{j[0]}.roll"] = roll


def sample_quadruped_pose(
    model: QuadrupedModel, rng: np.random.Generator, family: str | None = None
) -> dict[str, Any]:
    """A plausible random pose within the joint limits. `family` forces one of POSE_FAMILIES."""
    cat = model.a.species == "cat"
    if family is None:
        weights = [0.26, 0.16, 0.26, 0.18, 0.08, 0.06] if cat else [0.34, 0.2, 0.24, 0.12, 0.04, 0.06]
        family = str(rng.choice(POSE_FAMILIES, p=np.array(weights) / sum(weights)))
    pose: dict[str, Any] = {}
    u = rng.uniform

    if family == "stand":
        p = u(-0.06, 0.06)
        pose["body.pitch"] = p
        for leg in ("fl", "fr"):
            _legs(pose, leg, -p + u(-0.12, 0.12), u(0.0, 0.1), u(-0.1, 0.05), u(-0.03, 0.08))
        for leg in ("hl", "hr"):
            _legs(pose, leg, -p + u(-0.15, 0.15), u(-0.15, 0.1), u(-0.1, 0.15), u(-0.03, 0.08))
    elif family == "walk":
        ph = u(0, 2 * np.pi)
        amp = u(0.25, 0.45)
        pose["body.pitch"] = u(-0.04, 0.04)
        for leg, off in (("fl", 0.0), ("hr", 0.0), ("fr", np.pi), ("hl", np.pi)):
            s = math.sin(ph + off)
            lift = max(0.0, math.cos(ph + off))
            if leg[0] == "f":
                _legs(pose, leg, amp * s, 0.6 * lift, -1.1 * lift)
            else:
                _legs(pose, leg, amp * s, -0.7 * lift, 0.7 * lift)
    elif family == "sit":
        # Rump on the ground, front legs straight down, hind feet planted beside the rump.
        for leg in ("hl", "hr"):
            _legs(pose, leg, u(1.3, 1.7), u(-2.5, -2.1), 1.5, u(0.1, 0.35))
        spread = u(-0.12, 0.12)

        def build(pitch: float) -> dict[str, Any]:
            q = dict(pose)
            q["body.pitch"] = pitch
            for leg in ("fl", "fr"):
                _legs(q, leg, -pitch + spread, 0.0, 0.0)
            return q

        pose = _solve_pitch(model, build, ("fl_paw", "fr_paw"), lo=0.35, hi=1.05, rest=("torso",))
        floor = model.lowest_y(pose, ["torso"])
        for leg in ("hl", "hr"):
            _plant(model, pose, f"{leg}_hock.pitch", f"{leg}_paw", floor)
    elif family == "sphinx":
        pose["body.pitch"] = u(-0.05, 0.05)
        for leg in ("fl", "fr"):
            _legs(pose, leg, u(-0.9, -0.6), u(1.9, 2.35), u(-0.3, 0.2))
        for leg in ("hl", "hr"):
            _legs(pose, leg, u(1.2, 1.5), u(-2.6, -2.3), u(2.2, 2.7), u(0.2, 0.4))
    elif family == "side":
        r = float(rng.choice([-1.0, 1.0])) * u(1.2, 1.45)
        pose["body.roll"] = r
        for leg in ("fl", "fr"):
            _legs(pose, leg, u(-0.2, 0.8), u(0.0, 1.2), u(-0.8, 0.0))
        for leg in ("hl", "hr"):
            _legs(pose, leg, u(-0.3, 0.7), u(-1.0, 0.0), u(0.0, 0.8))
        pose["neck.yaw"] = 0.0
    elif family == "bow":
        pr = u(0.9, 1.3)

        def build(pitch: float) -> dict[str, Any]:
            q = dict(pose)
            q["body.pitch"] = pitch
            for leg in ("fl", "fr"):
                _legs(q, leg, pr, u_el, -0.2)
            for leg in ("hl", "hr"):
                _legs(q, leg, -pitch, 0.0, 0.0)
            return q

        u_el = u(0.6, 1.0)
        pose = _solve_pitch(model, build, ("fl_paw", "fr_paw"), lo=-0.45, hi=0.0)
        pose["tail0.pitch"] = u(-0.6, -0.2)
    else:
        raise ValueError(f"unknown pose family {family!r}; known: {POSE_FAMILIES}")

    # Looking around: neck and head, everywhere.
    pose["neck.pitch"] = pose.get("neck.pitch", 0.0) + u(-0.35, 0.3) - 0.6 * pose.get("body.pitch", 0.0)
    pose["neck.yaw"] = pose.get("neck.yaw", 0.0) + u(-0.45, 0.45)
    pose["head.pitch"] = u(-0.35, 0.35) - 0.4 * pose.get("body.pitch", 0.0)
    pose["head.yaw"] = u(-0.6, 0.6)
    pose["head.roll"] = u(-0.25, 0.25)
    if pose.get("body.roll"):
        pose["head.roll"] = -0.6 * pose["body.roll"]
    for s in ("l", "r"):
        pose[f"ear_{s}.pitch"] = u(-0.3, 0.25)
        pose[f"ear_{s}.roll"] = u(-0.2, 0.35)
    # Tail: a random wag/curve on top of the breed's carriage.
    wag = u(-0.25, 0.25)
    lift = u(-0.25, 0.25)
    for i in range(TAIL_SEGMENTS):
        pose[f"tail{i}.pitch"] = pose.get(f"tail{i}.pitch", 0.0) + lift / (i + 1) + u(-0.12, 0.12)
        pose[f"tail{i}.yaw"] = wag + u(-0.15, 0.15)
    pose = clip_pose(pose)
    _lift_tail(model, pose)
    pose["family"] = family
    if not cat:
        pose["mouth_open"] = bool(rng.random() < PANT_PROBABILITY)
    return pose


def _solve_pitch(
    model: QuadrupedModel,
    build,
    front: tuple[str, ...],
    lo: float,
    hi: float,
    rest: tuple[str, ...] | None = None,
) -> dict[str, Any]:
    """Bisect the body pitch so the front paws touch the ground at the height of the rest of the body (or
    of the `rest` parts)."""
    others = (
        list(rest)
        if rest
        else [pg.name for pg in model.parts if not pg.name.startswith(("fl_", "fr_", "tail"))]
    )

    def gap(p: float) -> float:
        q = clip_pose(build(p))
        kh = model.keypoint_heights(q)
        return min(kh[k] for k in front) - model.lowest_y(q, others)

    g_lo, g_hi = gap(lo), gap(hi)
    if g_lo * g_hi > 0:
        return clip_pose(build(lo if abs(g_lo) < abs(g_hi) else hi))
    for _ in range(14):
        mid = 0.5 * (lo + hi)
        g = gap(mid)
        if (g < 0) == (g_lo < 0):
            lo, g_lo = mid, g
        else:
            hi = mid
    return clip_pose(build(0.5 * (lo + hi)))


def _plant(model: QuadrupedModel, pose: dict[str, Any], joint: str, paw: str, floor: float) -> None:
    """Set one joint (within its limits) so the paw's sole comes closest to height `floor`."""
    lo, hi = JOINT_LIMITS[joint]
    best, best_err = pose.get(joint, 0.0), np.inf
    for v in np.linspace(lo, hi, 15):
        pose[joint] = float(v)
        err = abs(model.keypoint_heights(pose)[paw] - floor)
        if err < best_err:
            best, best_err = float(v), err
    pose[joint] = best


def _lift_tail(model: QuadrupedModel, pose: dict[str, Any]) -> None:
    """Raise the tail (within its limits) when it would poke below the feet, which would lift the whole
    animal off the ground when the renderer re-grounds it. Tail bones point backwards, so a negative pitch
    raises their far end."""
    body_parts = [pg.name for pg in model.parts if not pg.name.startswith("tail")]
    floor = model.lowest_y(pose, body_parts)
    tail_parts = [f"tail{i}" for i in range(TAIL_SEGMENTS)]
    for _ in range(12):
        if model.lowest_y(pose, tail_parts) >= floor - 1e-3:
            return
        for i in range(TAIL_SEGMENTS):
            k = f"tail{i}.pitch"
            pose[k] = float(max(pose.get(k, 0.0) - 0.12, JOINT_LIMITS[k][0]))


# ---------------------------------------------------------------------------------------------- subject


class QuadrupedSubject(Subject):
    """A procedural cat or dog of one breed. Geometry and coat are built lazily and cached."""

    source = "procedural"
    head_parts = ("head", "nose", "eye_l", "eye_r", "ear_l", "ear_r")

    def __init__(
        self, *, class_name: str, breed: str, anatomy: Anatomy, coat, seed: int, id_suffix: str | None = None
    ):
        self.class_name = class_name
        self.breed = breed
        self.id = f"{class_name}/procedural/{id_suffix or breed}"
        self.anatomy = anatomy
        self.coat = coat
        self.seed = int(seed)
        self._model: QuadrupedModel | None = None
        self._materials: dict[str, SurfaceMaterial] | None = None
        self._meshes: dict[str, trimesh.Trimesh] | None = None
        self._lock = threading.Lock()

    # Model, meshes and coat are baked together once per subject (~0.3 s), or loaded from the on-disk
    # cache (drsynth.subjects.bake_cache, ~0.03 s).
    @property
    def model(self) -> QuadrupedModel:
        if self._model is None:
            self._ensure_built()
        assert self._model is not None
        return self._model

    def _ensure_built(self) -> None:
        with self._lock:
            if self._meshes is not None:
                return
            from drsynth.subjects.bake_cache import bake_quadruped

            self._model, self._meshes, self._materials = bake_quadruped(self)

    def describe(self) -> dict[str, Any]:
        d = super().describe()
        d["pattern"] = self.coat.pattern
        return d

    def default_pose(self) -> Pose:
        return {"family": "default"}

    def sample_pose(self, rng: np.random.Generator) -> Pose:
        return sample_quadruped_pose(self.model, rng)

    def parts(self, pose: Pose) -> list[Part]:
        self._ensure_built()
        assert self._meshes is not None and self._materials is not None
        model = self.model
        tf = model.bone_transforms({k: float(v) for k, v in pose.items() if k in JOINT_LIMITS})
        out = []
        mouth_open = bool(pose.get("mouth_open", False))
        for pg in model.parts:
            if pg.name in MOUTH_PARTS and not mouth_open:
                continue
            out.append(
                Part(
                    key=f"{self.id}#{pg.name}",
                    mesh=self._meshes[pg.name],
                    transform=tf[pg.bone],
                    material=self._materials[pg.kind],
                    texturable=pg.kind == "fur",
                    fur_scale=FUR_SCALE.get(pg.name, 1.0),
                )
            )
        return out
