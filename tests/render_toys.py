"""A tiny real Subject for renderer tests (so they don't depend on the procedural generators' speed)."""

from __future__ import annotations

import numpy as np
import trimesh

from drsynth import materials
from drsynth.config import parse_scenario
from drsynth.randomizers.base import SceneContext
from drsynth.subjects.base import Part, Subject, SurfaceMaterial


def _t(xyz, rot=None) -> np.ndarray:
    m = np.eye(4)
    m[:3, 3] = xyz
    if rot is not None:
        m[:3, :3] = rot
    return m


class ToyAnimal(Subject):
    """Capsule body, sphere head, four cylinder legs, two eyes; `neck` moves the head."""

    def __init__(self, class_name: str, breed: str, color, scale: float = 1.0, fur: float = 0.0) -> None:
        self.id = f"{class_name}/toy/{breed}"
        self.class_name = class_name
        self.breed = breed
        self.source = "procedural"
        self.scale = scale
        self.fur = SurfaceMaterial(
            key=f"toy/{breed}/fur", base_color=(*color, 1.0), roughness=0.6, fur_length=fur
        )
        self.eye = SurfaceMaterial(key="toy/eye", base_color=(0.02, 0.02, 0.02, 1.0), roughness=0.2)
        s = scale
        self.meshes = {
            "body": trimesh.creation.capsule(height=0.4 * s, radius=0.12 * s, count=[12, 8]),
            "head": trimesh.creation.icosphere(subdivisions=2, radius=0.1 * s),
            "leg": trimesh.creation.cylinder(radius=0.03 * s, height=0.25 * s, sections=10),
            "eye": trimesh.creation.icosphere(subdivisions=1, radius=0.02 * s),
        }

    def default_pose(self):
        return {"neck": 0.0}

    def sample_pose(self, rng):
        return {"neck": float(rng.uniform(-0.5, 0.5))}

    def parts(self, pose):
        s, k = self.scale, f"toy/{self.scale}"
        along_x = trimesh.transformations.rotation_matrix(np.pi / 2, [0, 1, 0])[:3, :3]
        upright = trimesh.transformations.rotation_matrix(np.pi / 2, [1, 0, 0])[:3, :3]
        head_y = (0.5 + 0.1 * pose["neck"]) * s
        out = [
            Part(f"{k}/body", self.meshes["body"], _t([0, 0.37 * s, 0], along_x), self.fur),
            Part(f"{k}/head", self.meshes["head"], _t([0.3 * s, head_y, 0]), self.fur),
        ]
        for x, z in [(0.15, 0.07), (0.15, -0.07), (-0.15, 0.07), (-0.15, -0.07)]:
            out.append(Part(f"{k}/leg", self.meshes["leg"], _t([x * s, 0.125 * s, z * s], upright), self.fur))
        for z in (0.04, -0.04):
            out.append(Part(f"{k}/eye", self.meshes["eye"], _t([0.39 * s, head_y + 0.03 * s, z * s]), self.eye, False))
        return out


def toy_pools(same_size: bool = False, fur: float = 0.0) -> dict[str, list[Subject]]:
    dog_scale = 1.0 if same_size else 1.5
    return {
        "cat": [ToyAnimal("cat", "orange", (0.9, 0.5, 0.1), fur=fur), ToyAnimal("cat", "grey", (0.5, 0.5, 0.55), fur=fur)],
        "dog": [ToyAnimal("dog", "brown", (0.45, 0.3, 0.15), dog_scale, fur), ToyAnimal("dog", "white", (0.9, 0.9, 0.85), dog_scale, fur)],
    }


def toy_context(scenario, same_size: bool = False, fur: float = 0.0) -> SceneContext:
    """`fur`: shell-fur length (metres) of every toy's coat."""
    pools = toy_pools(same_size, fur)
    if same_size:  # every subject the same geometry: a subject switch then changes nothing else
        pools = {c: [ToyAnimal(c, s.breed, (0.5, 0.5, 0.5)) for s in p] for c, p in pools.items()}
    r = scenario.randomizers
    return SceneContext(
        classes=scenario.class_names,
        pools={c: pools[c] for c in scenario.class_names},
        singles={c: pools[c][0] for c in scenario.class_names},
        material_keys=materials.library_keys(r.materials.families) + materials.image_keys(r.materials.image_dir),
        material_image_dir=r.materials.image_dir,
        sky_images=[],
    )


def toy_scenario(**overrides):
    data = {"name": "toy", "seed": 7, "image_size": 64, "classes": {"cat": {"procedural": "cat"}, "dog": {"procedural": "dog"}}}
    data.update(overrides)
    return parse_scenario(data, source="toy scenario")


def two_breed_data(name: str, *, seed: int, image_size: int) -> dict:
    """A scenario (as YAML data) of procedural cats and dogs with one breed each: the smallest real pool."""
    return {
        "name": name,
        "seed": seed,
        "image_size": image_size,
        "classes": {
            "cat": {"procedural": "cat", "breeds": ["siamese"], "blends": 0},
            "dog": {"procedural": "dog", "breeds": ["beagle"], "blends": 0},
        },
    }
