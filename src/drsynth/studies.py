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
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from drsynth import __version__
from drsynth.errors import ConfigError, DatasetError
from drsynth.fsutil import atomic_write_bytes, atomic_write_json

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
    workers: int = Field(0, ge=0, description="render and data-loader workers (0 = in process)")
    seeds: int = Field(1, ge=1, le=100, description="training repeats per condition (seeds 0..K-1)")
    train_extra: dict[str, Any] = Field(default_factory=dict, description="further drsynth.train settings")
    ablations: list[str] = Field(default_factory=lambda: list(ABLATIONS), description="ablation conditions to run")

    def model_post_init(self, _: Any) -> None:
        unknown = [a for a in self.ablations if a not in ABLATIONS]
        if unknown:
            raise ConfigError(f"unknown ablation(s) {unknown}: expected some of {list(ABLATIONS)}")

    @classmethod
    def quick(cls, **kw: Any) -> StudyConfig:
        """A configuration that runs each study in seconds on a CPU (tests, the pipeline's `quick` preset)."""
        base = dict(images_per_class=24, test_images_per_class=8, render_size=64, backbone="small-cnn",
                    weights="none", input_size=48, epochs=2, batch_size=16)
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


def plan_study(study: str, cfg: StudyConfig, domains: Sequence[str]) -> StudyPlan:
    """What `study` needs, given the names of the domains that exist (`real`, `synthetic`, `toon`, `synthetic4`).

    `real` here also means real *training* photos exist (the real-trained models need them). Without them the
    real-trained bars are left out and the plan says so in `notes`.
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
        variants = ARCHITECTURE_VARIANTS if study == "architecture" else {CONTROL_VARIANT:
                                                                           ARCHITECTURE_VARIANTS[CONTROL_VARIANT]}
        for src in sources:
            ds = "real-train" if src == "real" else "synth-control"
            for variant, (label, dropout, unfreeze) in variants.items():
                names = []
                for seed in seeds:
                    m = _model(cfg, ds, variant, seed, train_domain=src, dropout=dropout, unfreeze=unfreeze,
                               eval_domains=eval_2)
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
                           eval_domains=eval_2)
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
        ax.set_ylim(0, 1.05)
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
