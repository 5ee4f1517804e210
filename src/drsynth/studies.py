"""The paper's four studies as library functions: plan -> build -> evaluate -> collect.

- architecture (Fig. 3): no dropout / dropout 0.3 / unfrozen backbone, for a real- and a synthetic-trained model;
- ablation (Fig. 4): the control dataset plus one dataset per removed randomization parameter;
- transfer (Fig. 7): a real-trained and a synthetic-trained model on the real, synthetic and toon domains;
- scaling (Fig. 8): 2, 3 and 4 classes (cat, dog, + bicycle, + car), accuracy and AAR.

Each study is split so that a Kubeflow pipeline can run the heavy steps as its own tasks:

1. `plan_study(name, cfg, domains)` says which datasets and models are needed (names, scenario changes, train
   settings, seeds) and which numbers make up each bar of the figure;
2. something builds them: `run_study` (the CLI, end to end, in process) or the pipeline's components, which
   put each model's evaluation at `RUN/eval/<model>/metrics.json` (design.md, "Run directory");
3. `collect_study(plan, run_dir)` reads those metrics and writes `RUN/studies/<study>/results.json` and
   `figure.png`: per bar the per-seed values, their mean and a 95% Student-t interval.

Models are keyed by what built them (`RUN/models/<name>/spec.json`), so a model shared by several studies
(the synthetic control with dropout 0.3 appears in architecture, ablation and transfer) is trained once.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from drsynth import __version__
from drsynth.errors import ConfigError, DatasetError
from drsynth.fsutil import atomic_write_bytes, atomic_write_json
from drsynth.progress import count_bar

STUDIES = ("architecture", "ablation", "transfer", "scaling")
TRAIN_SOURCES = ("real", "synthetic")

# Fig. 3. "unfrozen" keeps the dropout: the paper adds dropout first, then unfreezes VGG-16 on top of it.
ARCHITECTURE_VARIANTS: dict[str, tuple[str, float, bool]] = {
    "no-dropout": ("no dropout", 0.0, False),
    "dropout-0.3": ("dropout 0.3", 0.3, False),
    "unfrozen": ("unfrozen backbone", 0.3, True),
}
CONTROL_VARIANT = "dropout-0.3"

# Fig. 4: condition -> (label, randomizers disabled, randomizers enabled); names are drsynth.config's
# RANDOMIZER_NAMES. "textured-subject" switches the subject-texture randomizer on (it is off by default).
ABLATIONS: dict[str, tuple[str, tuple[str, ...], tuple[str, ...]]] = {
    "control": ("control (all randomizers)", (), ()),
    "no-occluders": ("no occluders", ("occluders",), ()),
    "no-textures": ("no textures", ("materials",), ()),
    "no-lighting": ("no lighting randomization", ("lighting",), ()),
    "no-skies": ("no skies", ("sky",), ()),
    "default-pose": ("default pose", ("pose",), ()),
    "single-breed": ("single breed per class", ("subject",), ()),
    "textured-subject": ("textured subject", (), ("subject_texture",)),
}

# Fig. 8
SCALING_CLASSES: tuple[tuple[str, ...], ...] = (
    ("cat", "dog"),
    ("cat", "dog", "bicycle"),
    ("cat", "dog", "bicycle", "car"),
)

DOMAIN_KINDS = ("real", "synthetic", "toon")
OOD_MEAN = "ood-mean"
Metric = Literal["accuracy", "aar"]


# --- configuration -----------------------------------------------------------------------------------------


class StudyConfig(BaseModel):
    """Everything a study needs besides the domains; typed at the edge (CLI flags or pipeline parameters)."""

    model_config = ConfigDict(extra="forbid")

    scenario: str = Field("cats_dogs", description="2-class scenario: preset name or YAML path")
    scaling_scenario: str = Field("cats_dogs_bikes_cars", description="4-class scenario for the scaling study")
    images_per_class: int = Field(1000, ge=2, description="training renders per class")
    test_images_per_class: int = Field(100, ge=1, description="held-out synthetic / toon renders per class")
    render_size: int = Field(256, ge=16, le=2048, description="render side, pixels")
    render_seed: int = Field(0, ge=0, description="scenario seed of the training renders")
    test_seed: int = Field(1_000_003, ge=0, description="scenario seed of the held-out test renders")
    holdout_fraction: float = Field(0.2, ge=0, lt=1, description="breeds kept out of training for the test domain")
    real_test_fraction: float = Field(0.2, gt=0, lt=1, description="share of a real folder used as test (80-20)")
    backbone: str = "vgg16"
    weights: str | None = Field(None, description="imagenet | none | PATH; None = the backbone's default")
    input_size: int = Field(224, ge=16, le=1024, description="network input side, pixels")
    epochs: int = Field(10, ge=1)
    batch_size: int = Field(32, ge=1)
    lr: float = Field(1e-3, gt=0)
    workers: int | None = Field(None, ge=0, description="render processes and data-loader workers; 0 = all in "
                                "this process (renders then share subject meshes); None = one per core")
    seeds: int = Field(1, ge=1, le=100, description="training repeats per condition (seeds 0..K-1)")
    train_extra: dict[str, Any] = Field(default_factory=dict, description="further drsynth.train settings")
    ablations: list[str] = Field(default_factory=lambda: list(ABLATIONS), description="ablation conditions to run")
    architecture_variants: list[str] = Field(default_factory=lambda: list(ARCHITECTURE_VARIANTS),
                                             description="architecture variants to run")
    explain_k: int = Field(4, ge=0, le=64, description="transfer study: GradCAM/occlusion grids of the first K "
                           "images per class and domain for each model (the paper's Fig. 5); 0 = none")
    curate_keep: float = Field(0.0, ge=0, le=1, description="curate each training dataset (`drsynth curate`): "
                               "render images_per_class / curate_keep per class and keep the images_per_class "
                               "an ImageNet classifier finds most like their class; 0 = no curation")
    curate_weights: str | None = Field(None, description="mobilenet_v2 ImageNet state dict for curation; None = "
                                       "torchvision's (downloaded)")

    def rendered_per_class(self, kept_per_class: int) -> int:
        """Training renders to make per class so that curation keeps `kept_per_class` of them."""
        return math.ceil(kept_per_class / self.curate_keep) if self.curate_keep > 0 else kept_per_class

    def model_post_init(self, _: Any) -> None:
        for field, known in (("ablations", ABLATIONS), ("architecture_variants", ARCHITECTURE_VARIANTS)):
            unknown = [a for a in getattr(self, field) if a not in known]
            if unknown or not getattr(self, field):
                raise ConfigError(f"{field}: unknown or no condition(s) {unknown}: expected some of {list(known)}")

    @classmethod
    def preset(cls, name: str, **kw: Any) -> StudyConfig:
        """quick: seconds per study on a CPU; default: a useful size; paper: the paper's sizes (10,000 renders
        per class, VGG-16 at 224 px, 10 epochs)."""
        if name == "quick":
            return cls.quick(**kw)
        if name == "default":
            return cls(**kw)
        if name == "paper":
            return cls(**({"images_per_class": 10_000, "test_images_per_class": 500, "backbone": "vgg16"} | kw))
        raise ConfigError(f"unknown study preset {name!r}: expected quick, default or paper")

    @classmethod
    def quick(cls, **kw: Any) -> StudyConfig:
        """A configuration that runs each study in seconds on a CPU (tests, the pipeline's `quick` preset)."""
        base = dict(images_per_class=24, test_images_per_class=8, render_size=64, backbone="small-cnn",
                    weights="none", input_size=48, epochs=2, batch_size=16, workers=0)
        return cls(**(base | kw))


# --- plan --------------------------------------------------------------------------------------------------


class DatasetSpec(BaseModel):
    """A training dataset a study needs: renders of a scenario variant, or the training part of real photos."""

    model_config = ConfigDict(extra="forbid")

    name: str
    source: Literal["render", "real"]
    scenario: str | None = None
    disabled: list[str] = Field(default_factory=list)
    enabled: list[str] = Field(default_factory=list)
    images_per_class: int = 0
    seed: int = 0
    image_size: int = 256
    holdout: bool = Field(True, description="leave the held-out breeds out (they make the synthetic test domain)")


class ModelSpec(BaseModel):
    """One model to train, export and evaluate. Two specs with equal content are the same model."""

    model_config = ConfigDict(extra="forbid")

    name: str
    dataset: str
    train_domain: str = Field(description="the domain kind it was trained on: real | synthetic")
    classes: list[str] | None = None
    dropout: float = 0.3
    unfreeze: bool = False
    seed: int = 0
    backbone: str = "vgg16"
    weights: str | None = None
    input_size: int = 224
    epochs: int = 10
    batch_size: int = 32
    lr: float = 1e-3
    extra: dict[str, Any] = Field(default_factory=dict)
    eval_domains: list[str] = Field(default_factory=list)


class SeriesSpec(BaseModel):
    """One bar (or point) of a study figure: a metric of some models on a domain, one model per seed."""

    model_config = ConfigDict(extra="forbid")

    group: str
    name: str
    label: str
    domain: str
    metric: Metric = "accuracy"
    models: list[str]
    seeds: list[int]


class StudyPlan(BaseModel):
    model_config = ConfigDict(extra="forbid")

    study: str
    primary_domain: str
    datasets: list[DatasetSpec]
    models: list[ModelSpec]
    series: list[SeriesSpec]
    notes: list[str] = Field(default_factory=list)
    config: dict[str, Any] = Field(default_factory=dict)


def _model(cfg: StudyConfig, dataset: str, variant: str, seed: int, *, train_domain: str, dropout: float,
           unfreeze: bool, eval_domains: Sequence[str], classes: Sequence[str] | None = None) -> ModelSpec:
    return ModelSpec(
        name=f"{dataset}.{variant}.s{seed}", dataset=dataset, train_domain=train_domain,
        classes=list(classes) if classes else None, dropout=dropout, unfreeze=unfreeze, seed=seed,
        backbone=cfg.backbone, weights=cfg.weights, input_size=cfg.input_size, epochs=cfg.epochs,
        batch_size=cfg.batch_size, lr=cfg.lr, extra=dict(cfg.train_extra), eval_domains=list(eval_domains),
    )


def _render_ds(cfg: StudyConfig, name: str, *, scenario: str | None = None, disabled: Sequence[str] = (),
               enabled: Sequence[str] = ()) -> DatasetSpec:
    return DatasetSpec(name=name, source="render", scenario=scenario or cfg.scenario, disabled=list(disabled),
                       enabled=list(enabled), images_per_class=cfg.images_per_class,
                       seed=cfg.render_seed, image_size=cfg.render_size)


def plan_study(study: str, cfg: StudyConfig, domains: Sequence[str], *,
               class_names: Sequence[str] | None = None) -> StudyPlan:
    """What `study` needs, given the names of the domains that exist (`real`, `synthetic`, `toon`, `synthetic4`).

    `real` here also means real *training* photos exist (the real-trained models need them). Without them the
    real-trained bars are left out and the plan says so in `notes`. `class_names`: the classes of the 2-class
    scenario; models of the architecture, ablation and transfer studies train on these (a real photo folder
    may hold more classes).
    """
    if study not in STUDIES:
        raise ConfigError(f"unknown study {study!r}: expected one of {', '.join(STUDIES)}")
    domains = list(domains)
    seeds = list(range(cfg.seeds))
    has_real = "real" in domains
    notes: list[str] = []
    eval_2 = [d for d in ("real", "synthetic", "toon") if d in domains]
    if not eval_2 and study != "scaling":
        raise ConfigError(f"study {study!r} needs at least one of the domains real, synthetic, toon; got {domains}")
    primary = "real" if has_real else ("synthetic" if "synthetic" in domains else (eval_2 or ["?"])[0])
    if not has_real:
        notes.append(f"no real photos given: real-trained models are left out and the figure reports the "
                     f"'{primary}' domain instead of real photos")
    datasets: dict[str, DatasetSpec] = {}
    models: dict[str, ModelSpec] = {}
    series: list[SeriesSpec] = []

    def add_series(group: str, name: str, label: str, domain: str, model_names: list[str],
                   metric: Metric = "accuracy") -> None:
        series.append(SeriesSpec(group=group, name=name, label=label, domain=domain, metric=metric,
                                 models=model_names, seeds=seeds))

    if study in ("architecture", "transfer"):
        sources = [s for s in TRAIN_SOURCES if s != "real" or has_real]
        if has_real:
            datasets["real-train"] = DatasetSpec(name="real-train", source="real")
        datasets["synth-control"] = _render_ds(cfg, "synth-control")
        keep = cfg.architecture_variants if study == "architecture" else [CONTROL_VARIANT]
        variants = {v: ARCHITECTURE_VARIANTS[v] for v in ARCHITECTURE_VARIANTS if v in keep}
        for src in sources:
            ds = "real-train" if src == "real" else "synth-control"
            for variant, (label, dropout, unfreeze) in variants.items():
                names = []
                for seed in seeds:
                    m = _model(cfg, ds, variant, seed, train_domain=src, dropout=dropout, unfreeze=unfreeze,
                               eval_domains=eval_2, classes=class_names)
                    models[m.name] = m
                    names.append(m.name)
                if study == "architecture":
                    add_series(src, variant, label, primary, names)
                else:
                    for dom in eval_2:
                        add_series(src, dom, dom, dom, names)
                    add_series(src, OOD_MEAN, "out-of-domain mean", OOD_MEAN, names)
        if study == "transfer" and "toon" not in domains:
            notes.append("no toon domain: give --toon DIR or render one (style: toon)")
    elif study == "ablation":
        for cond in cfg.ablations:
            label, disabled, enabled = ABLATIONS[cond]
            ds = f"synth-{cond}"
            datasets[ds] = _render_ds(cfg, ds, disabled=disabled, enabled=enabled)
            names = []
            for seed in seeds:
                m = _model(cfg, ds, CONTROL_VARIANT, seed, train_domain="synthetic", dropout=0.3, unfreeze=False,
                           eval_domains=eval_2, classes=class_names)
                models[m.name] = m
                names.append(m.name)
            add_series("synthetic", cond, label, primary, names)
    else:  # scaling
        if "synthetic4" not in domains and not has_real:
            raise ConfigError("the scaling study needs a 4-class test domain: 'real' (photos of cat, dog, bicycle, "
                              "car) or 'synthetic4' (held-out renders of the 4-class scenario)")
        primary = "real" if has_real else "synthetic4"
        eval_4 = [d for d in ("real", "synthetic4") if d in domains]
        datasets["synth4"] = _render_ds(cfg, "synth4", scenario=cfg.scaling_scenario)
        for classes in SCALING_CLASSES:
            n = len(classes)
            names = []
            for seed in seeds:
                m = _model(cfg, "synth4", f"{n}cls", seed, train_domain="synthetic", dropout=0.3, unfreeze=False,
                           eval_domains=eval_4, classes=classes)
                models[m.name] = m
                names.append(m.name)
            for metric in ("accuracy", "aar"):
                add_series("synthetic", f"{n}-classes", f"{n} classes ({', '.join(classes)})", primary, names,
                           metric=metric)
    return StudyPlan(study=study, primary_domain=primary, datasets=list(datasets.values()),
                     models=list(models.values()), series=series, notes=notes,
                     config=cfg.model_dump(mode="json"))


# --- results -----------------------------------------------------------------------------------------------


class RunRef(BaseModel):
    model_config = ConfigDict(extra="forbid")

    seed: int
    model: str
    metrics: str = Field(description="metrics.json path, relative to the run folder")
    value: float


class SeriesResult(BaseModel):
    model_config = ConfigDict(extra="forbid")

    group: str
    name: str
    label: str
    domain: str
    metric: str
    values: list[float]
    mean: float
    ci95: tuple[float, float]
    n: int
    runs: list[RunRef]


class StudyResults(BaseModel):
    """results.json of one study (design.md, "Run directory")."""

    model_config = ConfigDict(extra="forbid")

    study: str
    figure: str = "figure.png"
    metric: str = "accuracy"
    seeds: list[int]
    primary_domain: str
    conditions: list[SeriesResult]
    config: dict[str, Any] = Field(default_factory=dict)
    paper: list[dict[str, Any]] = Field(default_factory=list)
    notes: list[str] = Field(default_factory=list)
    drsynth_version: str = __version__

    @classmethod
    def read(cls, path: str | Path) -> StudyResults:
        try:
            return cls.model_validate_json(Path(path).read_text())
        except FileNotFoundError:
            raise DatasetError(f"study results not found: {path} (run `drsynth study NAME` first)") from None
        except Exception as e:
            raise DatasetError(f"{path} is not a drsynth study results.json: {e}") from None


def mean_ci95(values: Sequence[float]) -> tuple[float, float, float]:
    """Mean and the two-sided 95% Student-t interval of the mean; (m, m, m) for a single value."""
    v = np.asarray(values, float)
    if v.size == 0:
        raise ValueError("no values")
    m = float(v.mean())
    if v.size == 1:
        return m, m, m
    from scipy import stats

    half = float(stats.t.ppf(0.975, v.size - 1) * v.std(ddof=1) / np.sqrt(v.size))
    return m, m - half, m + half


def series_value(metrics: Any, domain: str, metric: str) -> float:
    """One number from an EvalResults: a domain's accuracy/AAR, or the mean out-of-domain accuracy."""
    if domain == OOD_MEAN:
        if metrics.mean_out_of_domain_accuracy is None:
            raise DatasetError(f"{metrics.model}: no out-of-domain accuracy (no domain besides the training one)")
        return float(metrics.mean_out_of_domain_accuracy)
    if domain not in metrics.domains:
        raise DatasetError(f"{metrics.model} was not evaluated on domain {domain!r} (has {list(metrics.domains)})")
    return float(getattr(metrics.domains[domain], metric))


def collect_study(plan: StudyPlan, run_dir: str | Path, *, extra_notes: Sequence[str] = ()) -> StudyResults:
    """Read every planned model's RUN/eval/<model>/metrics.json; write results.json and figure.png."""
    from drsynth.evaluate import EvalResults

    run_dir = Path(run_dir)
    cache: dict[str, Any] = {}
    out: list[SeriesResult] = []
    for s in plan.series:
        runs = []
        for seed, model in zip(s.seeds, s.models, strict=True):
            rel = f"eval/{model}/metrics.json"
            if model not in cache:
                cache[model] = EvalResults.read(run_dir / rel)
            runs.append(RunRef(seed=seed, model=model, metrics=rel, value=series_value(cache[model], s.domain,
                                                                                         s.metric)))
        values = [r.value for r in runs]
        m, lo, hi = mean_ci95(values)
        floor = -1.0 if s.metric == "aar" else 0.0  # the interval is clipped to the metric's range
        lo, hi = max(lo, floor), min(hi, 1.0)
        out.append(SeriesResult(group=s.group, name=s.name, label=s.label, domain=s.domain, metric=s.metric,
                                values=values, mean=m, ci95=(lo, hi), n=len(values), runs=runs))
    from drsynth.report import paper_numbers

    res = StudyResults(study=plan.study, seeds=plan.series[0].seeds if plan.series else [],
                       primary_domain=plan.primary_domain, conditions=out, config=plan.config,
                       paper=[p.as_dict() for p in paper_numbers(plan.study)],
                       notes=list(plan.notes) + list(extra_notes))
    study_dir = run_dir / "studies" / plan.study
    atomic_write_bytes(study_dir / "figure.png", plot_study(res))
    atomic_write_json(study_dir / "results.json", res.model_dump(mode="json"))
    return res


# --- figures -----------------------------------------------------------------------------------------------

GROUP_COLORS = {"real": "#4C72B0", "synthetic": "#DD8452"}
TITLES = {
    "architecture": "Architecture (paper Fig. 3)",
    "ablation": "Randomization ablation (paper Fig. 4)",
    "transfer": "Domain transfer (paper Fig. 7)",
    "scaling": "Number of categories (paper Fig. 8)",
}


def plot_study(res: StudyResults) -> bytes:
    """The study's figure as PNG bytes: bars (or lines for scaling) with 95% intervals, paper values as marks."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from drsynth.report import paper_lookup

    n_seeds = len(res.seeds)
    if res.study == "scaling":
        fig, ax = plt.subplots(figsize=(8.5, 4.5))
        for metric, style in (("accuracy", "-o"), ("aar", "--s")):
            rows = [c for c in res.conditions if c.metric == metric]
            xs = [int(c.name.split("-")[0]) for c in rows]
            ys = [c.mean for c in rows]
            err = np.array([[c.mean - c.ci95[0] for c in rows], [c.ci95[1] - c.mean for c in rows]])
            ax.errorbar(xs, ys, yerr=err, fmt=style, capsize=4, label="AAR (accuracy - 1/n)" if metric == "aar"
                        else "accuracy")
            for x, y in zip(xs, ys, strict=True):
                ax.annotate(f"{y:.1%}", (x, y), textcoords="offset points", xytext=(6, 4), fontsize=8)
        xs = sorted({int(c.name.split("-")[0]) for c in res.conditions})
        ax.plot(xs, [1 / x for x in xs], ":", color="grey", label="chance (1/n)")
        ax.set_xticks(xs)
        ax.set_xlabel("number of classes")
        lowest = min([0.0] + [c.ci95[0] for c in res.conditions])  # AAR can be negative (below chance)
        ax.set_ylim(lowest - 0.05 if lowest < 0 else 0, 1.05)
        ax.axhline(0, color="black", linewidth=0.6)
    else:
        groups = list(dict.fromkeys(c.group for c in res.conditions))
        names = list(dict.fromkeys(c.name for c in res.conditions))
        labels = {c.name: c.label for c in res.conditions}
        width = 0.8 / max(1, len(groups))
        fig, ax = plt.subplots(figsize=(max(7.5, 1.1 * len(names) + 3.5), 4.8))
        labelled: set[str] = set()
        for gi, g in enumerate(groups):
            for ni, name in enumerate(names):
                c = next((c for c in res.conditions if c.group == g and c.name == name), None)
                if c is None:
                    continue
                x = ni + (gi - (len(groups) - 1) / 2) * width
                ax.bar(x, c.mean, width * 0.92, color=GROUP_COLORS.get(g, "#55A868"),
                       label=None if g in labelled else f"{g}-trained",
                       yerr=[[c.mean - c.ci95[0]], [c.ci95[1] - c.mean]] if n_seeds > 1 else None, capsize=3)
                labelled.add(g)
                ax.text(x, c.mean + 0.01, f"{c.mean:.0%}", ha="center", va="bottom", fontsize=8)
                p = paper_lookup(res.study, g, name, c.domain, c.metric)
                if p is not None and p.value is not None:
                    ax.plot(x, p.value, marker="D", color="black", markersize=6, linestyle="none",
                            label=None if "paper" in labelled else "paper (text)")
                    labelled.add("paper")
        ax.set_xticks(range(len(names)), [labels[n] for n in names], rotation=20 if len(names) > 4 else 0,
                      ha="right" if len(names) > 4 else "center")
        if res.study == "ablation":
            ctrl = next((c for c in res.conditions if c.name == "control"), None)
            if ctrl is not None:
                ax.axhline(ctrl.mean, color="grey", linestyle="--", linewidth=1)
        chance = _chance(res)
        if chance:
            ax.axhline(chance, color="grey", linestyle=":", linewidth=1, label="chance")
        ax.set_ylim(0, 1.08)
    ax.set_ylabel("accuracy" if res.study != "transfer" else "accuracy on domain")
    dom = "" if res.study == "transfer" else f" on '{res.primary_domain}'"
    seeds = f"mean of {n_seeds} seeds, 95% interval" if n_seeds > 1 else "1 seed"
    ax.set_title(f"{TITLES.get(res.study, res.study)}{dom}\n{seeds}", fontsize=10)
    ax.yaxis.set_major_formatter(matplotlib.ticker.PercentFormatter(1.0))
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return buf.getvalue()


def _chance(res: StudyResults) -> float | None:
    n = res.config.get("n_classes")
    return 1.0 / n if n else 0.5 if res.study != "scaling" else None


# --- running a study end to end (the CLI; a pipeline runs these steps as its own tasks) ----------------------


class DomainInfo(BaseModel):
    """One evaluation domain of a run, as recorded in run.json."""

    model_config = ConfigDict(extra="forbid")

    uri: str
    kind: Literal["real", "synthetic", "toon"]
    source: Literal["user", "rendered"]
    description: str = ""


def _crc_order(names: Sequence[str]) -> list[str]:
    import zlib

    return sorted(names, key=lambda n: (zlib.crc32(n.encode()), n))


def split_breeds(scenario: Any, fraction: float) -> tuple[Any, Any, list[str]]:
    """(training scenario, held-out test scenario, notes): per procedural class, a fixed share of its breed
    presets (chosen by a hash of the name, so the split does not depend on list order) is kept out of training
    and is the only breed set of the test scenario. Classes made only of imported models cannot be split."""
    from drsynth.config import parse_scenario
    from drsynth.subjects.registry import generator_module

    train_data, test_data = scenario.model_dump(), scenario.model_dump()
    notes: list[str] = []
    for name, cs in scenario.classes.items():
        if fraction <= 0 or cs.procedural is None:
            if cs.procedural is None:
                notes.append(f"class {name}: imported models only, the test domain uses the same subjects")
            continue
        breeds = list(cs.breeds) if cs.breeds else list(generator_module(cs.procedural).preset_names())
        if len(breeds) < 2:
            notes.append(f"class {name}: a single breed ({breeds}), the test domain uses it too")
            continue
        k = min(len(breeds) - 1, max(1, round(len(breeds) * fraction)))
        held = set(_crc_order(breeds)[:k])
        train = [b for b in breeds if b not in held]
        test = [b for b in breeds if b in held]
        train_data["classes"][name]["breeds"] = train
        test_data["classes"][name]["breeds"] = test
        if cs.single in held:  # the single-breed ablation must train on a training breed
            train_data["classes"][name]["single"] = None
        test_data["classes"][name]["single"] = None
        notes.append(f"class {name}: {len(test)} of {len(breeds)} breeds held out for testing ({', '.join(test)})")
    src = f"scenario '{scenario.name}'"
    return (parse_scenario(train_data, source=f"{src} (training breeds)"),
            parse_scenario(test_data, source=f"{src} (held-out breeds)"), notes)


def load_scenario_ref(ref: str) -> Any:
    """A scenario from a YAML path or a preset name (assets/scenarios/<name>.yaml)."""
    from drsynth.config import load_scenario

    path = Path(ref)
    if path.suffix in (".yaml", ".yml") or path.exists():
        return load_scenario(path)
    try:
        from drsynth.config import preset_path  # the renderer's preset lookup, when it has one
    except ImportError:
        preset_path = None
    if preset_path is not None:
        return load_scenario(preset_path(ref))
    for base in (Path(__file__).resolve().parent / "resources" / "scenarios",
                 Path(__file__).resolve().parents[2] / "assets" / "scenarios"):
        if (base / f"{ref}.yaml").is_file():
            return load_scenario(base / f"{ref}.yaml")
    raise ConfigError(f"scenario {ref!r} is neither a YAML file nor a preset name (assets/scenarios/*.yaml)")


def split_real_folder(src: str | Path, train_dir: Path, test_dir: Path, *, test_fraction: float) -> dict[str, int]:
    """Split an image folder DIR/<class>/* into train and test folders of symlinks (80-20 by default).

    Membership is a hash of the file's relative path, salted so it is independent of the train/val split
    that `drsynth.data` makes inside the training part."""
    import hashlib
    import os

    from drsynth.import_images import list_image_folder

    root = Path(src).expanduser().resolve()
    listing, _ = list_image_folder(root)
    counts = {"train": 0, "test": 0}
    for d in (train_dir, test_dir):
        if d.exists():
            import shutil

            shutil.rmtree(d)
    for cls, files in listing.items():
        for rel in files:
            h = int.from_bytes(hashlib.blake2b(f"drsynth-test-split:{rel}".encode(), digest_size=8).digest(), "big")
            part = "test" if h / 2**64 < test_fraction else "train"
            dst = (test_dir if part == "test" else train_dir) / rel
            dst.parent.mkdir(parents=True, exist_ok=True)
            os.symlink(root / rel, dst)
            counts[part] += 1
        for d in (train_dir, test_dir):
            (d / cls).mkdir(parents=True, exist_ok=True)
    if not counts["train"] or not counts["test"]:
        raise DatasetError(f"{root}: {counts['train']} training and {counts['test']} test images after the "
                           f"{1 - test_fraction:.0%}-{test_fraction:.0%} split; give more images per class")
    return counts


def _same_spec(path: Path, spec: dict[str, Any]) -> bool:
    import json

    try:
        return json.loads(path.read_text()) == json.loads(json.dumps(spec, default=str))
    except (OSError, ValueError):
        return False


class StudyRunner:
    """Builds what a plan needs inside a run folder, reusing whatever an earlier study already built."""

    def __init__(self, run_dir: str | Path, cfg: StudyConfig, *, progress: bool = True,
                 preset: str | None = None) -> None:
        self.run_dir = Path(run_dir)
        self.cfg = cfg
        self.preset = preset
        self.progress = progress
        self.domains: dict[str, DomainInfo] = {}
        self.datasets: dict[str, str] = {}
        self.scenarios: dict[str, Any] = {}
        self.notes: list[str] = []
        self._split: dict[str, tuple[Any, Any]] = {}
        self._contexts: dict[str, Any] = {}

    # -- scenarios, domains and datasets --

    def scenario_pair(self, ref: str) -> tuple[Any, Any]:
        """(training scenario, held-out test scenario) of a scenario reference, cached per run."""
        if ref not in self._split:
            base = load_scenario_ref(ref).with_overrides(image_size=self.cfg.render_size)
            train, test, notes = split_breeds(base, self.cfg.holdout_fraction)
            self._split[ref] = (train, test)
            self.notes += notes
            self.scenarios[f"{ref} (training)"] = train.to_json()
            self.scenarios[f"{ref} (held-out test)"] = test.to_json()
        return self._split[ref]

    def _render_to_dataset(self, name: str, scenario: Any, count: int, *, spec: dict[str, Any],
                           curation: dict[str, Any] | None = None) -> str:
        """Render `count` images of `scenario` and package them into RUN/datasets/<name> (reused if unchanged);
        with `curation` ({keep_fraction, weights}) only the renders `drsynth curate` keeps, its sheet in
        RUN/curation/<name>/."""
        import shutil

        from drsynth.package import package

        dest = self.run_dir / "datasets" / name
        spec_path = self.run_dir / "datasets" / f"{name}.spec.json"
        if (dest / "dataset.json").is_file() and _same_spec(spec_path, spec):
            return str(dest)
        work = self.run_dir / "work" / f"render-{name}"
        if work.exists():
            shutil.rmtree(work)
        in_process = self.cfg.workers is not None and self.cfg.workers <= 1
        render_images(scenario, count, work, workers=self.cfg.workers, progress=self.progress,
                      ctx=self._context(scenario) if in_process else None)
        keep_list = None
        if curation:
            from drsynth.curate import curate

            keep_list = self.run_dir / "curation" / name
            with count_bar(f"curate {name}", enabled=self.progress) as on_progress:
                curate(work, keep_list, keep_fraction=curation["keep_fraction"], weights=curation["weights"],
                       progress=on_progress)
        package(work, str(dest), name=name, overwrite=True, workers=1, progress=self.progress, curation=keep_list)
        shutil.rmtree(work, ignore_errors=True)
        sheet = dest / "card" / "contact_sheet.png"
        if sheet.is_file():
            atomic_write_bytes(self.run_dir / "samples" / f"{name}.png", sheet.read_bytes())
        atomic_write_json(spec_path, spec)
        return str(dest)

    def _context(self, scenario: Any) -> Any:
        """Subject pools shared by the in-process renders of one run: building a breed's meshes is the slow
        part, and the ablation datasets differ only in randomizer switches (the pools' inputs are the
        classes, the seed and the asset folders)."""
        import json

        from drsynth.describe import build_context

        r = scenario.randomizers
        key = json.dumps([scenario.to_json()["classes"], scenario.seed, r.materials.model_dump(mode="json"),
                          str(r.sky.image_dir)], sort_keys=True, default=str)
        if key not in self._contexts:
            self._contexts[key] = build_context(scenario)
        return self._contexts[key]

    def prepare_domains(self, needed: Sequence[str], *, real: str | None = None, real_test: str | None = None,
                        toon: str | None = None) -> dict[str, DomainInfo]:
        """Make the evaluation domains: user folders when given, else held-out renders (synthetic, toon,
        synthetic4). `real` (photos) is split 80-20 into real-train and the `real` test domain unless
        `real_test` is given."""
        cfg = self.cfg
        if real:
            if real_test:
                self.datasets["real-train"] = str(real)
                test_uri = str(real_test)
            else:
                tr, te = self.run_dir / "datasets" / "real-train", self.run_dir / "domains" / "real-test"
                counts = split_real_folder(real, tr, te, test_fraction=cfg.real_test_fraction)
                self.datasets["real-train"], test_uri = str(tr), str(te)
                self.notes.append(f"real photos {real}: {counts['train']} for training, {counts['test']} for testing "
                                  "(all class folders; each model uses its own classes)")
            self.domains["real"] = DomainInfo(uri=test_uri, kind="real", source="user",
                                              description=f"real photos ({real_test or real})")
        if toon:
            self.domains["toon"] = DomainInfo(uri=str(toon), kind="toon", source="user",
                                              description=f"cartoons ({toon})")
        for name, info in self.domains.items():
            if info.source == "user":
                domain_sheet(info.uri, self.run_dir / "samples" / f"domain-{name}.png")
        count = lambda sc: cfg.test_images_per_class * len(sc.classes)  # noqa: E731
        for name in needed:
            if name in self.domains:
                continue
            if name in ("synthetic", "toon", "synthetic4"):
                ref = cfg.scaling_scenario if name == "synthetic4" else cfg.scenario
                _, test = self.scenario_pair(ref)
                seed = cfg.test_seed + (1 if name == "toon" else 0)
                sc = test.with_overrides(seed=seed, style="toon" if name == "toon" else None)
                spec = {"scenario": sc.to_json(), "count": count(sc)}
                uri = self._render_to_dataset(f"test-{name}", sc, count(sc), spec=spec)
                style = "toon style (cel shading, ink outlines), " if name == "toon" else ""
                self.domains[name] = DomainInfo(
                    uri=uri, kind="toon" if name == "toon" else "synthetic", source="rendered",
                    description=f"{style}held-out breeds of {ref}, seed {seed}, {count(sc)} images")
        self.write_run_json()
        return self.domains

    def build_dataset(self, spec: DatasetSpec) -> str:
        if spec.name in self.datasets:
            return self.datasets[spec.name]
        if spec.source == "real":
            raise ConfigError(f"dataset {spec.name} needs real photos: pass --real DIR")
        train, _ = self.scenario_pair(spec.scenario or self.cfg.scenario)
        sc = train.with_overrides(seed=spec.seed, disable=spec.disabled, enable=spec.enabled)
        count = self.cfg.rendered_per_class(spec.images_per_class) * len(sc.classes)
        curation = None
        if self.cfg.curate_keep > 0:
            from drsynth.curate import check_classes

            check_classes(sc.class_names, where=f"--curate-keep (dataset {spec.name})")  # before rendering
            curation = {"keep_fraction": self.cfg.curate_keep, "weights": self.cfg.curate_weights}
        uri = self._render_to_dataset(
            spec.name,
            sc,
            count,
            spec={"scenario": sc.to_json(), "count": count, **({"curation": curation} if curation else {})},
            curation=curation,
        )
        self.datasets[spec.name] = uri
        return uri

    # -- models --

    def build_model(self, spec: ModelSpec) -> Path:
        """Train (unless an identical spec was trained before) and export RUN/models/<name>/model.onnx."""
        from drsynth.export import export_checkpoint
        from drsynth.train import TrainConfig, main

        mdir = self.run_dir / "models" / spec.name
        onnx_path = mdir / "model.onnx"
        full = {"spec": spec.model_dump(mode="json"), "data": self.datasets[spec.dataset]}
        if onnx_path.is_file() and _same_spec(mdir / "spec.json", full):
            return onnx_path
        tc = TrainConfig(
            data=self.datasets[spec.dataset], out=str(mdir / "checkpoint"), classes=spec.classes,
            backbone=spec.backbone, weights=spec.weights, frozen=not spec.unfreeze, dropout=spec.dropout,
            epochs=spec.epochs, batch_size=spec.batch_size, lr=spec.lr, image_size=spec.input_size,
            seed=spec.seed, workers=self.cfg.workers, overwrite=True, progress=self.progress, **spec.extra)
        main(tc)
        export_checkpoint(mdir / "checkpoint", onnx_path)
        atomic_write_json(mdir / "spec.json", full)
        return onnx_path

    def evaluate_model(self, spec: ModelSpec, onnx_path: Path) -> Path:
        from drsynth.evaluate import EvalResults, evaluate

        out = self.run_dir / "eval" / spec.name
        domains = {d: self.domains[d].uri for d in spec.eval_domains if d in self.domains}
        if not domains:
            raise ConfigError(f"model {spec.name}: none of its evaluation domains {spec.eval_domains} exists")
        # the training domain by kind: a synthetic model's is `synthetic` or `synthetic4`
        train_domains = [d for d in domains if self.domains[d].kind == spec.train_domain]
        key = {"model": str(onnx_path.stat().st_mtime_ns), "domains": domains, "train_domains": train_domains}
        metrics_path = out / "metrics.json"
        if metrics_path.is_file() and _same_spec(out / "spec.json", key):
            EvalResults.read(metrics_path)
            return metrics_path
        evaluate(onnx_path, domains, out_dir=out, train_domains=train_domains, only_model_classes=True,
                 progress=self.progress)
        atomic_write_json(out / "spec.json", key)
        return metrics_path

    def explain_model(self, spec: ModelSpec, onnx_path: Path) -> Path:
        """Fig. 5-style heatmap grids of one model on each of its domains (RUN/explain/<model>/)."""
        from drsynth.explain import explain

        out = self.run_dir / "explain" / spec.name
        domains = {d: self.domains[d].uri for d in spec.eval_domains if d in self.domains}
        key = {"model": str(onnx_path.stat().st_mtime_ns), "domains": domains, "k": self.cfg.explain_k}
        if (out / "index.json").is_file() and _same_spec(out / "spec.json", key):
            return out
        explain(domains, out, onnx_model=onnx_path, checkpoint=onnx_path.parent / "checkpoint",
                k=self.cfg.explain_k, name=spec.name)
        atomic_write_json(out / "spec.json", key)
        return out

    def write_run_json(self) -> None:
        import datetime
        import json

        path = self.run_dir / "run.json"
        run: dict[str, Any] = {}
        if path.is_file():
            try:
                run = json.loads(path.read_text())
            except ValueError:
                run = {}
        run.setdefault("format", "drsynth-run/1")
        run.setdefault("name", self.run_dir.resolve().name)
        run.setdefault("created", datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"))
        run["preset"] = self.preset or run.get("preset") or "custom"
        run["config"] = self.cfg.model_dump(mode="json")
        run["scenarios"] = {**run.get("scenarios", {}), **self.scenarios}
        run["domains"] = {**run.get("domains", {}), **{k: v.model_dump() for k, v in self.domains.items()}}
        run["datasets"] = {**run.get("datasets", {}), **self.datasets}
        run["notes"] = sorted(set(run.get("notes", [])) | set(self.notes))
        run["drsynth_version"] = __version__
        atomic_write_json(path, run)


def run_study(study: str, cfg: StudyConfig, run_dir: str | Path, *, real: str | None = None,
              real_test: str | None = None, toon: str | None = None, progress: bool = True,
              preset: str | None = None) -> StudyResults:
    """Plan, build (render, package, train, export, evaluate: reusing what the run folder already has) and
    collect one study into RUN/studies/<study>/."""
    if study not in STUDIES:
        raise ConfigError(f"unknown study {study!r}: expected one of {', '.join(STUDIES)}")
    runner = StudyRunner(run_dir, cfg, progress=progress, preset=preset)
    needed = ["synthetic4"] if study == "scaling" else ["synthetic", "toon"]
    runner.prepare_domains(needed, real=real, real_test=real_test, toon=toon)
    two_class = runner.scenario_pair(cfg.scenario)[0].class_names
    plan = plan_study(study, cfg, list(runner.domains), class_names=two_class)
    for ds in plan.datasets:
        runner.build_dataset(ds)
    for m in plan.models:
        onnx_path = runner.build_model(m)
        runner.evaluate_model(m, onnx_path)
        if study == "transfer" and cfg.explain_k and m.seed == plan.series[0].seeds[0]:
            runner.explain_model(m, onnx_path)
    runner.write_run_json()
    return collect_study(plan, run_dir)  # run-wide notes (splits, held-out breeds) are in run.json


def domain_sheet(uri: str, out_png: Path, *, per_class: int = 8) -> None:
    """A contact sheet of a domain's first images per class (the paper's Fig. 6 shows one per domain)."""
    import io as _io

    from drsynth.data import open_domain
    from drsynth.dataset_card import contact_sheet, make_thumbnail
    from drsynth.explain import first_per_class

    ds = open_domain(uri)
    thumbs: dict[str, list[bytes]] = {c: [] for c in ds.classes}
    for image, cls, _ in first_per_class(ds, per_class):
        buf = _io.BytesIO()
        image.convert("RGB").save(buf, format="JPEG", quality=90)
        thumbs[cls].append(make_thumbnail(buf.getvalue()))
    counts: dict[str, int] = {}
    for s in getattr(ds, "files", []):  # image folders know their files without decoding them
        counts[ds.classes[s[1]]] = counts.get(ds.classes[s[1]], 0) + 1
    atomic_write_bytes(out_png, contact_sheet(thumbs, counts or {c: len(v) for c, v in thumbs.items()},
                                              list(ds.classes)))


def render_images(scenario: Any, count: int, out_dir: Path, *, workers: int | None = 0, progress: bool = True,
                  ctx: Any = None) -> None:
    """Render images 0..count-1 of `scenario` into a render folder (design.md, "Render output folder");
    with `ctx` (prebuilt subject pools) in this process; workers None = one process per core."""
    from drsynth.render_job import render_range

    workers = None if workers is None else max(1, workers)
    with count_bar(f"render {out_dir.name}", enabled=progress) as on_progress:
        render_range(scenario, out_dir, count=count, workers=workers, ctx=ctx, on_progress=on_progress)
