"""The typed Scenario: what to render (classes and their subject pools), the randomizers with their switches
and ranges, and render options. Loaded from YAML presets (`assets/scenarios/*.yaml`) and validated up front,
so a bad value fails before any image is rendered, with one message naming the key, the value and the fix.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from drsynth.errors import ConfigError
from drsynth.randomizers.camera import CameraConfig
from drsynth.randomizers.lighting import LightingConfig
from drsynth.randomizers.materials import MaterialsConfig
from drsynth.randomizers.occluders import OccludersConfig
from drsynth.randomizers.pose import PoseConfig
from drsynth.randomizers.sensor import SensorConfig
from drsynth.randomizers.sky import SkyConfig
from drsynth.randomizers.subject import SubjectConfig
from drsynth.randomizers.subject_texture import SubjectTextureConfig
from drsynth.rng import MAX_SEED
from drsynth.subjects.config import ClassSubjects

#: The randomizers, in the order they run.
RANDOMIZER_NAMES = (
    "subject",
    "pose",
    "camera",
    "lighting",
    "sky",
    "sensor",
    "occluders",
    "materials",
    "subject_texture",
)


class Randomizers(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    subject: SubjectConfig = SubjectConfig()
    pose: PoseConfig = PoseConfig()
    camera: CameraConfig = CameraConfig()
    lighting: LightingConfig = LightingConfig()
    sky: SkyConfig = SkyConfig()
    sensor: SensorConfig = SensorConfig()
    occluders: OccludersConfig = OccludersConfig()
    materials: MaterialsConfig = MaterialsConfig()
    subject_texture: SubjectTextureConfig = SubjectTextureConfig()


#: Parameters `class_overrides` may not change, and why.
NOT_OVERRIDABLE = {
    "enabled": "switching a randomizer on or off is scenario-wide (the ablations); use randomizers.<name>.enabled",
    "image_dir": "asset folders are loaded once per worker for every class; set it in randomizers.<name>",
    "families": "the material list is loaded once per worker for every class; set it in randomizers.materials",
}


class ClassOverrides(BaseModel):
    """Per-class parameters of the randomizers ("structured" domain randomization): each mapping is merged
    over the scenario-wide `randomizers.<name>` for the images of that class, e.g. `camera: {azimuth_deg:
    [45, 135]}` for vehicles photographed from the side. Validated like `randomizers` (see `Scenario`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    pose: dict[str, Any] | None = None
    camera: dict[str, Any] | None = None
    lighting: dict[str, Any] | None = None
    sky: dict[str, Any] | None = None
    sensor: dict[str, Any] | None = None
    occluders: dict[str, Any] | None = None
    materials: dict[str, Any] | None = None
    subject_texture: dict[str, Any] | None = None

    def changes(self) -> dict[str, dict[str, Any]]:
        """randomizer name -> the parameters this class changes (only randomizers it names)."""
        return {name: dict(v) for name in type(self).model_fields if (v := getattr(self, name)) is not None}


class RenderOptions(BaseModel):
    """shadow_map_size: resolution of the key light's shadow map (fitted to the subject and occluders);
    msaa_samples: multisampling per pixel (4 costs ~50% more time on a CPU rasteriser than 1);
    smooth_edges: blend a slight blur along silhouettes (cheap anti-aliasing for single-sample renders);
    fur_shells: shell-fur layers drawn over furry coats (0 = none; each layer redraws the coat once);
    jpeg_quality: of the written images."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    shadow_map_size: Literal[256, 512, 1024, 2048, 4096] = 1024
    msaa_samples: Literal[1, 2, 4, 8] = 1
    smooth_edges: bool = True
    fur_shells: int = Field(0, ge=0, le=8)
    jpeg_quality: int = Field(90, ge=30, le=100)


class Scenario(BaseModel):
    """A complete, resolved description of a dataset's look (everything except which indices to render)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = "scenario"
    seed: int = Field(0, ge=0, le=MAX_SEED)
    image_size: int = Field(256, ge=16, le=4096)
    style: Literal["pbr", "toon"] = "pbr"
    classes: dict[str, ClassSubjects]
    randomizers: Randomizers = Randomizers()
    class_overrides: dict[str, ClassOverrides] = {}
    render: RenderOptions = RenderOptions()

    @field_validator("classes")
    @classmethod
    def _non_empty(cls, v: dict[str, ClassSubjects]) -> dict[str, ClassSubjects]:
        if not v:
            raise ValueError("classes must list at least one class, e.g. {cat: {procedural: cat}}")
        return v

    @model_validator(mode="after")
    def _check_class_overrides(self) -> Scenario:
        for class_name in self.class_overrides:
            if class_name not in self.classes:
                raise ValueError(
                    f"class_overrides.{class_name}: unknown class '{class_name}'; this scenario's classes: "
                    f"{', '.join(self.classes)}"
                )
            self.randomizers_for(class_name)  # raises on an unknown or invalid parameter
        return self

    def randomizers_for(self, class_name: str) -> Randomizers:
        """The randomizer configs for images of `class_name`: `randomizers` with the class's overrides merged
        in (each overridden config validated as a whole). Raises ValueError naming the bad key."""
        override = self.class_overrides.get(class_name)
        if override is None:
            return self.randomizers
        update = {}
        for name, changes in override.changes().items():
            where = f"class_overrides.{class_name}.{name}"
            base = getattr(self.randomizers, name)
            valid = [k for k in type(base).model_fields if k not in NOT_OVERRIDABLE]
            for key in changes:
                if key in NOT_OVERRIDABLE:
                    raise ValueError(f"{where}.{key} cannot be set per class: {NOT_OVERRIDABLE[key]}")
                if key not in valid:
                    raise ValueError(f"unknown key '{key}' at {where}.{key}; valid: {', '.join(valid)}")
            try:
                update[name] = type(base).model_validate({**base.model_dump(), **changes})
            except ValidationError as e:
                raise ValueError(
                    "; ".join(
                        f"{where}.{'.'.join(map(str, err['loc']))}: {err['msg'].removeprefix('Value error, ')} "
                        f"(got {err.get('input')!r})"
                        for err in e.errors()
                    )
                ) from None
        return self.randomizers.model_copy(update=update)

    @property
    def class_names(self) -> list[str]:
        return list(self.classes)

    @property
    def disabled(self) -> list[str]:
        return [n for n in RANDOMIZER_NAMES if not getattr(self.randomizers, n).enabled]

    def class_of(self, index: int) -> str:
        """The class of image `index`: classes cycle, so any count is balanced and any range reproducible."""
        return self.class_names[index % len(self.classes)]

    def with_overrides(
        self,
        *,
        seed: int | None = None,
        image_size: int | None = None,
        disable: list[str] | tuple[str, ...] = (),
        enable: list[str] | tuple[str, ...] = (),
        style: str | None = None,
        classes: list[str] | None = None,
    ) -> Scenario:
        """A copy with command-line overrides applied (and validated)."""
        data = self.model_dump()
        for name in [*disable, *enable]:
            if name not in RANDOMIZER_NAMES:
                raise ConfigError(f"unknown randomizer '{name}'; valid randomizers: {', '.join(RANDOMIZER_NAMES)}")
        for name in disable:
            data["randomizers"][name]["enabled"] = False
        for name in enable:
            data["randomizers"][name]["enabled"] = True
        if seed is not None:
            data["seed"] = seed
        if image_size is not None:
            data["image_size"] = image_size
        if style is not None:
            data["style"] = style
        if classes is not None:
            unknown = [c for c in classes if c not in self.classes]
            if unknown or not classes:
                raise ConfigError(f"unknown classes {unknown}; this scenario has {self.class_names}")
            data["classes"] = {c: data["classes"][c] for c in classes}
            data["class_overrides"] = {c: v for c, v in data["class_overrides"].items() if c in classes}
        return parse_scenario(data, source=f"scenario '{self.name}' with overrides")

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


def parse_scenario(data: Any, *, source: str = "scenario", base_dir: Path | None = None) -> Scenario:
    """Validate a scenario mapping; relative folders resolve against `base_dir` and must exist."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping of scenario keys, got {type(data).__name__}")
    try:
        scenario = Scenario.model_validate(data)
    except ValidationError as e:
        raise ConfigError(f"{source}: {_explain(e)}") from None
    return _resolve_folders(scenario, source=source, base_dir=base_dir)


def load_scenario(
    path: str | Path,
    *,
    seed: int | None = None,
    image_size: int | None = None,
    disable: list[str] | tuple[str, ...] = (),
    enable: list[str] | tuple[str, ...] = (),
    style: str | None = None,
    classes: list[str] | None = None,
) -> Scenario:
    """Load a YAML scenario and apply overrides. Errors are `ConfigError`s naming the file and key."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"scenario file {path} does not exist; presets live in assets/scenarios/")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise ConfigError(f"scenario file {path} is not valid YAML: {e}") from None
    if isinstance(data, dict):
        data.setdefault("name", path.stem)
    scenario = parse_scenario(data, source=str(path), base_dir=path.parent)
    if seed is None and image_size is None and not disable and not enable and style is None and classes is None:
        return scenario
    return scenario.with_overrides(
        seed=seed, image_size=image_size, disable=disable, enable=enable, style=style, classes=classes
    )


def _resolve_folders(scenario: Scenario, *, source: str, base_dir: Path | None) -> Scenario:
    def fix(p: Path | None, key: str) -> Path | None:
        if p is None:
            return None
        q = p if p.is_absolute() or base_dir is None else (base_dir / p)
        if not q.is_dir():
            raise ConfigError(f"{source}: {key} folder {q} does not exist; create it or set {key} to null")
        return q.resolve()

    r = scenario.randomizers
    classes = {
        name: c.model_copy(update={"models_dir": fix(c.models_dir, f"classes.{name}.models_dir")})
        for name, c in scenario.classes.items()
    }
    rz = r.model_copy(
        update={
            "sky": r.sky.model_copy(update={"image_dir": fix(r.sky.image_dir, "randomizers.sky.image_dir")}),
            "materials": r.materials.model_copy(
                update={"image_dir": fix(r.materials.image_dir, "randomizers.materials.image_dir")}
            ),
        }
    )
    for name, c in classes.items():
        if c.procedural is not None:
            from drsynth.subjects.registry import GENERATORS

            if c.procedural not in GENERATORS:
                raise ConfigError(
                    f"{source}: classes.{name}.procedural: unknown generator '{c.procedural}'; "
                    f"known: {sorted(GENERATORS)}"
                )
        if c.procedural is None and c.models_dir is None:
            raise ConfigError(f"{source}: classes.{name} needs `procedural: <generator>` or `models_dir: <folder>`")
    if r.materials.families is not None:
        from drsynth.materials import library_keys

        try:
            library_keys(r.materials.families)
        except ConfigError as e:
            raise ConfigError(f"{source}: randomizers.materials.families: {e}") from None
    return scenario.model_copy(update={"classes": classes, "randomizers": rz})


def _valid_keys(loc: tuple) -> list[str] | None:
    model: Any = Scenario
    for part in loc[:-1]:
        if isinstance(model, type) and issubclass(model, BaseModel) and part in model.model_fields:
            ann = model.model_fields[part].annotation
            model = ann
            if part == "classes":
                model = "classes"
            elif part == "class_overrides":
                model = "class_overrides"
        elif model == "classes":
            model = ClassSubjects
        elif model == "class_overrides":
            model = ClassOverrides
        else:
            return None
    if isinstance(model, type) and issubclass(model, BaseModel):
        return list(model.model_fields)
    return None


def _explain(e: ValidationError) -> str:
    msgs = []
    for err in e.errors():
        loc = tuple(err["loc"])
        where = ".".join(str(p) for p in loc) or "(top level)"
        if not loc:  # a whole-scenario check: its message names its own keys
            msgs.append(err["msg"].removeprefix("Value error, "))
        elif err["type"] == "extra_forbidden":
            valid = _valid_keys(loc)
            randomizer_key = (loc[:1] == ("randomizers",) and len(loc) == 2) or (
                loc[:1] == ("class_overrides",) and len(loc) == 3
            )
            what = "randomizer" if randomizer_key else "key"
            hint = f"; valid: {', '.join(valid)}" if valid else ""
            msgs.append(f"unknown {what} '{loc[-1]}' at {where}{hint}")
        else:
            msg = err["msg"].removeprefix("Value error, ")
            msgs.append(f"{where}: {msg} (got {err.get('input')!r})")
    return "; ".join(msgs)
