"""Generic mesh helpers shared by the procedural generators (animals, vehicles).

Everything here is pure numpy + trimesh, deterministic, and returns meshes in metres. Lofted meshes carry UVs
(u around the ring, v along the path) so a texture's rows follow the path: fur streaks run along a leg, stripes
go round it.
"""

from __future__ import annotations

import numpy as np
import trimesh


def _unit(v: np.ndarray) -> np.ndarray:
    n = np.linalg.norm(v, axis=-1, keepdims=True)
    return v / np.maximum(n, 1e-12)


def transport_frames(path: np.ndarray, side: np.ndarray | tuple[float, float, float] = (0.0, 0.0, 1.0)):
    """Rotation-minimising frames along a polyline (n x 3): tangents, sides, ups (each n x 3).

    `side` is the preferred first side axis (projected off the first tangent); later frames are parallel
    transported so tubes do not twist.
    """
    path = np.asarray(path, dtype=np.float64)
    t = np.gradient(path, axis=0)
    t = _unit(t)
    s0 = np.asarray(side, dtype=np.float64)
    s0 = s0 - t[0] * np.dot(s0, t[0])
    if np.linalg.norm(s0) < 1e-8:  # side parallel to the path: pick any perpendicular
        s0 = np.cross(t[0], [1.0, 0.0, 0.0] if abs(t[0][0]) < 0.9 else [0.0, 1.0, 0.0])
    sides = np.empty_like(path)
    sides[0] = _unit(s0)
    for i in range(1, len(path)):
        s = sides[i - 1] - t[i] * np.dot(sides[i - 1], t[i])
        if np.linalg.norm(s) < 1e-8:
            s = sides[i - 1]
        sides[i] = _unit(s)
    ups = np.cross(t, sides)
    return t, sides, ups


def loft(
    rings: np.ndarray, *, cap_start: bool = True, cap_end: bool = True, v: np.ndarray | None = None
) -> trimesh.Trimesh:
    """A closed tube through `rings` (n x m x 3: n stations of m points), with UVs (u round the ring, v
    along the stations) and smooth outward normals that do not break at the UV seam.

    Caps close each end with a fan to the ring's centroid; give the end rings a small radius for rounded
    ends. The UV seam duplicates one column of vertices (and the cap poles one per column), so
    `is_watertight` holds after `merged_for_checks`.
    """
    rings = np.asarray(rings, dtype=np.float64)
    n, m, _ = rings.shape
    # Seamed grid: column m repeats column 0 with u = 1.
    grid = np.concatenate([rings, rings[:, :1]], axis=1).reshape(-1, 3)
    gidx = np.arange(n * (m + 1)).reshape(n, m + 1)
    a, b, c, d = gidx[:-1, :-1], gidx[1:, :-1], gidx[1:, 1:], gidx[:-1, 1:]
    faces = [np.stack([a, c, b], -1).reshape(-1, 3), np.stack([a, d, c], -1).reshape(-1, 3)]
    verts = [grid]
    us = np.linspace(0.0, 1.0, m + 1)
    vs = np.linspace(0.0, 1.0, n) if v is None else np.asarray(v, dtype=np.float64)
    uv = [np.stack(np.meshgrid(us, vs), -1).reshape(-1, 2)]
    base = len(grid)
    # Cap poles: one vertex per column so UVs stay continuous.
    for row, v, at_start in ((0, 0.0, True), (n - 1, 1.0, False)):
        if (at_start and not cap_start) or (not at_start and not cap_end):
            continue
        verts.append(np.repeat(rings[row].mean(axis=0)[None], m, 0))
        uv.append(np.stack([(np.arange(m) + 0.5) / m, np.full(m, v)], -1))
        r = gidx[row]
        poles = base + np.arange(m)
        faces.append(
            np.stack([poles, r[1:], r[:-1]], -1) if at_start else np.stack([poles, r[:-1], r[1:]], -1)
        )
        base += m
    verts = np.concatenate(verts)
    faces = np.concatenate(faces)
    if _signed_volume(verts, faces) < 0:  # rings wound the other way: flip so normals face out
        faces = faces[:, ::-1]
    normals = welded_normals(verts, faces)
    mesh = trimesh.Trimesh(
        verts,
        faces,
        vertex_normals=normals,
        visual=trimesh.visual.TextureVisuals(uv=np.concatenate(uv)),
        process=False,
    )
    # The first n x (m + 1) vertices are the UV grid (station-major); texture bakers use this.
    mesh.metadata["loft_grid"] = (n, m + 1)
    return mesh


def welded_normals(verts: np.ndarray, faces: np.ndarray, tol: float = 1e-7) -> np.ndarray:
    """Area-weighted vertex normals where coincident vertices (UV seams, poles) share one normal."""
    key = np.round(verts / tol).astype(np.int64)
    _, inverse = np.unique(key, axis=0, return_inverse=True)
    inverse = inverse.reshape(-1)
    tri = verts[faces]
    fn = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    acc = np.zeros((inverse.max() + 1, 3))
    for k in range(3):
        np.add.at(acc, inverse[faces[:, k]], fn)
    acc /= np.maximum(np.linalg.norm(acc, axis=1, keepdims=True), 1e-20)
    return acc[inverse]


def _signed_volume(verts: np.ndarray, faces: np.ndarray) -> float:
    tri = verts[faces]
    return float(np.einsum("ij,ij->i", tri[:, 0], np.cross(tri[:, 1], tri[:, 2])).sum() / 6.0)


def sweep(
    path: np.ndarray,
    half_widths: np.ndarray,
    half_heights: np.ndarray,
    *,
    segments: int = 24,
    side: tuple[float, float, float] = (0.0, 0.0, 1.0),
    exponent: float | np.ndarray = 2.0,
    offsets: np.ndarray | None = None,
    radial: np.ndarray | None = None,
    cap_start: bool = True,
    cap_end: bool = True,
) -> trimesh.Trimesh:
    """A tube along `path` (n x 3) with (super)elliptic cross-sections.

    half_widths / half_heights (n): semi-axes along the frame's side and up directions.
    exponent: superellipse exponent per station (2 = ellipse, larger = boxier).
    offsets (n x 2): shift of each section's centre along (side, up).
    radial (n x segments): multiplicative radius modulation per station and ring angle (bumps, dents).
    Ring angle 0 points along `side`, pi/2 along up.
    """
    path = np.asarray(path, dtype=np.float64)
    n = len(path)
    _, sides, ups = transport_frames(path, side)
    theta = np.linspace(0.0, 2 * np.pi, segments, endpoint=False)
    ct, st = np.cos(theta), np.sin(theta)
    e = np.broadcast_to(np.asarray(exponent, dtype=np.float64), (n,))[:, None]
    # Superellipse: |x/a|^e + |y/b|^e = 1, parametrised by angle.
    sx = np.sign(ct) * np.abs(ct) ** (2.0 / e)
    sy = np.sign(st) * np.abs(st) ** (2.0 / e)
    w = np.asarray(half_widths, dtype=np.float64)[:, None] * sx
    h = np.asarray(half_heights, dtype=np.float64)[:, None] * sy
    if radial is not None:
        w = w * radial
        h = h * radial
    if offsets is not None:
        w = w + offsets[:, 0:1]
        h = h + offsets[:, 1:2]
    rings = path[:, None, :] + w[..., None] * sides[:, None, :] + h[..., None] * ups[:, None, :]
    return loft(rings, cap_start=cap_start, cap_end=cap_end)


def rounded_profile(t: np.ndarray, start_round: float = 0.15, end_round: float = 0.15) -> np.ndarray:
    """A radius multiplier in [0, 1] over t in [0, 1] that closes both ends like a capsule (quarter circles
    over the first `start_round` and last `end_round` of the length)."""
    t = np.asarray(t, dtype=np.float64)
    out = np.ones_like(t)
    if start_round > 0:
        s = np.clip(t / start_round, 0.0, 1.0)
        out = np.minimum(out, np.sqrt(np.clip(1.0 - (1.0 - s) ** 2, 0.0, 1.0)))
    if end_round > 0:
        s = np.clip((1.0 - t) / end_round, 0.0, 1.0)
        out = np.minimum(out, np.sqrt(np.clip(1.0 - (1.0 - s) ** 2, 0.0, 1.0)))
    return np.maximum(out, 0.02)


def capsule_along(
    start: np.ndarray,
    end: np.ndarray,
    r_start: float,
    r_end: float,
    *,
    stations: int = 12,
    segments: int = 16,
    side: tuple[float, float, float] = (0.0, 0.0, 1.0),
    flatten: float = 1.0,
) -> trimesh.Trimesh:
    """A tapered capsule from `start` to `end` whose rounded ends extend beyond the points by their radius
    (so chained segments overlap at their joints like ball joints)."""
    start = np.asarray(start, dtype=np.float64)
    end = np.asarray(end, dtype=np.float64)
    axis = end - start
    length = float(np.linalg.norm(axis))
    d = axis / max(length, 1e-9)
    total = length + r_start + r_end
    t = np.linspace(0.0, 1.0, stations)
    path = (start - d * r_start)[None] + t[:, None] * d[None] * total
    # Radius along: linear taper between the joint centres, spherical caps outside them.
    s = t * total - r_start  # distance from start joint
    r_lin = np.interp(s, [0.0, length], [r_start, r_end])
    cap0 = np.sqrt(np.clip(r_start**2 - np.minimum(s, 0.0) ** 2, 0.0, None))
    cap1 = np.sqrt(np.clip(r_end**2 - np.maximum(s - length, 0.0) ** 2, 0.0, None))
    r = np.where(s < 0, cap0, np.where(s > length, cap1, r_lin))
    r = np.maximum(r, 0.02 * max(r_start, r_end))
    return sweep(path, r, r * flatten, segments=segments, side=side)


def uv_sphere(radius: float, *, rows: int = 12, cols: int = 16, axis: str = "x") -> trimesh.Trimesh:
    """A UV sphere whose poles lie on `axis` ("x": u wraps round x, v runs from -x to +x pole)."""
    t = np.linspace(0.0, 1.0, rows)
    x = -np.cos(np.pi * t) * radius
    r = np.sin(np.pi * t) * radius
    path = np.zeros((rows, 3))
    path[:, 0] = x
    r = np.maximum(r, 1e-4 * radius)
    mesh = sweep(path, r, r, segments=cols, side=(0.0, 0.0, 1.0))
    if axis == "y":
        mesh.apply_transform(trimesh.transformations.rotation_matrix(np.pi / 2, [0, 0, 1]))
    elif axis == "z":
        mesh.apply_transform(trimesh.transformations.rotation_matrix(-np.pi / 2, [0, 1, 0]))
    return mesh


def merged_for_checks(mesh: trimesh.Trimesh) -> trimesh.Trimesh:
    """A copy with seam duplicates merged (ignoring UVs and normals), for watertightness checks."""
    m = trimesh.Trimesh(mesh.vertices.copy(), mesh.faces.copy(), process=False)
    m.merge_vertices(merge_tex=True, merge_norm=True)
    m.remove_unreferenced_vertices()
    return m


# ---------------------------------------------------------------------------------------------- smooth bodies
# Signed distance functions (negative inside) for organic shapes: a few ellipsoids blended with smooth unions
# and meshed once by projecting a UV sphere onto the zero level set (fine for star-shaped bodies: heads,
# paws), which keeps the sphere's UVs.


def sdf_ellipsoid(p: np.ndarray, centre, radii) -> np.ndarray:
    """Approximate signed distance to an ellipsoid (exact on the surface, good near it)."""
    q = (np.asarray(p, dtype=np.float64) - np.asarray(centre, dtype=np.float64)) / np.asarray(
        radii, dtype=np.float64
    )
    k0 = np.linalg.norm(q, axis=-1)
    k1 = np.linalg.norm(q / np.asarray(radii, dtype=np.float64), axis=-1)
    return k0 * (k0 - 1.0) / np.maximum(k1, 1e-12)


def smooth_union(a: np.ndarray, b: np.ndarray, k: float) -> np.ndarray:
    """Polynomial smooth minimum: the union of two bodies with a fillet of size ~k."""
    if k <= 0:
        return np.minimum(a, b)
    h = np.clip(0.5 + 0.5 * (b - a) / k, 0.0, 1.0)
    return b * (1 - h) + a * h - k * h * (1 - h)


def smooth_subtract(a: np.ndarray, b: np.ndarray, k: float) -> np.ndarray:
    """Body a minus body b, with a fillet of size ~k."""
    return -smooth_union(-a, b, k)


def star_mesh(
    sdf, centre, *, r_max: float, rows: int = 32, cols: int = 40, iterations: int = 28
) -> trimesh.Trimesh:
    """Mesh the zero level set of `sdf` (callable on N x 3 points) seen from `centre`: a UV sphere whose poles
    lie on the X axis (v = 0 at -X, 1 at +X), each vertex moved along its ray to the surface by bisection.
    The body must be star-shaped from `centre` and lie within `r_max` of it."""
    c = np.asarray(centre, dtype=np.float64)
    sphere = uv_sphere(1.0, rows=rows, cols=cols, axis="x")
    n, m1 = sphere.metadata["loft_grid"]
    dirs = sphere.vertices / np.maximum(np.linalg.norm(sphere.vertices, axis=1, keepdims=True), 1e-12)
    lo = np.zeros(len(dirs))
    hi = np.full(len(dirs), float(r_max))
    for _ in range(iterations):
        mid = 0.5 * (lo + hi)
        inside = sdf(c + dirs * mid[:, None]) < 0
        lo = np.where(inside, mid, lo)
        hi = np.where(inside, hi, mid)
    verts = c + dirs * (0.5 * (lo + hi))[:, None]
    faces = sphere.faces
    mesh = trimesh.Trimesh(
        verts,
        faces,
        vertex_normals=welded_normals(verts, faces),
        visual=trimesh.visual.TextureVisuals(uv=sphere.visual.uv.copy()),
        process=False,
    )
    mesh.metadata["loft_grid"] = (n, m1)
    return mesh


def ray_to_surface(sdf, origin, direction, r_max: float, iterations: int = 32) -> np.ndarray:
    """Where rays from `origin` (inside the body) along `direction` leave it; accepts one ray (3,) or many
    (N x 3 origins and/or directions)."""
    o = np.asarray(origin, dtype=np.float64)
    d = np.asarray(direction, dtype=np.float64)
    single = o.ndim == 1 and d.ndim == 1
    o2, d2 = np.broadcast_arrays(np.atleast_2d(o), np.atleast_2d(d))
    d2 = d2 / np.linalg.norm(d2, axis=1, keepdims=True)
    lo = np.zeros(len(d2))
    hi = np.full(len(d2), float(r_max))
    for _ in range(iterations):
        mid = 0.5 * (lo + hi)
        inside = sdf(o2 + d2 * mid[:, None]) < 0
        lo = np.where(inside, mid, lo)
        hi = np.where(inside, hi, mid)
    pts = o2 + d2 * (0.5 * (lo + hi))[:, None]
    return pts[0] if single else pts


def s_to_unit(s: np.ndarray) -> np.ndarray:
    s = np.asarray(s, dtype=np.float64)
    return (s - s[0]) / max(s[-1] - s[0], 1e-12)


def axial_mesh(
    sdf,
    axis_start,
    axis_end,
    *,
    stations: int = 28,
    segments: int = 32,
    side=(0.0, 0.0, 1.0),
    r_max: float,
    iterations: int = 26,
) -> trimesh.Trimesh:
    """Mesh an elongated smooth body (torso) as a loft: rings found by casting rays from points on the axis
    `axis_start` -> `axis_end` (both inside the body, near its ends) perpendicular to it. The axis is extended
    to where it leaves the body, and stations are packed towards the rounded ends. UVs as `loft`."""
    a = np.asarray(axis_start, dtype=np.float64)
    b = np.asarray(axis_end, dtype=np.float64)
    d = (b - a) / np.linalg.norm(b - a)
    mid = 0.5 * (a + b)
    tips = ray_to_surface(sdf, np.stack([mid, mid]), np.stack([-d, d]), r_max)
    p0, p1 = tips[0], tips[1]
    # Cosine spacing: dense near the ends where the surface turns.
    s = 0.5 - 0.5 * np.cos(np.linspace(0.0, np.pi, stations))
    s = np.clip(s, 0.004, 0.996)
    centres = p0[None] + s[:, None] * (p1 - p0)[None]
    _, sides, ups = transport_frames(centres, side)
    theta = np.linspace(0.0, 2 * np.pi, segments, endpoint=False)
    dirs = np.cos(theta)[None, :, None] * sides[:, None, :] + np.sin(theta)[None, :, None] * ups[:, None, :]
    origins = np.repeat(centres[:, None, :], segments, axis=1)
    pts = ray_to_surface(sdf, origins.reshape(-1, 3), dirs.reshape(-1, 3), r_max, iterations=iterations)
    rings = pts.reshape(stations, segments, 3)
    # v by arc length along the axis, so the texture is not stretched where stations are sparse.
    return loft(rings, v=s_to_unit(s))
