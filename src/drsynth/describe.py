"""The scenario loop for one image (Unity Perception's iteration; Kubric's "describe" step).

`describe_scene` makes a fresh spec for image `index`, then runs each randomizer in order, each with its own
generator (seed, index, name). The occluder layout is redrawn (bounded) while the measured hidden fraction of
the subject exceeds the configured maximum.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from drsynth.config import RANDOMIZER_NAMES, Scenario
from drsynth.errors import RenderError
from drsynth.randomizers.base import Randomizer, SceneContext
from drsynth.randomizers.camera import CameraRandomizer
from drsynth.randomizers.lighting import LightingRandomizer
from drsynth.randomizers.materials import MaterialsRandomizer
from drsynth.randomizers.occluders import OccludersRandomizer
from drsynth.randomizers.pose import PoseRandomizer
from drsynth.randomizers.sensor import SensorRandomizer
from drsynth.randomizers.sky import SkyRandomizer
from drsynth.randomizers.subject import PosedSubject, SubjectRandomizer, pose_subject
from drsynth.randomizers.subject_texture import SubjectTextureRandomizer
from drsynth.rng import image_rng
from drsynth.scene_spec import SceneSpec

RANDOMIZER_TYPES: dict[str, type[Randomizer]] = {
    "subject": SubjectRandomizer,
    "pose": PoseRandomizer,
    "camera": CameraRandomizer,
    "lighting": LightingRandomizer,
    "sky": SkyRandomizer,
    "sensor": SensorRandomizer,
    "occluders": OccludersRandomizer,
    "materials": MaterialsRandomizer,
    "subject_texture": SubjectTextureRandomizer,
}
assert tuple(RANDOMIZER_TYPES) == RANDOMIZER_NAMES

#: measures the fraction of the posed subject's pixels hidden by the spec's occluders
HiddenFraction = Callable[[SceneSpec, PosedSubject], float]


#: class name -> randomizer name -> randomizer (configured with that class's overrides, if any)
ClassRandomizers = dict[str, dict[str, Randomizer]]


def build_randomizers(scenario: Scenario) -> ClassRandomizers:
    """The randomizers of every class: the scenario-wide ones, shared, except for classes with
    `class_overrides`, which get their own (configured from `Scenario.randomizers_for`)."""
    shared = _randomizers(scenario.randomizers)
    return {
        c: _randomizers(scenario.randomizers_for(c)) if c in scenario.class_overrides else shared
        for c in scenario.class_names
    }


def _randomizers(configs) -> dict[str, Randomizer]:
    return {name: cls(getattr(configs, name)) for name, cls in RANDOMIZER_TYPES.items()}


def build_context(scenario: Scenario) -> SceneContext:
    """Subject pools and asset lists (the slow part: procedural subjects are generated here, once)."""
    from drsynth import materials, skies
    from drsynth.subjects.registry import build_pool, single_subject

    pools = {name: build_pool(name, cfg, seed=scenario.seed) for name, cfg in scenario.classes.items()}
    singles = {name: single_subject(pools[name], cfg) for name, cfg in scenario.classes.items()}
    r = scenario.randomizers
    keys = materials.library_keys(r.materials.families) + materials.image_keys(r.materials.image_dir)
    return SceneContext(
        classes=scenario.class_names,
        pools=pools,
        singles=singles,
        material_keys=keys,
        material_image_dir=r.materials.image_dir,
        sky_images=skies.image_names(r.sky.image_dir),
        sky_image_dir=r.sky.image_dir,
    )


def describe_scene(
    scenario: Scenario,
    ctx: SceneContext,
    index: int,
    *,
    randomizers: ClassRandomizers | None = None,
    hidden_fraction: HiddenFraction | None = None,
    subject_id: str | None = None,
) -> tuple[SceneSpec, PosedSubject]:
    """The scene of image `index`, and its posed subject. Without `hidden_fraction` the first occluder layout
    is kept (no renderer needed, e.g. for inspecting specs). `subject_id` forces the subject (previews by
    breed); it must be of the image's class. `randomizers` (from `build_randomizers`) saves rebuilding them."""
    seed = scenario.seed
    class_name = scenario.class_of(index)
    rz = (randomizers or build_randomizers(scenario))[class_name]
    spec = SceneSpec(
        index=index,
        seed=seed,
        class_name=class_name,
        label=scenario.class_names.index(class_name),
        image_size=scenario.image_size,
        style=scenario.style,
    )
    rngs = {name: image_rng(seed, index, name) for name in RANDOMIZER_NAMES}
    spec = rz["subject"].apply(spec, rng=rngs["subject"], ctx=ctx)
    if subject_id is not None:
        forced = ctx.subject(subject_id)
        if forced.class_name != class_name:
            raise ValueError(f"subject {subject_id} is a {forced.class_name}, image {index} is a {class_name}")
        spec = spec.replace(subject=replace(spec.subject, id=forced.id, breed=forced.breed, source=forced.source))
    spec = rz["pose"].apply(spec, rng=rngs["pose"], ctx=ctx)
    posed = pose_subject(ctx.subject(spec.subject.id), spec.subject.pose)
    spec = spec.replace(
        subject=replace(
            spec.subject,
            bounds_m=(tuple(map(float, posed.bounds[0])), tuple(map(float, posed.bounds[1]))),
            center_m=tuple(map(float, posed.center)),
            radius_m=posed.radius,
            head_center_m=None if posed.head_center is None else tuple(map(float, posed.head_center)),
            head_radius_m=posed.head_radius,
        )
    )
    for name in ("camera", "lighting", "sky", "sensor"):
        spec = rz[name].apply(spec, rng=rngs[name], ctx=ctx)

    # Occluder layouts are drawn from one stream until one hides at most the allowed share of the subject.
    # Materials are assigned to every candidate from fresh generators (the same draws each time), so the
    # checked spec is the final one and the renderer can keep the image it measured.
    occ = rz["occluders"]
    cfg = occ.config
    tries = 0
    least = 1.0
    while True:
        tries += 1
        candidate = occ.apply(spec, rng=rngs["occluders"], ctx=ctx).replace(occluder_tries=tries)
        for name in ("materials", "subject_texture"):
            candidate = rz[name].apply(candidate, rng=image_rng(seed, index, name), ctx=ctx)
        if not candidate.occluders or hidden_fraction is None:
            break
        hidden = hidden_fraction(candidate, posed)
        if hidden <= cfg.max_hidden_fraction:
            break
        least = min(least, hidden)
        if tries >= cfg.max_tries:
            raise RenderError(
                f"occluders randomizer: no layout hid at most {cfg.max_hidden_fraction:.0%} of the subject in "
                f"{tries} tries (seed {seed}, index {index}; the best hid {least:.0%}); raise "
                "randomizers.occluders.max_hidden_fraction or max_tries, or lower occluders.size / raise "
                "occluders.distance"
            )
    return candidate, posed


__all__ = [
    "ClassRandomizers",
    "HiddenFraction",
    "RANDOMIZER_TYPES",
    "PosedSubject",
    "SceneContext",
    "build_context",
    "build_randomizers",
    "describe_scene",
    "pose_subject",
]
