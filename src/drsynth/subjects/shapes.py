"""Closed mesh building blocks for the vehicle generators: grids of rings, solids of revolution, slabs,
thin prisms, and projecting outlines onto a body.

Everything is pure numpy + trimesh, deterministic, in metres. Every mesh here is closed (watertight once
its seam duplicates are merged) and carries UVs and smooth vertex normals, so the renderer can texture it
and never has to compute normals itself.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import trimesh


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), 1e-12)


def smooth_normals(verts: np.ndarray, faces: np.ndarray, decimals: int = 6) -> np.ndarray:
    """Area-weighted vertex normals in which coincident vertices (UV seams, poles) share one normal."""
    key = np.round(verts, decimals)
    _, inverse = np.unique(key, axis=0, return_inverse=True)
    inverse = inverse.reshape(-1)
    tri = verts[faces]
    fn = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    acc = np.zeros((int(inverse.max()) + 1, 3))
    for k in range(3):
        np.add.at(acc, inverse[faces[:, k]], fn)
    return _unit(acc)[inverse]


# One shared placeholder: trimesh would otherwise build a new default material (with an image) per mesh.
_NO_MATERIAL = trimesh.visual.material.empty_material()


def make_mesh(verts: np.ndarray, faces: np.ndarray, uv: np.ndarray, normals: np.ndarray | None = None):
    """A Trimesh with UVs and (smooth, seam-welded) vertex normals, left exactly as given."""
    verts = np.asarray(verts, dtype=np.float64)
    faces = np.asarray(faces, dtype=np.int64)
    if normals is None:
        normals = smooth_normals(verts, faces)
    return trimesh.Trimesh(
        verts,
        faces,
        vertex_normals=normals,
        visual=trimesh.visual.TextureVisuals(uv=np.asarray(uv, dtype=np.float64), material=_NO_MATERIAL),
        process=False,
    )


def _signed_volume(verts: np.ndarray, faces: np.ndarray) -> float:
    tri = verts[faces]
    return float(np.einsum("ij,ij->i", tri[:, 0], np.cross(tri[:, 1], tri[:, 2])).sum() / 6.0)


def ring_surface(
    rings: np.ndarray,
    *,
    closed_rows: bool = False,
    cap_start: bool = True,
    cap_end: bool = True,
    v_coords: np.ndarray | None = None,
) -> trimesh.Trimesh:
    """A closed surface through `rings` (n x m x 3: n stations of m points, each ring a closed loop).

    closed_rows: the last station joins the first (a torus); otherwise the ends are closed by fans to each
    end ring's centroid when cap_start / cap_end. UVs: u round the ring, v along the stations (or
    `v_coords`, one per station). Faces are oriented outwards.
    """
    rings = np.asarray(rings, dtype=np.float64)
    if closed_rows:
        rings = np.concatenate([rings, rings[:1]], axis=0)
        cap_start = cap_end = False
    n, m, _ = rings.shape
    grid = np.concatenate([rings, rings[:, :1]], axis=1).reshape(-1, 3)
    gidx = np.arange(n * (m + 1)).reshape(n, m + 1)
    a, b, c, d = gidx[:-1, :-1], gidx[1:, :-1], gidx[1:, 1:], gidx[:-1, 1:]
    faces = [np.stack([a, c, b], -1).reshape(-1, 3), np.stack([a, d, c], -1).reshape(-1, 3)]
    vs = np.linspace(0.0, 1.0, n) if v_coords is None else np.asarray(v_coords, dtype=np.float64)
    us = np.linspace(0.0, 1.0, m + 1)
    verts = [grid]
    uv = [np.stack(np.meshgrid(us, vs), -1).reshape(-1, 2)]
    base = len(grid)
    for row, at_start, wanted in ((0, True, cap_start), (n - 1, False, cap_end)):
        if not wanted:
            continue
        verts.append(np.repeat(rings[row].mean(axis=0)[None], m, 0))
        uv.append(np.stack([(np.arange(m) + 0.5) / m, np.full(m, vs[row])], -1))
        r = gidx[row]
        poles = base + np.arange(m)
        faces.append(
            np.stack([poles, r[1:], r[:-1]], -1) if at_start else np.stack([poles, r[:-1], r[1:]], -1)
        )
        base += m
    verts = np.concatenate(verts)
    faces = np.concatenate(faces)
    if _signed_volume(verts, faces) < 0:
        faces = faces[:, ::-1]
    return make_mesh(verts, faces, np.concatenate(uv))


def revolve(
    profile: np.ndarray,
    *,
    segments: int = 32,
    closed_profile: bool = True,
    angles: np.ndarray | None = None,
) -> trimesh.Trimesh:
    """A solid of revolution about the z axis from a profile of (radius, z) points.

    closed_profile: the profile is a closed loop (a ring such as a tyre or rim); otherwise it runs from one
    end to the other and both ends are capped (give them a small radius). `angles` overrides the evenly
    spaced ring angles (e.g. to place teeth). UVs: u round the axis, v along the profile.
    """
    profile = np.asarray(profile, dtype=np.float64)
    th = np.linspace(0.0, 2 * np.pi, segments, endpoint=False) if angles is None else np.asarray(angles)
    r = profile[:, 0:1]
    rings = np.stack([r * np.cos(th)[None], r * np.sin(th)[None], np.repeat(profile[:, 1:2], len(th), 1)], -1)
    return ring_surface(rings, closed_rows=closed_profile)


def torus_ring(radial_profile: np.ndarray, radii: np.ndarray, z: np.ndarray) -> trimesh.Trimesh:
    """A ring about the z axis whose cross-section varies with angle.

    radial_profile: (k, 2) closed cross-section as (dr, dz) offsets; radii (s,) and z (s,) give the section
    centre at each of s angles evenly spaced round the axis (so a chainring can carry teeth).
    """
    s = len(radii)
    th = np.linspace(0.0, 2 * np.pi, s, endpoint=False)
    rr = radii[None, :] + radial_profile[:, 0:1]
    zz = z[None, :] + radial_profile[:, 1:2]
    rings = np.stack([rr * np.cos(th)[None], rr * np.sin(th)[None], zz], -1)
    return ring_surface(rings, closed_rows=True)


def superellipse(n: int, a: float, b: float, exponent: float = 2.0) -> np.ndarray:
    """n points (x, y) on |x/a|^e + |y/b|^e = 1, counter-clockwise from +x."""
    t = np.linspace(0.0, 2 * np.pi, n, endpoint=False)
    c, s = np.cos(t), np.sin(t)
    return np.stack(
        [a * np.sign(c) * np.abs(c) ** (2 / exponent), b * np.sign(s) * np.abs(s) ** (2 / exponent)], -1
    )


def sweep_section(
    path: np.ndarray,
    section: np.ndarray,
    *,
    scale: np.ndarray | None = None,
    up: Sequence[float] = (0.0, 1.0, 0.0),
    caps: bool = True,
) -> trimesh.Trimesh:
    """Sweep a closed 2-D section (k x 2, in the (side, normal) plane) along a polyline path (n x 3).

    Frames are rotation-minimising, starting with the section's second axis as close to `up` as possible.
    scale (n,) or (n, 2) scales the section per station.
    """
    path = np.asarray(path, dtype=np.float64)
    n = len(path)
    t = _unit(np.gradient(path, axis=0))
    up0 = np.asarray(up, dtype=np.float64)
    u = up0 - t[0] * (t[0] @ up0)
    if np.linalg.norm(u) < 1e-6:
        u = np.cross(t[0], [0.0, 0.0, 1.0]) if abs(t[0][2]) < 0.9 else np.cross(t[0], [1.0, 0.0, 0.0])
    ups = np.empty_like(path)
    ups[0] = _unit(u)
    for i in range(1, n):
        w = ups[i - 1] - t[i] * (t[i] @ ups[i - 1])
        ups[i] = _unit(w) if np.linalg.norm(w) > 1e-9 else ups[i - 1]
    sides = np.cross(ups, t)
    sc = (
        np.ones((n, 2))
        if scale is None
        else np.broadcast_to(np.asarray(scale, dtype=np.float64).reshape(n, -1), (n, 2))
    )
    sec = np.asarray(section, dtype=np.float64)
    rings = (
        path[:, None, :]
        + (sec[None, :, 0:1] * sc[:, None, 0:1]) * sides[:, None, :]
        + (sec[None, :, 1:2] * sc[:, None, 1:2]) * ups[:, None, :]
    )
    return ring_surface(rings, cap_start=caps, cap_end=caps)


def tube(
    path: np.ndarray, radius: float | np.ndarray, *, sides: int = 10, up=(0.0, 1.0, 0.0)
) -> trimesh.Trimesh:
    """A round tube of (per-station) radius along a polyline, capped."""
    n = len(path)
    r = np.broadcast_to(np.asarray(radius, dtype=np.float64), (n,))
    return sweep_section(path, superellipse(sides, 1.0, 1.0), scale=np.stack([r, r], -1), up=up)


def rounded_box(extents: Sequence[float], radius: float, *, center=(0.0, 0.0, 0.0), exponent: float = 6.0):
    """A box with rounded edges (superellipse sections swept along x, ends rounded), extents (x, y, z)."""
    ex, ey, ez = (float(e) for e in extents)
    r = min(radius, 0.49 * min(ex, ey, ez))
    # Stations along x: each end rounds over r (the section shrinks by `inset`), flat in between.
    a = np.linspace(0.0, np.pi / 2, 5)
    xs = np.concatenate([-ex / 2 + r * (1 - np.cos(a)), (ex / 2 - r * (1 - np.cos(a)))[::-1]])
    inset_1d = r * (1 - np.sin(a))
    inset_all = np.concatenate([inset_1d, inset_1d[::-1]])
    sec = superellipse(24, ez / 2, ey / 2, exponent)
    rings = np.zeros((len(xs), len(sec), 3))
    rings[:, :, 0] = xs[:, None]
    inset = inset_all[:, None]
    # Shrink by scaling (not clipping) so no two ring points ever coincide.
    rings[:, :, 2] = sec[None, :, 0] * (1 - inset / (ez / 2))
    rings[:, :, 1] = sec[None, :, 1] * (1 - inset / (ey / 2))
    mesh = ring_surface(rings)
    mesh.apply_translation(center)
    return mesh


def box(extents: Sequence[float], *, center=(0.0, 0.0, 0.0)) -> trimesh.Trimesh:
    """An axis-aligned box with box-projected UVs (24 vertices so faces stay flat)."""
    m = trimesh.creation.box(extents=extents)
    verts = m.vertices[m.faces].reshape(-1, 3)
    faces = np.arange(len(verts)).reshape(-1, 3)
    fn = np.repeat(m.face_normals, 3, axis=0)
    uv = box_uv(verts, fn, 1.0)
    mesh = make_mesh(verts, faces, uv, normals=fn)
    mesh.apply_translation(center)
    return mesh


def box_uv(verts: np.ndarray, normals: np.ndarray, scale: float = 1.0) -> np.ndarray:
    """Box-projected UVs (each vertex projected along its dominant normal axis), `scale` metres per tile."""
    dom = np.argmax(np.abs(normals), axis=1)
    uv = np.empty((len(verts), 2))
    for axis, (a, b) in enumerate(((2, 1), (0, 2), (0, 1))):
        sel = dom == axis
        uv[sel] = verts[sel][:, [a, b]] / scale
    return uv


def prisms(
    starts: np.ndarray, ends: np.ndarray, radius: float | np.ndarray, *, sides: int = 4
) -> trimesh.Trimesh:
    """Many thin closed prisms (spokes, rails) at once: one per (start, end) pair."""
    starts = np.asarray(starts, dtype=np.float64)
    ends = np.asarray(ends, dtype=np.float64)
    k = len(starts)
    r = np.broadcast_to(np.asarray(radius, dtype=np.float64), (k,))
    d = _unit(ends - starts)
    helper = np.where(np.abs(d[:, 2:3]) < 0.9, [[0.0, 0.0, 1.0]], [[1.0, 0.0, 0.0]])
    s1 = _unit(np.cross(d, helper))
    s2 = np.cross(d, s1)
    th = np.linspace(0.0, 2 * np.pi, sides, endpoint=False) + np.pi / sides
    ring = np.cos(th)[None, :, None] * s1[:, None] + np.sin(th)[None, :, None] * s2[:, None]
    ring = ring * r[:, None, None]
    v0 = starts[:, None] + ring  # k x sides x 3
    v1 = ends[:, None] + ring
    verts = np.concatenate([v0, v1, starts[:, None], ends[:, None]], axis=1)  # k x (2s+2) x 3
    per = 2 * sides + 2
    i = np.arange(sides)
    j = (i + 1) % sides
    side_faces = np.concatenate([np.stack([i, j, sides + j], -1), np.stack([i, sides + j, sides + i], -1)])
    cap0 = np.stack([np.full(sides, 2 * sides), j, i], -1)
    cap1 = np.stack([np.full(sides, 2 * sides + 1), sides + i, sides + j], -1)
    local = np.concatenate([side_faces, cap0, cap1])
    faces = (local[None] + (np.arange(k) * per)[:, None, None]).reshape(-1, 3)
    verts = verts.reshape(-1, 3)
    # Orientation check on the first prism only: all are built the same way.
    if k and _signed_volume(verts[:per], local) < 0:
        faces = faces[:, ::-1]
    uv = np.tile(
        np.concatenate(
            [
                np.stack([i / sides, np.zeros(sides)], -1),
                np.stack([i / sides, np.ones(sides)], -1),
                [[0.5, 0.0], [0.5, 1.0]],
            ]
        ),
        (k, 1),
    )
    return make_mesh(verts, faces, uv)


def slab(top: np.ndarray, bottom: np.ndarray) -> trimesh.Trimesh:
    """A closed solid between two (r x c x 3) grids of the same shape: top face, bottom face and four sides.

    Used for glass, lights and trim laid on a body: `top` is the outline projected onto the body and pushed
    out a few millimetres, `bottom` pushed in.
    """
    top = np.asarray(top, dtype=np.float64)
    bottom = np.asarray(bottom, dtype=np.float64)
    r, c, _ = top.shape
    verts = np.concatenate([top.reshape(-1, 3), bottom.reshape(-1, 3)])
    idx = np.arange(r * c).reshape(r, c)
    off = r * c
    a, b, cc, d = idx[:-1, :-1], idx[1:, :-1], idx[1:, 1:], idx[:-1, 1:]
    # Top faces wind counter-clockwise in (column, row) order, like the boundary loop below, so all faces
    # agree; the signed-volume check then turns the whole slab outwards.
    f_top = np.concatenate([np.stack([a, d, cc], -1).reshape(-1, 3), np.stack([a, cc, b], -1).reshape(-1, 3)])
    f_bot = f_top[:, ::-1] + off
    # Boundary loop of the grid, in order.
    loop = np.concatenate([idx[0, :], idx[1:, -1], idx[-1, -2::-1], idx[-2:0:-1, 0]])
    nxt = np.roll(loop, -1)
    f_side = np.concatenate(
        [np.stack([loop, nxt + off, nxt], -1), np.stack([loop, loop + off, nxt + off], -1)]
    )
    faces = np.concatenate([f_top, f_bot, f_side])
    if _signed_volume(verts, faces) < 0:
        faces = faces[:, ::-1]
    uu, vv = np.meshgrid(np.linspace(0, 1, c), np.linspace(0, 1, r))
    uv1 = np.stack([uu, vv], -1).reshape(-1, 2)
    # Flat-ish shading: the top keeps its own normals (the body's curvature), sides are thin.
    return make_mesh(verts, faces, np.concatenate([uv1, uv1]))


def concat(meshes: Sequence[trimesh.Trimesh]) -> trimesh.Trimesh:
    """Concatenate meshes keeping UVs and vertex normals exactly (no merging, no processing)."""
    meshes = [m for m in meshes if len(m.faces)]
    verts, faces, uvs, normals = [], [], [], []
    off = 0
    for m in meshes:
        verts.append(np.asarray(m.vertices))
        faces.append(np.asarray(m.faces) + off)
        uv = getattr(m.visual, "uv", None)
        uvs.append(np.zeros((len(m.vertices), 2)) if uv is None else np.asarray(uv))
        normals.append(np.asarray(m.vertex_normals))
        off += len(m.vertices)
    return make_mesh(
        np.concatenate(verts), np.concatenate(faces), np.concatenate(uvs), np.concatenate(normals)
    )


def transformed(mesh: trimesh.Trimesh, matrix: np.ndarray) -> trimesh.Trimesh:
    """A copy of `mesh` moved by a 4x4 rigid (or uniformly scaled) transform, normals rotated with it."""
    v = trimesh.transform_points(mesh.vertices, matrix)
    n = _unit(np.asarray(mesh.vertex_normals) @ np.asarray(matrix)[:3, :3].T)
    return make_mesh(v, np.asarray(mesh.faces), np.asarray(mesh.visual.uv), n)


def raycast(mesh: trimesh.Trimesh, origins: np.ndarray, direction: Sequence[float]) -> np.ndarray:
    """Distance along `direction` from each origin to the first triangle hit (inf where none)."""
    d = _unit(np.asarray(direction, dtype=np.float64))
    o = np.asarray(origins, dtype=np.float64).reshape(-1, 3)
    tri = np.asarray(mesh.vertices)[np.asarray(mesh.faces)]
    # Work in the plane normal to d: a ray can only hit triangles whose 2-D bounds contain its origin.
    helper = np.array([1.0, 0.0, 0.0]) if abs(d[0]) < 0.9 else np.array([0.0, 1.0, 0.0])
    e1 = _unit(np.cross(d, helper))
    e2 = np.cross(d, e1)
    basis = np.stack([e1, e2], 1)
    tp = tri @ basis  # F x 3 x 2
    op = o @ basis
    tmin, tmax = tp.min(1) - 1e-9, tp.max(1) + 1e-9
    # First drop triangles outside the origins' whole footprint (cheap, O(F)), then pair rays and triangles.
    near = np.all(tmax >= op.min(0), axis=1) & np.all(tmin <= op.max(0), axis=1)
    tri, tmin, tmax = tri[near], tmin[near], tmax[near]
    out = np.full(len(o), np.inf)
    for s in range(0, len(o), 512):
        oc = op[s : s + 512]
        cand = (
            (oc[:, None, 0] >= tmin[None, :, 0])
            & (oc[:, None, 0] <= tmax[None, :, 0])
            & (oc[:, None, 1] >= tmin[None, :, 1])
            & (oc[:, None, 1] <= tmax[None, :, 1])
        )
        ri, fi = np.nonzero(cand)
        if not len(ri):
            continue
        v0 = tri[fi, 0]
        ea, eb = tri[fi, 1] - v0, tri[fi, 2] - v0
        p = np.cross(d, eb)
        det = np.einsum("ij,ij->i", ea, p)
        ok = np.abs(det) > 1e-14
        inv = np.where(ok, 1.0 / np.where(ok, det, 1.0), 0.0)
        tvec = o[s + ri] - v0
        u = np.einsum("ij,ij->i", tvec, p) * inv
        q = np.cross(tvec, ea)
        v = (q @ d) * inv
        t = np.einsum("ij,ij->i", q, eb) * inv
        hit = ok & (u >= -1e-9) & (v >= -1e-9) & (u + v <= 1 + 1e-9) & (t > 0)
        np.minimum.at(out, s + ri[hit], t[hit])
    return out


def project_grid(
    mesh: trimesh.Trimesh,
    grid: np.ndarray,
    direction: Sequence[float],
    *,
    lift: float,
    depth: float,
    start: float = 10.0,
) -> np.ndarray:
    """Drop a grid of points (r x c x 3) onto `mesh` along `direction` and return (top, bottom) grids for
    `slab`: the hits moved `lift` back towards the viewer and `depth` into the body.

    Points whose ray misses keep the nearest hit of their row (so outlines may overhang a rounded edge).
    """
    d = _unit(np.asarray(direction, dtype=np.float64))
    g = np.asarray(grid, dtype=np.float64)
    flat = g.reshape(-1, 3)
    origins = flat - d * start
    t = raycast(mesh, origins, d)
    miss = ~np.isfinite(t)
    if miss.all():
        raise ValueError("outline does not project onto the body")
    if miss.any():
        tt = t.reshape(g.shape[:2])
        for row in tt:
            good = np.isfinite(row)
            if good.any():
                idx = np.arange(len(row))
                row[~good] = np.interp(idx[~good], idx[good], row[good])
        t = tt.reshape(-1)
        t[~np.isfinite(t)] = np.nanmin(np.where(np.isfinite(t), t, np.nan))
    hits = origins + d * t[:, None]
    top = (hits - d * lift).reshape(g.shape)
    bottom = (hits + d * depth).reshape(g.shape)
    return np.stack([top, bottom])


def is_closed(mesh: trimesh.Trimesh, decimals: int = 7) -> bool:
    """No holes: once coincident vertices are merged, every edge is used by an even number of faces.

    (A plain `is_watertight` would also reject two closed pieces that happen to share a vertex, which is
    harmless for rendering.)
    """
    v = np.round(np.asarray(mesh.vertices), decimals)
    _, inv = np.unique(v, axis=0, return_inverse=True)
    f = inv.reshape(-1)[np.asarray(mesh.faces)]
    f = f[(f[:, 0] != f[:, 1]) & (f[:, 1] != f[:, 2]) & (f[:, 0] != f[:, 2])]
    if not len(f):
        return False
    e = np.sort(np.concatenate([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]]), axis=1)
    _, counts = np.unique(e, axis=0, return_counts=True)
    return bool(np.all(counts % 2 == 0))
