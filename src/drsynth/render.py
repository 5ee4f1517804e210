"""Realises a `SceneSpec` as pixels: the only module that imports pyrender (and OpenGL).

pyrender gives the headless GL context (EGL first, OSMesa as fallback) and uploads meshes and textures
(`Primitive`, `Texture`); the passes themselves are drawn here with small shaders, because a dataset render
needs things pyrender's generic renderer does not do cheaply on a CPU rasteriser (Mesa llvmpipe):

- one shadow-casting light (the key light) with a shadow map fitted to the subject and occluders, hardware
  PCF, and unshadowed fill lights;
- uniform locations and GPU meshes/textures cached for the worker's lifetime (meshes by `Part.key`);
- cheap depth-only passes (subject alone, occluders alone) through the same multisampled framebuffer as the
  colour pass, so the subject's hidden fraction is *measured* from pixel-exact masks;
- the sky composited behind the scene from the alpha channel (`skies.background`);
- a toon style: cel-shaded bands, flat colours, and ink outlines from depth discontinuities.

Create one `SceneRenderer` per worker process and reuse it for every image.
"""

from __future__ import annotations

import contextlib
import ctypes
import math
import os
import subprocess
import sys
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from drsynth.errors import RenderError
from drsynth.randomizers.subject import PosedSubject
from drsynth.samplers import direction_from_angles
from drsynth.scene_spec import SceneSpec, SensorSpec
from drsynth.subjects.base import SurfaceMaterial

PLATFORMS = ("egl", "osmesa")
_PROBE = (
    "import os, numpy as np; np.infty = np.inf; import pyrender; "
    "r = pyrender.OffscreenRenderer(8, 8); r.delete(); print('ok')"
)


def select_platform() -> str:
    """The PyOpenGL platform to use: $PYOPENGL_PLATFORM when set, else EGL when it works, else OSMesa.

    Probed in a subprocess (PyOpenGL binds its platform at import and cannot switch afterwards); the choice
    is written to the environment so worker processes inherit it.
    """
    chosen = os.environ.get("PYOPENGL_PLATFORM")
    if chosen:
        return chosen
    errors = []
    for platform in PLATFORMS:
        env = {**os.environ, "PYOPENGL_PLATFORM": platform}
        try:
            out = subprocess.run(
                [sys.executable, "-c", _PROBE], env=env, capture_output=True, text=True, timeout=120
            )
        except subprocess.TimeoutExpired:
            errors.append(f"{platform}: timed out")
            continue
        if out.returncode == 0 and "ok" in out.stdout:
            os.environ["PYOPENGL_PLATFORM"] = platform
            return platform
        errors.append(f"{platform}: {(out.stderr.strip().splitlines() or ['failed'])[-1]}")
    raise RenderError(
        "no headless OpenGL platform works (" + "; ".join(errors) + "). Install Mesa's EGL "
        "(apt-get install libegl1 libegl-mesa0 libgl1-mesa-dri, as scripts/setup.sh does) or OSMesa "
        "(libosmesa6 and PyOpenGL 3.1.10), or set PYOPENGL_PLATFORM"
    )


def _import_gl():
    """Import pyrender and OpenGL lazily, after the platform is chosen (NumPy 2 lacks np.infty)."""
    os.environ.setdefault("PYOPENGL_PLATFORM", "egl")
    if not hasattr(np, "infty"):
        np.infty = np.inf  # pyrender 0.1.45 still uses the NumPy 1 alias
    # Triton's libtriton bundles its own LLVM; loading it after Mesa's llvmpipe has initialised crashes the
    # process (seen: `import torchvision` after a render -> SIGSEGV). Loaded first, both coexist. ~1 s.
    with contextlib.suppress(ImportError):
        import triton._C.libtriton  # noqa: F401
    import OpenGL.GL as gl
    import pyrender

    return pyrender, gl


_CONTEXT = None


def _shared_platform(pyrender):
    """The process's one headless GL context. EGL displays are per process and terminating one (as pyrender's
    renderer does on delete) would kill every context, so renderers share this one and never delete it."""
    global _CONTEXT
    if _CONTEXT is None:
        try:
            _CONTEXT = pyrender.OffscreenRenderer(8, 8)
        except Exception as e:  # EGL/OSMesa missing or broken
            raise RenderError(
                f"cannot create a headless OpenGL context with PYOPENGL_PLATFORM="
                f"{os.environ.get('PYOPENGL_PLATFORM')}: {e}. Install Mesa EGL (scripts/setup.sh) or use osmesa"
            ) from e
    return _CONTEXT._platform


# ------------------------------------------------------------------------------------------------------------
# Shaders
# ------------------------------------------------------------------------------------------------------------

_MESH_VS = """
#version 330 core
layout(location = 0) in vec3 position;
layout(location = 1) in vec3 normal;
layout(location = 2) in vec2 texcoord;
uniform mat4 M;
uniform mat3 N;
uniform mat4 VP;
uniform mat4 light_VP;
uniform mat3 uv_transform;
uniform float shell_offset;
out vec3 o_pos;
out vec3 w_pos;
out vec3 w_normal;
out vec2 uv;
out vec4 light_pos;
void main() {
    o_pos = position;
    vec4 wp = M * vec4(position + normal * shell_offset, 1.0);
    w_pos = wp.xyz;
    w_normal = N * normal;
    uv = (uv_transform * vec3(texcoord, 1.0)).xy;
    light_pos = light_VP * wp;
    gl_Position = VP * wp;
}
"""

_MESH_FS = """
#version 330 core
in vec3 o_pos;
in vec3 w_pos;
in vec3 w_normal;
in vec2 uv;
in vec4 light_pos;
layout(location = 0) out vec4 frag_color;
layout(location = 1) out vec4 subject_mask;
uniform float fade_start;
uniform float fade_end;
uniform float mask_visible;
uniform float mask_occluder;
uniform vec4 base_color;
uniform float metallic;
uniform float roughness;
uniform int has_texture;
uniform sampler2D base_tex;
uniform int n_lights;
uniform vec3 light_dir[4];
uniform vec3 light_rgb[4];
uniform vec3 ambient;
uniform vec3 cam_pos;
uniform int use_shadow;
uniform sampler2DShadow shadow_map;
uniform int toon;
uniform int toon_flat;
uniform float shell_level;
uniform float strand_cell;
uniform float fur_flat;
const float PI = 3.14159265;

vec3 srgb_to_linear(vec3 c) { return pow(c, vec3(2.2)); }

float key_shadow(float nl) {
    vec3 p = light_pos.xyz / light_pos.w * 0.5 + 0.5;
    if (p.x <= 0.0 || p.x >= 1.0 || p.y <= 0.0 || p.y >= 1.0 || p.z >= 1.0) return 1.0;
    float bias = 0.0015 + 0.004 * (1.0 - nl);
    float z = p.z - bias;
    // one hardware-filtered tap = bilinear PCF over 2x2 texels (soft enough at dataset resolutions, and
    // each extra tap costs ~10% of a frame on a CPU rasteriser)
    return texture(shadow_map, vec3(p.xy, z));
}

void main() {
    if (shell_level > 0.0) {
        // Fur shell: strands are cells of the part's own surface (so they move with it), each with a random
        // length; a shell keeps the strands that reach it. Seen edge-on this gives a soft, hairy outline.
        // Face-on, fur lies flat: shells thin out there, or the coat reads as wire-haired.
        vec3 cell = floor(o_pos / strand_cell);
        float strand = fract(sin(dot(cell, vec3(12.9898, 78.233, 37.719))) * 43758.5453);
        float facing = abs(dot(normalize(w_normal), normalize(cam_pos - w_pos)));
        if (strand < shell_level + fur_flat * facing * facing) discard;
    }
    vec3 albedo = base_color.rgb;
    if (has_texture == 1) {
        vec3 t = texture(base_tex, uv).rgb;
        if (toon == 1) {
            // cartoon fills: scenery takes its texture's mean colour (the coarsest mip level); the subject
            // keeps its markings, posterised to a few flat tones
            t = toon_flat == 1 ? textureLod(base_tex, uv, 16.0).rgb : floor(t * 5.0 + 0.5) / 5.0;
        }
        albedo *= srgb_to_linear(t);
    }
    // Fur is darker near the skin and lighter at the tips.
    if (shell_level > 0.0) albedo *= 0.82 + 0.3 * shell_level;
    vec3 n = normalize(w_normal);
    if (!gl_FrontFacing) n = -n;
    vec3 v = normalize(cam_pos - w_pos);
    float r = clamp(roughness, 0.04, 1.0);
    float a2 = r * r * r * r;
    vec3 f0 = mix(vec3(0.04), albedo, metallic);
    vec3 diffuse = albedo * (1.0 - metallic) / PI;
    vec3 color = albedo * ambient;
    for (int i = 0; i < n_lights; i++) {
        vec3 l = light_dir[i];
        float nl = max(dot(n, l), 0.0);
        float lit = (i == 0 && use_shadow == 1) ? key_shadow(nl) : 1.0;
        vec3 h = normalize(l + v);
        float nh = max(dot(n, h), 0.0);
        float nv = max(dot(n, v), 1e-3);
        float d = nh * nh * (a2 - 1.0) + 1.0;
        float D = a2 / (PI * d * d);
        vec3 F = f0 + (1.0 - f0) * pow(1.0 - max(dot(h, v), 0.0), 5.0);
        float k = (r + 1.0) * (r + 1.0) / 8.0;
        float G = (nl / (nl * (1.0 - k) + k)) * (nv / (nv * (1.0 - k) + k));
        vec3 spec = F * D * G / max(4.0 * nl * nv, 1e-3);
        if (toon == 1) {
            float band = nl * lit;
            band = band > 0.55 ? 1.0 : (band > 0.18 ? 0.6 : 0.25);
            float hl = step(0.5, length(spec) * nl * lit);
            color += (albedo / PI * band + vec3(0.25) * hl) * light_rgb[i];
        } else {
            color += (diffuse + spec) * light_rgb[i] * nl * lit;
        }
    }
    // The far ground fades out (premultiplied alpha) so the sky composited behind it has no hard edge.
    float fade = clamp((fade_end - length(w_pos - cam_pos)) / (fade_end - fade_start), 0.0, 1.0);
    frag_color = vec4(pow(clamp(color, 0.0, 1.0), vec3(1.0 / 2.2)) * fade, fade);
    // Masks: R = subject drawn here (all of it: the subject is drawn first), G = still visible (occluders
    // drawn later in front clear G through a colour mask), B = occluder in front. Ground writes nothing.
    subject_mask = vec4(1.0, mask_visible, mask_occluder, 1.0);
}
"""

_DEPTH_VS = """
#version 330 core
layout(location = 0) in vec3 position;
uniform mat4 M;
uniform mat4 VP;
void main() { gl_Position = VP * M * vec4(position, 1.0); }
"""

_DEPTH_FS = """
#version 330 core
out vec4 frag_color;
void main() { frag_color = vec4(1.0); }
"""


# ------------------------------------------------------------------------------------------------------------
# Geometry helpers
# ------------------------------------------------------------------------------------------------------------


def look_at(eye: np.ndarray, target: np.ndarray, roll_deg: float = 0.0) -> np.ndarray:
    """World-from-camera pose of an OpenGL camera at `eye` looking at `target` (+Y up), rolled."""
    f = np.asarray(target, float) - np.asarray(eye, float)
    f /= max(np.linalg.norm(f), 1e-12)
    up = np.array([0.0, 1.0, 0.0])
    if abs(f @ up) > 0.999:
        up = np.array([0.0, 0.0, -1.0])
    r = np.cross(f, up)
    r /= np.linalg.norm(r)
    u = np.cross(r, f)
    if roll_deg:
        c, s = math.cos(math.radians(roll_deg)), math.sin(math.radians(roll_deg))
        r, u = c * r + s * u, -s * r + c * u
    pose = np.eye(4)
    pose[:3, 0], pose[:3, 1], pose[:3, 2], pose[:3, 3] = r, u, -f, eye
    return pose


def perspective(yfov_deg: float, znear: float, zfar: float) -> np.ndarray:
    f = 1.0 / math.tan(math.radians(yfov_deg) / 2)
    p = np.zeros((4, 4))
    p[0, 0], p[1, 1] = f, f
    p[2, 2] = (zfar + znear) / (znear - zfar)
    p[2, 3] = 2 * zfar * znear / (znear - zfar)
    p[3, 2] = -1.0
    return p


def orthographic(half: float, znear: float, zfar: float) -> np.ndarray:
    p = np.eye(4)
    p[0, 0] = p[1, 1] = 1.0 / half
    p[2, 2] = -2.0 / (zfar - znear)
    p[2, 3] = -(zfar + znear) / (zfar - znear)
    return p


def euler_matrix_deg(angles: tuple[float, float, float]) -> np.ndarray:
    ax, ay, az = (math.radians(a) for a in angles)
    cx, sx, cy, sy, cz, sz = math.cos(ax), math.sin(ax), math.cos(ay), math.sin(ay), math.cos(az), math.sin(az)
    rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    return rz @ ry @ rx


def generated_uv(vertices: np.ndarray, normals: np.ndarray) -> np.ndarray:
    """UVs for meshes that have none: planar projection along each vertex's dominant normal axis, in
    units of the mesh's size (so a texture spans the part a few times)."""
    v = np.asarray(vertices, float)
    n = np.abs(np.asarray(normals, float))
    size = max(float(np.ptp(v, axis=0).max()), 1e-6)
    q = (v - v.min(0)) / size * 2.0
    axis = n.argmax(1)
    uv = np.where((axis == 0)[:, None], q[:, [2, 1]], np.where((axis == 1)[:, None], q[:, [0, 2]], q[:, [0, 1]]))
    return uv


@dataclass(frozen=True)
class _MeshData:
    positions: np.ndarray
    normals: np.ndarray
    uvs: np.ndarray
    indices: np.ndarray


def mesh_data(mesh, *, flat: bool = False) -> _MeshData:
    """Positions/normals/UVs/indices of a trimesh mesh (UVs generated when it has none)."""
    if flat:
        mesh = mesh.copy()
        mesh.unmerge_vertices()
    v = np.asarray(mesh.vertices, np.float32)
    n = np.asarray(mesh.vertex_normals, np.float32)
    uv = getattr(mesh.visual, "uv", None)
    if uv is None or len(uv) != len(v):
        uv = generated_uv(v, n)
    return _MeshData(v, n, np.asarray(uv, np.float32), np.asarray(mesh.faces, np.uint32))


def unit_shape(name: str):
    """An occluder primitive (trimesh) fitting the unit cube [-0.5, 0.5]^3, with UVs, and whether it is
    flat-shaded."""
    import trimesh
    from trimesh.creation import box, capsule, cone, cylinder, icosahedron, icosphere, torus

    if name == "box":
        m = box((1, 1, 1))
        m.unmerge_vertices()
        uv = _box_uv(m)
        m.visual = trimesh.visual.TextureVisuals(uv=uv)
        return m, True
    if name == "sphere":
        m = icosphere(subdivisions=3, radius=0.5)
    elif name == "cylinder":
        m = cylinder(radius=0.5, height=1.0, sections=32)
    elif name == "capsule":
        m = capsule(height=0.5, radius=0.25, count=[24, 16])
    elif name == "cone":
        m = cone(radius=0.5, height=1.0, sections=32)
        m.apply_translation([0, 0, -0.5])
    elif name == "torus":
        m = torus(major_radius=0.35, minor_radius=0.15, major_sections=40, minor_sections=16)
    elif name == "icosahedron":
        m = icosahedron()
        m.apply_scale(0.5 / np.abs(m.vertices).max())
        return m, True
    elif name == "pyramid":
        v = np.array([[-0.5, -0.5, -0.5], [0.5, -0.5, -0.5], [0.5, -0.5, 0.5], [-0.5, -0.5, 0.5], [0, 0.5, 0]])
        f = np.array([[0, 1, 2], [0, 2, 3], [0, 4, 1], [1, 4, 2], [2, 4, 3], [3, 4, 0]])
        m = trimesh.Trimesh(v, f, process=True)
        m.fix_normals()
        return m, True
    else:
        raise RenderError(f"unknown occluder shape '{name}'")
    return m, False


def _box_uv(m) -> np.ndarray:
    n = np.abs(m.vertex_normals)
    v = m.vertices + 0.5
    axis = n.argmax(1)
    return np.where((axis == 0)[:, None], v[:, [2, 1]], np.where((axis == 1)[:, None], v[:, [0, 2]], v[:, [0, 1]]))


# ------------------------------------------------------------------------------------------------------------
# The renderer
# ------------------------------------------------------------------------------------------------------------


@dataclass
class RenderResult:
    """One rendered image and what was measured from it.

    image: H x W x 3 uint8 (sRGB). subject_mask: where the subject would be without occluders.
    visible_mask: where the subject is visible. visible_fraction: visible / unoccluded subject pixels.
    bbox: [x0, y0, x1, y1] (pixels, exclusive max) of the visible subject, or None when none is visible.
    """

    image: np.ndarray
    subject_mask: np.ndarray
    visible_mask: np.ndarray
    visible_fraction: float
    bbox: list[int] | None


@dataclass
class _Draw:
    primitive: object
    model: np.ndarray
    material: SurfaceMaterial
    uv_transform: np.ndarray
    role: str  # "subject" | "occluder" | "ground"
    normal_matrix: np.ndarray | None = None
    mirrored: bool = False  # negative determinant: the winding flips
    fur_length: float = 0.0  # shell fur, in the part's units (metres)

    def __post_init__(self) -> None:
        m3 = self.model[:3, :3]
        self.normal_matrix = np.ascontiguousarray(np.linalg.inv(m3).T, np.float32)
        self.mirrored = bool(np.linalg.det(m3) < 0)


_IDENTITY3 = np.eye(3, dtype=np.float32)
_UNIT_CUBE = np.array([[x, y, z, 1.0] for x in (-0.5, 0.5) for y in (-0.5, 0.5) for z in (-0.5, 0.5)])
GROUND_EXTENT_RADII = 60.0  # half-size of the ground square, in subject radii
MAX_GPU_MESHES = 6000
MAX_GPU_TEXTURES = 600
FUR_STRAND_CELL_M = 0.0015  # strand spacing on the skin, metres (under a pixel at dataset resolutions)
FUR_FLAT = 0.9  # how much face-on shells thin out (fur lies flat; 0 = a velvet pile everywhere)


class SceneRenderer:
    """Renders scene specs at one image size. Holds the GPU caches of one process (the GL context is shared
    by every renderer of the process)."""

    def __init__(
        self,
        size: int,
        *,
        msaa_samples: int = 1,
        smooth_edges: bool = True,
        fur_shells: int = 0,
        shadow_map_size: int = 1024,
        material_image_dir: Path | None = None,
        sky_image_dir: Path | None = None,
    ) -> None:
        pyrender, gl = _import_gl()
        self._pr, self._gl = pyrender, gl
        self.size = int(size)
        self.msaa = int(msaa_samples)
        self.smooth_edges = bool(smooth_edges)
        self.fur_shells = int(fur_shells)
        self.shadow_size = int(shadow_map_size)
        self.material_image_dir = material_image_dir
        self.sky_image_dir = sky_image_dir
        self._platform = _shared_platform(pyrender)
        self._platform.make_current()
        self._programs = {
            "mesh": self._program(_MESH_VS, _MESH_FS),
            "depth": self._program(_DEPTH_VS, _DEPTH_FS),
        }
        self._uniform_locs: dict[tuple[int, str], int] = {}
        self._meshes: OrderedDict[str, object] = OrderedDict()
        self._textures: OrderedDict[str, object] = OrderedDict()
        self._make_framebuffers()
        self._ground = self._upload_key("__ground__", self._ground_mesh())
        self._subject_cache: tuple | None = None  # (key, subject draws)
        self._result_cache: tuple | None = None  # (spec, posed id, RenderResult): an occlusion check's render

    # -- GL resources ---------------------------------------------------------------------------------------

    def _program(self, vs: str, fs: str) -> int:
        from OpenGL.GL import shaders

        gl = self._gl
        try:
            return shaders.compileProgram(
                shaders.compileShader(vs, gl.GL_VERTEX_SHADER),
                shaders.compileShader(fs, gl.GL_FRAGMENT_SHADER),
                validate=False,
            )
        except RuntimeError as e:
            raise RenderError(f"shader compilation failed on this OpenGL driver: {str(e)[:400]}") from e

    def _renderbuffer(self, fmt, samples: int) -> int:
        gl, s = self._gl, self.size
        rb = gl.glGenRenderbuffers(1)
        gl.glBindRenderbuffer(gl.GL_RENDERBUFFER, rb)
        if samples > 1:
            gl.glRenderbufferStorageMultisample(gl.GL_RENDERBUFFER, samples, fmt, s, s)
        else:
            gl.glRenderbufferStorage(gl.GL_RENDERBUFFER, fmt, s, s)
        return rb

    def _make_framebuffers(self) -> None:
        gl = self._gl
        # Draw into a multisampled framebuffer (colour, subject mask, depth), resolve into a plain one; without
        # multisampling, draw into the plain one directly.
        self._fbs, self._rbs = [], []
        for samples in (self.msaa, 1) if self.msaa > 1 else (1,):
            fb = gl.glGenFramebuffers(1)
            rbs = [self._renderbuffer(f, samples) for f in (gl.GL_RGBA8, gl.GL_RGBA8, gl.GL_DEPTH_COMPONENT24)]
            gl.glBindFramebuffer(gl.GL_FRAMEBUFFER, fb)
            for att, rb in zip((gl.GL_COLOR_ATTACHMENT0, gl.GL_COLOR_ATTACHMENT1, gl.GL_DEPTH_ATTACHMENT), rbs, strict=True):
                gl.glFramebufferRenderbuffer(gl.GL_FRAMEBUFFER, att, gl.GL_RENDERBUFFER, rb)
            status = gl.glCheckFramebufferStatus(gl.GL_FRAMEBUFFER)
            if status != gl.GL_FRAMEBUFFER_COMPLETE:
                raise RenderError(f"the OpenGL driver cannot render offscreen (framebuffer status {status})")
            self._fbs.append(fb)
            self._rbs += rbs
        self._fb_ms, self._fb = self._fbs[0], self._fbs[-1]

        # Shadow map: a depth texture sampled with hardware comparison and bilinear PCF.
        n = self.shadow_size
        self._shadow_tex = gl.glGenTextures(1)
        gl.glBindTexture(gl.GL_TEXTURE_2D, self._shadow_tex)
        gl.glTexImage2D(gl.GL_TEXTURE_2D, 0, gl.GL_DEPTH_COMPONENT24, n, n, 0, gl.GL_DEPTH_COMPONENT, gl.GL_FLOAT, None)
        for p, v in (
            (gl.GL_TEXTURE_MIN_FILTER, gl.GL_LINEAR),
            (gl.GL_TEXTURE_MAG_FILTER, gl.GL_LINEAR),
            (gl.GL_TEXTURE_WRAP_S, gl.GL_CLAMP_TO_EDGE),
            (gl.GL_TEXTURE_WRAP_T, gl.GL_CLAMP_TO_EDGE),
            (gl.GL_TEXTURE_COMPARE_MODE, gl.GL_COMPARE_REF_TO_TEXTURE),
            (gl.GL_TEXTURE_COMPARE_FUNC, gl.GL_LEQUAL),
        ):
            gl.glTexParameteri(gl.GL_TEXTURE_2D, p, v)
        self._fb_shadow = gl.glGenFramebuffers(1)
        gl.glBindFramebuffer(gl.GL_FRAMEBUFFER, self._fb_shadow)
        gl.glFramebufferTexture2D(gl.GL_FRAMEBUFFER, gl.GL_DEPTH_ATTACHMENT, gl.GL_TEXTURE_2D, self._shadow_tex, 0)
        gl.glDrawBuffer(gl.GL_NONE)
        gl.glReadBuffer(gl.GL_NONE)
        gl.glBindFramebuffer(gl.GL_FRAMEBUFFER, 0)

    def _ground_mesh(self) -> _MeshData:
        # A square of half-size 1 in the xz plane (scaled per image); UVs = xz, so uv_transform tiles it.
        v = np.array([[-1, 0, -1], [1, 0, -1], [1, 0, 1], [-1, 0, 1]], np.float32)
        n = np.tile(np.array([[0, 1, 0]], np.float32), (4, 1))
        f = np.array([[0, 2, 1], [0, 3, 2]], np.uint32)
        return _MeshData(v, n, v[:, [0, 2]].copy(), f)

    def _upload_key(self, key: str, data: _MeshData):
        prim = self._meshes.get(key)
        if prim is not None:
            self._meshes.move_to_end(key)
            return prim
        prim = self._pr.Primitive(
            positions=data.positions, normals=data.normals, texcoord_0=data.uvs, indices=data.indices, mode=4
        )
        prim._add_to_context()
        prim.n_indices = int(data.indices.size)
        self._meshes[key] = prim
        if len(self._meshes) > MAX_GPU_MESHES:
            # Built-in meshes ("__ground__", "__shape__/...") are held and drawn every frame without
            # refreshing their LRU place: never evict them (a deleted ground crashed large subject pools).
            old_key = next(k for k in self._meshes if not k.startswith("__"))
            self._meshes.pop(old_key).delete()
        return prim

    def _part_primitive(self, part):
        prim = self._meshes.get(part.key)
        if prim is not None:
            self._meshes.move_to_end(part.key)
            return prim
        return self._upload_key(part.key, mesh_data(part.mesh))

    def _shape_primitive(self, shape: str):
        key = f"__shape__/{shape}"
        prim = self._meshes.get(key)
        if prim is not None:
            return prim
        mesh, flat = unit_shape(shape)
        return self._upload_key(key, mesh_data(mesh, flat=flat))

    def _texture(self, material: SurfaceMaterial):
        if material.base_color_texture is None:
            return None
        tex = self._textures.get(material.key)
        if tex is not None:
            self._textures.move_to_end(material.key)
            return tex
        img = np.ascontiguousarray(material.base_color_texture[..., :3])
        gl = self._gl
        sampler = self._pr.Sampler(wrapS=gl.GL_REPEAT, wrapT=gl.GL_REPEAT)
        tex = self._pr.Texture(source=img, source_channels="RGB", sampler=sampler)
        tex._add_to_context()
        self._textures[material.key] = tex
        if len(self._textures) > MAX_GPU_TEXTURES:
            _, old = self._textures.popitem(last=False)
            old.delete()
        return tex

    def _loc(self, program: int, name: str) -> int:
        key = (program, name)
        loc = self._uniform_locs.get(key)
        if loc is None:
            loc = self._gl.glGetUniformLocation(program, name)
            self._uniform_locs[key] = loc
        return loc

    def _mat4(self, program: int, name: str, m: np.ndarray) -> None:
        self._gl.glUniformMatrix4fv(self._loc(program, name), 1, True, np.ascontiguousarray(m, np.float32))

    # -- scene assembly -----------------------------------------------------------------------------------

    def _material(self, key: str) -> SurfaceMaterial:
        from drsynth.materials import get_material

        return get_material(key, str(self.material_image_dir) if self.material_image_dir else None)

    def _subject_draws(self, spec: SceneSpec, posed: PosedSubject) -> list[_Draw]:
        key = (id(posed), spec.subject.material)
        if self._subject_cache is not None and self._subject_cache[0] == key:
            return self._subject_cache[1]
        subject_material = self._material(spec.subject.material.key) if spec.subject.material else None
        lift = posed.world_from_subject
        draws = []
        for part in posed.parts:
            mat = subject_material if (subject_material is not None and part.texturable) else part.material
            model = lift @ np.asarray(part.transform, float)
            fur = mat.fur_length * part.fur_scale
            draws.append(_Draw(self._part_primitive(part), model, mat, _IDENTITY3, "subject", fur_length=fur))
        self._subject_cache = (key, draws)
        return draws

    def _occluder_draws(self, spec: SceneSpec) -> list[_Draw]:
        draws = []
        for occ in spec.occluders:
            model = np.eye(4)
            model[:3, :3] = euler_matrix_deg(occ.rotation_euler_deg) @ np.diag(occ.size_m)
            model[:3, 3] = occ.position_m
            draws.append(
                _Draw(self._shape_primitive(occ.shape), model, self._material(occ.material.key), _IDENTITY3, "occluder")
            )
        return draws

    def _ground_draw(self, spec: SceneSpec) -> _Draw:
        extent = GROUND_EXTENT_RADII * spec.subject.radius_m
        ground_model = np.diag([extent, 1.0, extent, 1.0])
        ground_model[0, 3], ground_model[2, 3] = spec.subject.center_m[0], spec.subject.center_m[2]
        g = spec.ground
        c, s = math.cos(math.radians(g.rotation_deg)), math.sin(math.radians(g.rotation_deg))
        k = extent / max(g.tile_m, 1e-6)
        uv_t = np.array([[c * k, -s * k, 0], [s * k, c * k, 0], [0, 0, 1]], np.float32)
        return _Draw(self._ground, ground_model, self._material(g.key), uv_t, "ground")

    def _camera(self, spec: SceneSpec) -> tuple[np.ndarray, np.ndarray, float, float]:
        cam = spec.camera
        pose = look_at(np.asarray(cam.position_m), np.asarray(cam.target_m), cam.roll_deg)
        r = spec.subject.radius_m
        znear = max(cam.distance_m - 3.5 * r, 0.02 * cam.distance_m)
        zfar = cam.distance_m + GROUND_EXTENT_RADII * r * 1.5
        return pose, perspective(cam.yfov_deg, znear, zfar), znear, zfar

    def _shadow_matrix(self, spec: SceneSpec) -> np.ndarray | None:
        key = next((lt for lt in spec.lights if lt.cast_shadow), None)
        if key is None:
            return None
        # Fit the light's orthographic frustum to the shadow casters (subject and occluders).
        pts = [np.asarray(spec.subject.center_m)]
        rads = [spec.subject.radius_m]
        for o in spec.occluders:
            pts.append(np.asarray(o.position_m))
            rads.append(0.87 * max(o.size_m))
        pts_a = np.array(pts)
        lo = (pts_a - np.array(rads)[:, None]).min(0)
        hi = (pts_a + np.array(rads)[:, None]).max(0)
        center = (lo + hi) / 2
        radius = float(np.linalg.norm(hi - lo) / 2)
        ldir = direction_from_angles(key.elevation_deg, key.azimuth_deg)
        eye = center + ldir * radius * 2.0
        view = np.linalg.inv(look_at(eye, center))
        # Long shadows of a low sun reach beyond the casters: extend the far plane along the light.
        far = radius * (3.0 + min(1.0 / max(math.sin(math.radians(key.elevation_deg)), 0.08), 12.0))
        return orthographic(radius, radius * 0.5, far) @ view

    @staticmethod
    def _screen_box(corners_world: np.ndarray, vp: np.ndarray) -> tuple[np.ndarray, float, float] | None:
        """NDC x/y box and eye-depth range of points; None when any lies behind the camera."""
        clip = corners_world @ vp.T
        w = clip[:, 3]
        if (w <= 1e-6).any():
            return None
        ndc = clip[:, :2] / w[:, None]
        return np.array([*ndc.min(0), *ndc.max(0)]), float(w.min()), float(w.max())

    def may_hide(self, spec: SceneSpec, posed: PosedSubject, vp: np.ndarray) -> bool:
        """Conservative: False only when no occluder can cover any on-screen pixel of the subject (their
        projected bounding boxes do not overlap on screen, or the occluder lies wholly behind the subject)."""
        if not spec.occluders:
            return False
        lo, hi = posed.bounds
        corners = np.array([[x, y, z, 1.0] for x in (lo[0], hi[0]) for y in (lo[1], hi[1]) for z in (lo[2], hi[2])])
        subj = self._screen_box(corners, vp)
        if subj is None:
            return True
        sb, _, s_far = subj
        sb = np.array([max(sb[0], -1), max(sb[1], -1), min(sb[2], 1), min(sb[3], 1)])
        for d in self._occluder_draws(spec):
            occ = self._screen_box(_UNIT_CUBE @ d.model.T, vp)
            if occ is None:
                return True
            ob, o_near, _ = occ
            if o_near < s_far and ob[0] < sb[2] and ob[2] > sb[0] and ob[1] < sb[3] and ob[3] > sb[1]:
                return True
        return False

    # -- passes -----------------------------------------------------------------------------------------------

    def _set_cull(self, d: _Draw, state: list) -> None:
        """Back-face culling for closed meshes (half the triangles of a subject never reach the rasteriser);
        double-sided materials draw both sides; mirrored transforms flip the winding."""
        gl = self._gl
        want = (not d.material.double_sided, d.mirrored)
        if state and state[0] == want:
            return
        if want[0]:
            gl.glEnable(gl.GL_CULL_FACE)
            gl.glFrontFace(gl.GL_CW if want[1] else gl.GL_CCW)
        else:
            gl.glDisable(gl.GL_CULL_FACE)
        state[:] = [want]

    def _draw_depth(self, draws: list[_Draw], vp: np.ndarray) -> None:
        gl = self._gl
        prog = self._programs["depth"]
        gl.glUseProgram(prog)
        self._mat4(prog, "VP", vp)
        cull: list = []
        for d in draws:
            self._set_cull(d, cull)
            self._mat4(prog, "M", d.model)
            gl.glBindVertexArray(d.primitive._vaid)
            gl.glDrawElements(gl.GL_TRIANGLES, d.primitive.n_indices, gl.GL_UNSIGNED_INT, ctypes.c_void_p(0))
        gl.glBindVertexArray(0)
        gl.glDisable(gl.GL_CULL_FACE)

    def _begin_main(self, *, with_mask: bool = True) -> None:
        gl = self._gl
        gl.glBindFramebuffer(gl.GL_FRAMEBUFFER, self._fb_ms)
        gl.glDrawBuffers(2, [gl.GL_COLOR_ATTACHMENT0, gl.GL_COLOR_ATTACHMENT1])
        gl.glViewport(0, 0, self.size, self.size)
        gl.glEnable(gl.GL_DEPTH_TEST)
        gl.glDepthFunc(gl.GL_LESS)
        gl.glDepthMask(gl.GL_TRUE)
        gl.glDisable(gl.GL_CULL_FACE)
        gl.glDisable(gl.GL_BLEND)
        gl.glEnable(gl.GL_MULTISAMPLE)
        gl.glClearColor(0.0, 0.0, 0.0, 0.0)
        gl.glClear(gl.GL_COLOR_BUFFER_BIT | gl.GL_DEPTH_BUFFER_BIT)
        if not with_mask:
            gl.glDrawBuffers(1, [gl.GL_COLOR_ATTACHMENT0])

    def _read(self, attachment, fmt, dtype, channels: int) -> np.ndarray:
        gl, s = self._gl, self.size
        if self._fb_ms != self._fb:
            gl.glBindFramebuffer(gl.GL_READ_FRAMEBUFFER, self._fb_ms)
            gl.glBindFramebuffer(gl.GL_DRAW_FRAMEBUFFER, self._fb)
            gl.glReadBuffer(attachment)
            gl.glDrawBuffers(1, [attachment])
            gl.glBlitFramebuffer(0, 0, s, s, 0, 0, s, s, gl.GL_COLOR_BUFFER_BIT, gl.GL_LINEAR)
        gl.glBindFramebuffer(gl.GL_READ_FRAMEBUFFER, self._fb)
        gl.glReadBuffer(attachment)
        data = np.frombuffer(gl.glReadPixels(0, 0, s, s, fmt, dtype), np.uint8)
        return data.reshape(s, s, channels)[::-1] if channels > 1 else data.reshape(s, s)[::-1]

    def _read_depth(self) -> np.ndarray:
        """Raw depth in [0, 1] (1 = nothing drawn), sample 0 of each pixel."""
        gl, s = self._gl, self.size
        if self._fb_ms != self._fb:
            gl.glBindFramebuffer(gl.GL_READ_FRAMEBUFFER, self._fb_ms)
            gl.glBindFramebuffer(gl.GL_DRAW_FRAMEBUFFER, self._fb)
            gl.glBlitFramebuffer(0, 0, s, s, 0, 0, s, s, gl.GL_DEPTH_BUFFER_BIT, gl.GL_NEAREST)
        gl.glBindFramebuffer(gl.GL_READ_FRAMEBUFFER, self._fb)
        depth = np.frombuffer(gl.glReadPixels(0, 0, s, s, gl.GL_DEPTH_COMPONENT, gl.GL_FLOAT), np.float32)
        return depth.reshape(s, s)[::-1]

    def _shadow_pass(self, draws: list[_Draw], light_vp: np.ndarray) -> None:
        gl = self._gl
        gl.glBindFramebuffer(gl.GL_FRAMEBUFFER, self._fb_shadow)
        gl.glViewport(0, 0, self.shadow_size, self.shadow_size)
        gl.glEnable(gl.GL_DEPTH_TEST)
        gl.glDepthMask(gl.GL_TRUE)
        gl.glClear(gl.GL_DEPTH_BUFFER_BIT)
        gl.glEnable(gl.GL_POLYGON_OFFSET_FILL)
        gl.glPolygonOffset(1.5, 4.0)
        self._draw_depth([d for d in draws if d.role != "ground"], light_vp)
        gl.glDisable(gl.GL_POLYGON_OFFSET_FILL)

    def _color_pass(self, spec: SceneSpec, draws: list[_Draw], vp, cam_pos, light_vp, toon: bool) -> None:
        gl = self._gl
        prog = self._programs["mesh"]
        self._begin_main(with_mask=True)
        gl.glUseProgram(prog)
        loc = self._loc
        self._mat4(prog, "VP", vp)
        self._mat4(prog, "light_VP", light_vp if light_vp is not None else np.eye(4))
        gl.glUniform3f(loc(prog, "cam_pos"), *map(float, cam_pos))
        amb = float(spec.ambient)
        gl.glUniform3f(loc(prog, "ambient"), amb, amb, amb)
        lights = spec.lights[:4]
        gl.glUniform1i(loc(prog, "n_lights"), len(lights))
        for i, lt in enumerate(lights):
            d = direction_from_angles(lt.elevation_deg, lt.azimuth_deg)
            gl.glUniform3f(loc(prog, f"light_dir[{i}]"), *map(float, d))
            gl.glUniform3f(loc(prog, f"light_rgb[{i}]"), *(float(c * lt.intensity) for c in lt.color))
        gl.glUniform1i(loc(prog, "use_shadow"), int(light_vp is not None))
        gl.glUniform1i(loc(prog, "toon"), int(toon))
        gl.glUniform1f(loc(prog, "shell_offset"), 0.0)
        gl.glUniform1f(loc(prog, "shell_level"), 0.0)  # 0: a plain surface; > 0 only while drawing fur shells
        gl.glUniform1f(loc(prog, "strand_cell"), FUR_STRAND_CELL_M)
        gl.glUniform1f(loc(prog, "fur_flat"), FUR_FLAT)
        gl.glActiveTexture(gl.GL_TEXTURE1)
        gl.glBindTexture(gl.GL_TEXTURE_2D, self._shadow_tex)
        gl.glUniform1i(loc(prog, "shadow_map"), 1)
        gl.glUniform1i(loc(prog, "base_tex"), 0)
        gl.glActiveTexture(gl.GL_TEXTURE0)
        big = 1e9
        gl.glUniform1f(loc(prog, "fade_start"), big)
        gl.glUniform1f(loc(prog, "fade_end"), 2 * big)
        extent = GROUND_EXTENT_RADII * spec.subject.radius_m
        fade = (0.45 * extent, 0.95 * extent)
        cull: list = []
        role = last_material = last_uv = None
        for d in draws:
            self._set_cull(d, cull)
            self._mat4(prog, "M", d.model)
            gl.glUniformMatrix3fv(loc(prog, "N"), 1, True, d.normal_matrix)
            if d.uv_transform is not last_uv:  # uniforms are set only when they change (PyOpenGL calls add up)
                last_uv = d.uv_transform
                gl.glUniformMatrix3fv(loc(prog, "uv_transform"), 1, True, d.uv_transform)
            if d.role != role:
                role = d.role
                # subject: write R and G = 1; occluders: clear G where in front; ground: leave the masks
                gl.glUniform1f(loc(prog, "mask_visible"), 1.0 if role == "subject" else 0.0)
                gl.glUniform1f(loc(prog, "mask_occluder"), 1.0 if role == "occluder" else 0.0)
                gl.glUniform1i(loc(prog, "toon_flat"), int(role != "subject"))
                write = {"subject": (True, True, True, True), "occluder": (False, True, True, False)}
                gl.glColorMaski(1, *write.get(role, (False, False, False, False)))
                if role == "ground":
                    gl.glUniform1f(loc(prog, "fade_start"), fade[0])
                    gl.glUniform1f(loc(prog, "fade_end"), fade[1])
            mat = d.material
            if mat is not last_material:
                last_material = mat
                gl.glUniform4f(loc(prog, "base_color"), *map(float, mat.base_color))
                gl.glUniform1f(loc(prog, "metallic"), float(mat.metallic))
                gl.glUniform1f(loc(prog, "roughness"), float(mat.roughness))
                tex = self._texture(mat)
                gl.glUniform1i(loc(prog, "has_texture"), int(tex is not None))
                if tex is not None:
                    tex._bind()
            gl.glBindVertexArray(d.primitive._vaid)
            gl.glDrawElements(gl.GL_TRIANGLES, d.primitive.n_indices, gl.GL_UNSIGNED_INT, ctypes.c_void_p(0))
            if d.fur_length > 0 and self.fur_shells > 0 and not toon:
                self._fur_shells(prog, d)
        gl.glBindVertexArray(0)
        gl.glDisable(gl.GL_CULL_FACE)
        gl.glColorMaski(1, True, True, True, True)

    def _fur_shells(self, prog: int, d: _Draw) -> None:
        """Draw `fur_shells` offset copies of a furry part (the same vertex buffer, pushed out along the
        normals by a uniform): shell fur, the classic real-time fur. The shadow pass leaves them out."""
        gl, loc = self._gl, self._loc
        fur, n = d.fur_length, self.fur_shells
        for i in range(1, n + 1):
            level = i / (n + 1)
            gl.glUniform1f(loc(prog, "shell_offset"), fur * level)
            gl.glUniform1f(loc(prog, "shell_level"), level)
            gl.glDrawElements(gl.GL_TRIANGLES, d.primitive.n_indices, gl.GL_UNSIGNED_INT, ctypes.c_void_p(0))
        gl.glUniform1f(loc(prog, "shell_offset"), 0.0)
        gl.glUniform1f(loc(prog, "shell_level"), 0.0)

    # -- public API -------------------------------------------------------------------------------------------

    def hidden_fraction(self, spec: SceneSpec, posed: PosedSubject) -> float:
        """The share of the subject's pixels the spec's occluders hide, measured from the rendered masks.

        Renders the image (kept: when the spec is accepted, `render` returns it without drawing again); 0
        without rendering when no occluder can reach the subject's pixels.
        """
        pose, proj, _, _ = self._camera(spec)
        if not self.may_hide(spec, posed, proj @ np.linalg.inv(pose)):
            return 0.0
        result = self.render(spec, posed)
        self._result_cache = (spec, id(posed), result)
        return 1.0 - result.visible_fraction

    def render(self, spec: SceneSpec, posed: PosedSubject) -> RenderResult:
        from drsynth import skies

        cached, self._result_cache = self._result_cache, None
        if cached is not None and cached[1] == id(posed) and cached[0] == spec:
            return cached[2]
        gl = self._gl
        self._platform.make_current()
        # Subject first: the mask attachment records all of it before occluders clear what they hide.
        draws = self._subject_draws(spec, posed) + self._occluder_draws(spec) + [self._ground_draw(spec)]
        pose, proj, znear, zfar = self._camera(spec)
        vp = proj @ np.linalg.inv(pose)
        light_vp = self._shadow_matrix(spec)
        if light_vp is not None:
            self._shadow_pass(draws, light_vp)
        toon = spec.style == "toon"
        self._color_pass(spec, draws, vp, pose[:3, 3], light_vp, toon)
        rgba = self._read(gl.GL_COLOR_ATTACHMENT0, gl.GL_RGBA, gl.GL_UNSIGNED_BYTE, 4)
        masks = self._read(gl.GL_COLOR_ATTACHMENT1, gl.GL_RGBA, gl.GL_UNSIGNED_BYTE, 4)
        # a pixel belongs to a mask when more than half of its samples do
        subject_mask = masks[..., 0] > 127
        visible = (masks[..., 1] > 127) & subject_mask

        n_subject = int(subject_mask.sum())
        if n_subject == 0:
            raise RenderError(
                f"subject not in view (seed {spec.seed}, index {spec.index}); check the camera ranges "
                "(distance, aim_offset) in the scenario"
            )
        visible_fraction = float(visible.sum()) / n_subject

        premult = rgba.astype(np.float32) * np.float32(1 / 255)
        alpha = premult[..., 3:4]
        if alpha.min() >= 1.0:  # the ground fills the view: no sky to draw
            out = premult[..., :3]
        else:
            sky_eq = skies.equirect(spec.sky, self.sky_image_dir)
            background = skies.background(sky_eq, pose, spec.camera.yfov_deg, self.size, spec.sky.yaw_deg)
            out = premult[..., :3] + background * (1.0 - alpha)
        occluders = masks[..., 2] > 127
        if self.smooth_edges:
            out = _smooth_edges(out, (visible, occluders, alpha[..., 0] > 0.5))
        if toon:
            out = _ink(out, _linear_depth(self._read_depth(), znear, zfar), visible, occluders)
        elif spec.sensor is not None:  # a cartoon has no lens or sensor
            out = apply_sensor(out, spec.sensor)
        image = (np.clip(out, 0, 1) * 255.0 + 0.5).astype(np.uint8)
        self._subject_cache = None  # posed subjects are per image: never reuse their draws
        return RenderResult(image, subject_mask, visible, visible_fraction, _bbox(visible))

    def close(self) -> None:
        """Free this renderer's GPU objects (the process's GL context stays for the next renderer)."""
        gl = self._gl
        with contextlib.suppress(Exception):
            self._platform.make_current()
            for prim in self._meshes.values():
                prim.delete()
            for tex in self._textures.values():
                tex.delete()
            self._meshes.clear()
            self._textures.clear()
            gl.glDeleteFramebuffers(len(self._fbs) + 1, [*self._fbs, self._fb_shadow])
            gl.glDeleteRenderbuffers(len(self._rbs), self._rbs)
            gl.glDeleteTextures(1, [self._shadow_tex])
            for prog in self._programs.values():
                gl.glDeleteProgram(prog)


def _linear_depth(raw: np.ndarray, znear: float, zfar: float) -> np.ndarray:
    """Eye-space distance from raw [0, 1] depth (0 where empty)."""
    z = raw.astype(np.float64) * 2.0 - 1.0
    lin = (2.0 * znear * zfar) / (zfar + znear - z * (zfar - znear))
    lin[raw >= 1.0] = 0.0
    return lin.astype(np.float32)


def _bbox(mask: np.ndarray) -> list[int] | None:
    ys = np.flatnonzero(mask.any(1))
    xs = np.flatnonzero(mask.any(0))
    if not len(xs):
        return None
    return [int(xs[0]), int(ys[0]), int(xs[-1]) + 1, int(ys[-1]) + 1]


def apply_sensor(img: np.ndarray, sensor: SensorSpec) -> np.ndarray:
    """Lens blur, then sensor noise, on an HxWx3 float image in [0, 1] (the sensor randomizer's effects).

    The blur is sized for 256-pixel images and scaled with the image. The noise is mostly luminance (one field
    shared by the channels) plus `chroma_noise` of per-channel noise, with a sigma that grows with brightness
    like photon noise: sqrt(0.3 + 0.7 * 2 * luminance) x `noise`, so `noise` is the sigma at mid-grey."""
    import cv2

    out = img
    scale = img.shape[0] / 256.0
    if sensor.blur_px > 0:
        out = cv2.GaussianBlur(out, (0, 0), sensor.blur_px * scale)
    if sensor.noise > 0:
        rng = np.random.default_rng(sensor.noise_seed)
        h, w = img.shape[:2]
        lum = rng.standard_normal((h, w, 1), dtype=np.float32)
        field = lum + np.float32(sensor.chroma_noise) * rng.standard_normal((h, w, 3), dtype=np.float32)
        field *= np.float32(1.0 / np.sqrt(1.0 + sensor.chroma_noise**2))  # unit variance per channel
        grey = np.clip(out.mean(axis=2, keepdims=True), 0.0, 1.0)
        out = out + np.float32(sensor.noise) * np.sqrt(0.3 + 1.4 * grey) * field
    return out


def _smooth_edges(img: np.ndarray, masks: tuple[np.ndarray, ...]) -> np.ndarray:
    """Anti-aliasing for single-sample renders: blend a slight blur in along object silhouettes only (where
    the subject, occluders or the sky boundary change), so textures stay sharp. ~1 ms against ~14 ms for 4x
    MSAA on a CPU rasteriser."""
    import cv2

    kernel = np.ones((3, 3), np.uint8)
    edges = np.zeros(img.shape[:2], np.uint8)
    for m in masks:
        m8 = m.astype(np.uint8)
        edges |= cv2.dilate(m8, kernel) - cv2.erode(m8, kernel)
    if not edges.any():
        return img
    w = cv2.GaussianBlur(edges.astype(np.float32), (3, 3), 0.7)[..., None] * np.float32(0.85)
    blur = cv2.GaussianBlur(img, (3, 3), 0.85)
    return img + (blur - img) * w


def _ink(img: np.ndarray, linear_depth: np.ndarray, subject: np.ndarray, occluders: np.ndarray) -> np.ndarray:
    """Toon ink lines: object outlines (subject, occluders) and, inside objects, where depth jumps or bends
    sharply (limbs in front of bodies, creases). The ground gets none: its depth grows steeply towards the
    horizon, which is not an edge."""
    import cv2

    kernel = np.ones((3, 3), np.uint8)

    def outline(mask: np.ndarray) -> np.ndarray:
        m = mask.astype(np.uint8)
        return (cv2.dilate(m, kernel) - cv2.erode(m, kernel)).astype(bool) & (cv2.dilate(m, kernel) > 0)

    objects = subject | occluders
    d = np.where(linear_depth > 0, linear_depth, linear_depth.max() + 1.0).astype(np.float32)
    logd = np.log(d)
    gx = cv2.Sobel(logd, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(logd, cv2.CV_32F, 0, 1, ksize=3)
    inner = cv2.erode(objects.astype(np.uint8), kernel).astype(bool)
    jump = (np.hypot(gx, gy) > 0.25) & inner
    crease = (np.abs(cv2.Laplacian(logd, cv2.CV_32F, ksize=3)) > 0.06) & inner
    lines = outline(subject) | outline(occluders) | jump | crease
    out = img.copy()
    out[lines] *= 0.08
    return out
