"""The plan of one pipeline run: which datasets to render or import, where they go, and which models to train.

`plan_run(cfg)` turns a `RunConfig` into a JSON-able `RunPlan`, the single source the pipeline's steps read
(as a KFP parameter, or in process). It follows `drsynth.studies` exactly (the same scenarios, held-out breeds,
seeds, model specs and evaluation domains as `drsynth study`), but names every dataset by what it contains, so
a dataset whose content did not change keeps its URI between runs (and its render tasks stay cached):

    {store_uri}/datasets/{name}-{digest of (scenario, count, shard size)}

Datasets (the pipeline has one render loop + one package task per render dataset, named here):

- `synth-<condition>`: training renders, one per ablation condition (`synth-control` also serves the
  architecture and transfer studies), of the 2-class scenario's training breeds;
- `synth4`: training renders of the 4-class scenario (scaling study);
- `test-synthetic`, `test-toon`, `test-synthetic4`: held-out-breed renders (another seed; toon style), the test
  domains drsynth makes itself;
- `real-train`, `real-test`, `toon`: imports of the user's photo / cartoon folders.

A dataset the plan does not need is planned as `skip` (the pipeline's tasks for it finish at once).
"""

from __future__ import annotations

import hashlib
import json
import math
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from drsynth import __version__
from drsynth.errors import ConfigError
from drsynth.presets import RunConfig
from drsynth.studies import ABLATIONS, CONTROL_VARIANT, DomainInfo, ModelSpec, plan_study

PLAN_FORMAT = "drsynth-plan/1"
# Every render dataset a run can have, in pipeline order (the pipeline is built from this list).
RENDER_DATASETS: tuple[str, ...] = (
    *(f"synth-{c}" for c in ABLATIONS),
    "synth4",
    "test-synthetic",
    "test-toon",
    "test-synthetic4",
)
IMPORT_DATASETS: tuple[str, ...] = ("real-train", "real-test", "toon")


class DatasetPlan(BaseModel):
    """One dataset of the run: renders of a scenario variant, or an import of a user folder."""

    model_config = ConfigDict(extra="forbid")

    name: str
    source: Literal["render", "import", "skip"]
    uri: str = ""
    role: Literal["train", "test"] = "train"
    scenario: str | None = Field(None, description="key into RunPlan.scenarios (renders)")
    seed: int = 0
    style: str | None = None
    disabled: list[str] = Field(default_factory=list)
    enabled: list[str] = Field(default_factory=list)
    count: int = 0
    shard_size: int = 1000
    import_from: str | None = Field(None, description="the user's folder/prefix (imports)")
    import_split: Literal["all", "train", "test"] = "all"
    description: str = ""
    curate_keep: float = Field(0.0, description="renders: share of each class packaged after `drsynth curate` (0: all)")
    curate_weights: str | None = None


class DomainPlan(DomainInfo):
    """An evaluation domain (run.json `domains`), made by one of the run's datasets."""

    dataset: str


class RunPlan(BaseModel):
    model_config = ConfigDict(extra="forbid")

    format: str = PLAN_FORMAT
    config: RunConfig
    scenarios: dict[str, dict[str, Any]] = Field(description="resolved scenarios: '<ref> (training)' / '(held-out test)'")
    class_names: list[str] = Field(description="classes of the 2-class scenario")
    datasets: dict[str, DatasetPlan]
    domains: dict[str, DomainPlan]
    notes: list[str] = Field(default_factory=list)
    drsynth_version: str = __version__

    @classmethod
    def parse(cls, data: dict[str, Any] | RunPlan) -> RunPlan:
        if isinstance(data, RunPlan):
            return data
        if not isinstance(data, dict) or data.get("format") != PLAN_FORMAT:
            got = data.get("format") if isinstance(data, dict) else type(data).__name__
            raise ConfigError(f"expected a run plan of format {PLAN_FORMAT} (from plan_run), got {got!r}")
        return cls.model_validate(data)

    def dump(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    def dataset(self, name: str) -> DatasetPlan:
        if name not in self.datasets:
            raise ConfigError(f"dataset {name!r} is not part of this run plan (has {sorted(self.datasets)})")
        return self.datasets[name]

    def scenario_of(self, ds: DatasetPlan) -> Any:
        """The fully resolved `Scenario` a render dataset renders."""
        from drsynth.config import parse_scenario

        if ds.source != "render" or ds.scenario is None:
            raise ConfigError(f"dataset {ds.name} is not a render dataset")
        base = parse_scenario(self.scenarios[ds.scenario], source=f"run plan scenario {ds.scenario!r}")
        return base.with_overrides(seed=ds.seed, disable=ds.disabled, enable=ds.enabled, style=ds.style)


# --- scenarios ----------------------------------------------------------------------------------------------


def limit_breeds(scenario: Any, max_breeds: int) -> Any:
    """At most `max_breeds` breed presets per procedural class (the first ones, in preset order) and no
    blends: fewer distinct subjects to build per render task (the quick presets)."""
    if max_breeds <= 0:
        return scenario
    from drsynth.config import parse_scenario
    from drsynth.subjects.registry import generator_module

    data = scenario.model_dump()
    for name, cs in scenario.classes.items():
        if cs.procedural is None:
            continue
        breeds = list(cs.breeds) if cs.breeds else list(generator_module(cs.procedural).preset_names())
        data["classes"][name]["breeds"] = breeds[:max_breeds]
        data["classes"][name]["blends"] = 0
        if cs.single is not None and cs.single not in breeds[:max_breeds]:
            data["classes"][name]["single"] = None
    return parse_scenario(data, source=f"scenario '{scenario.name}' (at most {max_breeds} breeds per class)")


def _scenario_pair(ref: str, cfg: RunConfig, notes: list[str]) -> tuple[Any, Any]:
    from drsynth.studies import load_scenario_ref, split_breeds

    base = load_scenario_ref(ref).with_overrides(image_size=cfg.study.render_size)
    base = limit_breeds(base, cfg.max_breeds)
    train, test, split_notes = split_breeds(base, cfg.study.holdout_fraction)
    notes.extend(n for n in split_notes if n not in notes)
    return train, test


def _digest(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:10]


def _join(store_uri: str, *parts: str) -> str:
    return "/".join([store_uri.rstrip("/"), *parts])


# --- the plan -------------------------------------------------------------------------------------------------


def plan_run(cfg: RunConfig) -> RunPlan:
    """Resolve scenarios, datasets (with their store URIs) and domains for `cfg`."""
    s = cfg.study
    from drsynth.models import BACKBONES  # fail before any task starts, not in the first training task

    if s.backbone not in BACKBONES:
        raise ConfigError(f"backbone {s.backbone!r} is unknown: expected one of {', '.join(BACKBONES)}")
    notes: list[str] = []
    scenarios: dict[str, dict[str, Any]] = {}
    pairs: dict[str, tuple[Any, Any]] = {}

    def pair(ref: str) -> tuple[str, str]:
        if ref not in pairs:
            pairs[ref] = _scenario_pair(ref, cfg, notes)
            scenarios[f"{ref} (training)"] = pairs[ref][0].to_json()
            scenarios[f"{ref} (held-out test)"] = pairs[ref][1].to_json()
        return f"{ref} (training)", f"{ref} (held-out test)"

    train2, test2 = pair(s.scenario)
    class_names = list(pairs[s.scenario][0].class_names)
    datasets: dict[str, DatasetPlan] = {}
    domains: dict[str, DomainPlan] = {}

    def render_ds(name: str, key: str, *, role: str, seed: int, style: str | None = None,
                  disabled: list[str] | None = None, enabled: list[str] | None = None,
                  per_class: int, description: str) -> DatasetPlan:
        n_classes = len(scenarios[key]["classes"])
        curated = role == "train" and s.curate_keep > 0  # test domains stay as rendered
        if curated:
            from drsynth.curate import check_classes

            check_classes(list(scenarios[key]["classes"]), where=f"curate_keep {s.curate_keep} (dataset {name})")
        ds = DatasetPlan(name=name, source="render", role=role, scenario=key, seed=seed, style=style,
                         disabled=list(disabled or []), enabled=list(enabled or []),
                         count=(s.rendered_per_class(per_class) if curated else per_class) * n_classes,
                         shard_size=cfg.shard_size, description=description,
                         curate_keep=s.curate_keep if curated else 0.0,
                         curate_weights=s.curate_weights if curated else None)
        if curated:
            ds.description += f"; the best {s.curate_keep:.0%} by ImageNet group probability (drsynth curate)"
        content = {"scenario": scenarios[key], "seed": seed, "style": style, "disabled": ds.disabled,
                   "enabled": ds.enabled, "count": ds.count, "shard_size": ds.shard_size,
                   **({"curate": [ds.curate_keep, ds.curate_weights]} if curated else {})}
        ds.uri = _join(cfg.store_uri, "datasets", f"{name}-{_digest(content)}")
        datasets[name] = ds
        return ds

    def import_ds(name: str, src: str, split: str, role: str, description: str) -> DatasetPlan:
        content = {"src": src, "split": split, "fraction": s.real_test_fraction, "max_side": cfg.import_max_side}
        ds = DatasetPlan(name=name, source="import", role=role, import_from=src, import_split=split,  # type: ignore[arg-type]
                         uri=_join(cfg.store_uri, "datasets", f"{name}-{_digest(content)}"),
                         description=description)
        datasets[name] = ds
        return ds

    # User domains
    if cfg.real_uri:
        if cfg.real_test_uri:
            import_ds("real-train", cfg.real_uri, "all", "train", f"real photos {cfg.real_uri}")
            test = import_ds("real-test", cfg.real_test_uri, "all", "test", f"real test photos {cfg.real_test_uri}")
        else:
            pct = round(100 * s.real_test_fraction)
            import_ds("real-train", cfg.real_uri, "train", "train", f"real photos {cfg.real_uri} ({100 - pct}%)")
            test = import_ds("real-test", cfg.real_uri, "test", "test", f"real photos {cfg.real_uri} ({pct}%)")
        domains["real"] = DomainPlan(uri=test.uri, kind="real", source="user", dataset="real-test",
                                     description=f"real photos ({cfg.real_test_uri or cfg.real_uri})")
    elif cfg.real_test_uri:
        notes.append("real_test_uri without real_uri is ignored: real-trained models need real training photos")
    if cfg.toon_uri:
        t = import_ds("toon", cfg.toon_uri, "all", "test", f"cartoons {cfg.toon_uri}")
        domains["toon"] = DomainPlan(uri=t.uri, kind="toon", source="user", dataset="toon",
                                     description=f"cartoons ({cfg.toon_uri})")

    # Rendered test domains (the same as `drsynth study`: held-out breeds, test seed; toon = seed + 1)
    needs_2class = any(st != "scaling" for st in cfg.studies) or not cfg.studies
    per_test = s.test_images_per_class
    if needs_2class:
        d = render_ds("test-synthetic", test2, role="test", seed=s.test_seed, per_class=per_test,
                      description=f"held-out breeds of {s.scenario}, seed {s.test_seed}")
        domains["synthetic"] = DomainPlan(uri=d.uri, kind="synthetic", source="rendered", dataset=d.name,
                                          description=f"{d.description}, {d.count} images")
        if "toon" not in domains:
            d = render_ds("test-toon", test2, role="test", seed=s.test_seed + 1, style="toon", per_class=per_test,
                          description=f"toon style (cel shading, ink outlines), held-out breeds of {s.scenario}, "
                                      f"seed {s.test_seed + 1}")
            domains["toon"] = DomainPlan(uri=d.uri, kind="toon", source="rendered", dataset=d.name,
                                         description=f"{d.description}, {d.count} images")
    if "scaling" in cfg.studies:
        _, test4 = pair(s.scaling_scenario)
        d = render_ds("test-synthetic4", test4, role="test", seed=s.test_seed, per_class=per_test,
                      description=f"held-out breeds of {s.scaling_scenario}, seed {s.test_seed}")
        domains["synthetic4"] = DomainPlan(uri=d.uri, kind="synthetic", source="rendered", dataset=d.name,
                                           description=f"{d.description}, {d.count} images")

    # Training datasets: the union of what the studies plan
    for study in cfg.studies:
        sp = plan_study(study, s, list(domains), class_names=class_names)
        for spec in sp.datasets:
            if spec.name in datasets or spec.source == "real":
                continue
            key = pair(spec.scenario or s.scenario)[0]
            off = f"; without {', '.join(spec.disabled)}" if spec.disabled else ""
            on = f"; with {', '.join(spec.enabled)}" if spec.enabled else ""
            render_ds(spec.name, key, role="train", seed=spec.seed, disabled=spec.disabled, enabled=spec.enabled,
                      per_class=spec.images_per_class,
                      description=f"training breeds of {spec.scenario or s.scenario}, seed {spec.seed}{off}{on}")
        for n in sp.notes:
            if n not in notes:
                notes.append(n)
    if not cfg.studies:  # train_and_serve: the control dataset and one model
        render_ds("synth-control", train2, role="train", seed=s.render_seed, per_class=s.images_per_class,
                  description=f"training breeds of {s.scenario}, seed {s.render_seed}")
    for name in RENDER_DATASETS + IMPORT_DATASETS:
        datasets.setdefault(name, DatasetPlan(name=name, source="skip"))
    unknown = [n for n in datasets if n not in RENDER_DATASETS + IMPORT_DATASETS]
    if unknown:  # a study planned a dataset the pipeline has no tasks for
        raise ConfigError(f"the studies plan datasets {unknown} that the pipeline does not know; "
                          f"known: {list(RENDER_DATASETS + IMPORT_DATASETS)}")
    ordered = {n: datasets[n] for n in RENDER_DATASETS + IMPORT_DATASETS}
    return RunPlan(config=cfg, scenarios=scenarios, class_names=class_names, datasets=ordered, domains=domains,
                   notes=notes)


# --- render tasks ---------------------------------------------------------------------------------------------


def render_jobs(plan: RunPlan, dataset: str) -> list[dict[str, Any]]:
    """The render tasks of one dataset: one per shard, each self-contained (the resolved scenario, the index
    range, the dataset's URI), so a task's cache key changes only when its images would. A dataset the plan
    does not render gets one `skip` job (an empty loop cannot feed a fan-in)."""
    ds = plan.dataset(dataset)
    if ds.source != "render":
        return [{"dataset": ds.name, "skip": True, "start": 0, "count": 0, "uri": "", "shard_size": 1,
                 "scenario": {}, "workers": 0, "description": ""}]
    scenario = plan.scenario_of(ds).to_json()
    n = math.ceil(ds.count / ds.shard_size)
    return [{"dataset": ds.name, "skip": False, "start": k * ds.shard_size,
             "count": min(ds.shard_size, ds.count - k * ds.shard_size), "uri": ds.uri, "shard_size": ds.shard_size,
             "scenario": scenario, "workers": plan.config.render_workers, "description": ds.description,
             "curate_keep": ds.curate_keep, "curate_weights": ds.curate_weights}
            for k in range(n)]


# --- models ---------------------------------------------------------------------------------------------------


class ModelJob(BaseModel):
    """One model of the run: train on `data_uri`, export, evaluate on `domains` (a models-loop item)."""

    model_config = ConfigDict(extra="forbid")

    name: str
    spec: ModelSpec
    dataset: str
    data_uri: str
    domains: dict[str, str]
    train_domains: list[str]
    explain: bool = False
    explain_k: int = 4
    workers: int = 0
    device: str = "auto"

    @classmethod
    def parse(cls, item: dict[str, Any] | ModelJob) -> ModelJob:
        return item if isinstance(item, ModelJob) else cls.model_validate(item)


def study_plans(plan: RunPlan) -> list[Any]:
    """`drsynth.studies.StudyPlan` of every study the run makes (deterministic from the plan)."""
    return [plan_study(st, plan.config.study, list(plan.domains), class_names=plan.class_names)
            for st in plan.config.studies]


def model_jobs(plan: RunPlan) -> list[ModelJob]:
    """Every model the run's studies need, once (a model shared by several studies is trained once)."""
    cfg = plan.config
    jobs: dict[str, ModelJob] = {}
    specs = [m for sp in study_plans(plan) for m in sp.models]
    if not plan.config.studies:  # train_and_serve: one model, the paper's head (dropout 0.3), control data
        s = cfg.study
        specs = [ModelSpec(name=f"synth-control.{CONTROL_VARIANT}.s0", dataset="synth-control",
                           train_domain="synthetic", classes=plan.class_names, dropout=0.3, seed=0,
                           backbone=s.backbone, weights=s.weights, input_size=s.input_size, epochs=s.epochs,
                           batch_size=s.batch_size, lr=s.lr, extra=dict(s.train_extra),
                           eval_domains=[d for d in ("real", "synthetic", "toon") if d in plan.domains])]
    for m in specs:
        if m.name in jobs:
            continue
        ds = plan.dataset(m.dataset)
        if ds.source == "skip":
            raise ConfigError(f"model {m.name} needs dataset {m.dataset}, which this run does not make")
        domains = {d: plan.domains[d].uri for d in m.eval_domains if d in plan.domains}
        control = m.name == f"{m.dataset}.{CONTROL_VARIANT}.s0" and m.dataset in ("synth-control", "real-train")
        jobs[m.name] = ModelJob(
            name=m.name, spec=m, dataset=m.dataset, data_uri=ds.uri, domains=domains,
            train_domains=[m.train_domain] if m.train_domain in domains else [],
            explain=cfg.study.explain_k > 0 and (cfg.explain == "all" or (cfg.explain == "control" and control)),
            explain_k=max(1, cfg.study.explain_k),
            workers=cfg.train_workers, device=cfg.device)
    return list(jobs.values())


def count_tasks(plan: RunPlan) -> int:
    """How many tasks the study pipeline runs for this plan (for progress bars)."""
    shards = sum(len(render_jobs(plan, d)) for d in RENDER_DATASETS)
    per_dataset = 2  # the shard planner and the package task
    per_model = 3  # train, export, evaluate (+ heatmaps)
    # plan, render datasets, import, model planner, models, studies, report
    return 1 + shards + per_dataset * len(RENDER_DATASETS) + 1 + 1 + per_model * len(model_jobs(plan)) + 1 + 1


__all__ = ["IMPORT_DATASETS", "RENDER_DATASETS", "DatasetPlan", "DomainPlan", "ModelJob", "RunPlan",
           "count_tasks", "limit_breeds", "model_jobs", "plan_run", "render_jobs", "study_plans"]
