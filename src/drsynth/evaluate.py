"""Cross-domain evaluation of an exported ONNX classifier: accuracy, AAR, per-class accuracy, confusion.

A domain is anything `drsynth.data.open_domain` opens: a dataset URI (a manifest) or a plain image folder
`DIR/<class>/*`. Samples are matched to the model's outputs by class *name*, never by label number, so a
domain may hold a subset of the model's classes (a cats-only cartoon set is fine) but never a class the model
does not know (that is an error, unless `only_model_classes` asks to skip those classes).

Numbers (design.md, "Run directory"):
- accuracy over all images of a domain; AAR = accuracy - 1/n with n = the model's class count (the paper's
  "accuracy above random", Fig. 8);
- per-class accuracy = recall of each true class present in the domain;
- confusion: rows = true class, columns = predicted class, both in the model's class order;
- mean out-of-domain accuracy = mean accuracy over the domains that are not the model's training domain(s)
  (the paper's Fig. 7 argument; with no training domain named, every domain counts).
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from pydantic import BaseModel, ConfigDict, Field

from drsynth import __version__, metrics
from drsynth.errors import ConfigError, DatasetError, ModelError
from drsynth.fsutil import atomic_write_bytes, atomic_write_json
from drsynth.onnx_model import OnnxClassifier
from drsynth.preprocess import preprocess_batch

DOMAIN_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
DEVICES = ("auto", "cpu", "cuda")


class DomainMetrics(BaseModel):
    """One model on one domain."""

    model_config = ConfigDict(extra="forbid")

    uri: str
    n: int = Field(description="images evaluated")
    classes: list[str] = Field(description="the domain's classes present, model order")
    accuracy: float
    aar: float = Field(description="accuracy - 1/len(model classes)")
    per_class_accuracy: dict[str, float]
    counts: dict[str, int]
    confusion: list[list[int]] = Field(description="rows = true, cols = predicted, model class order")
    skipped_classes: list[str] = Field(default_factory=list, description="domain classes the model lacks")
    images_per_s: float = 0.0


class EvalResults(BaseModel):
    """One model on several domains: the content of `metrics.json`."""

    model_config = ConfigDict(extra="forbid")

    model: str
    classes: list[str]
    backbone: str = "?"
    providers: list[str] = Field(default_factory=list)
    train_domains: list[str] = Field(default_factory=list)
    domains: dict[str, DomainMetrics] = Field(default_factory=dict)
    mean_accuracy: float | None = None
    mean_out_of_domain_accuracy: float | None = None
    notes: list[str] = Field(default_factory=list)
    drsynth_version: str = __version__

    @classmethod
    def read(cls, path: str | Path) -> EvalResults:
        path = Path(path)
        try:
            return cls.model_validate_json(path.read_text())
        except FileNotFoundError:
            raise DatasetError(f"evaluation results not found: {path} (run `drsynth evaluate` first)") from None
        except Exception as e:
            raise DatasetError(f"{path} is not a drsynth metrics.json: {e}") from None


def parse_domain(spec: str) -> tuple[str, str]:
    """`NAME=URI_OR_FOLDER` -> (name, uri), with a clear error for anything else."""
    name, sep, uri = spec.partition("=")
    name, uri = name.strip(), uri.strip()
    if not sep or not name or not uri:
        raise ConfigError(
            f"--domain expects NAME=URI_OR_FOLDER (e.g. real=./photos or synth=s3://bucket/test), got {spec!r}"
        )
    if not DOMAIN_NAME.match(name):
        raise ConfigError(
            f"domain name {name!r} in {spec!r}: use letters, digits, '_', '-', '.' (it names output files)"
        )
    return name, uri


def parse_domains(specs: Sequence[str]) -> dict[str, str]:
    domains: dict[str, str] = {}
    for spec in specs:
        name, uri = parse_domain(spec)
        if name in domains:
            raise ConfigError(f"domain {name!r} given twice ({domains[name]!r} and {uri!r}); names must be unique")
        domains[name] = uri
    return domains


def load_model(model_path: str | Path, *, device: str = "auto", threads: int | None = None) -> OnnxClassifier:
    """Load the ONNX model on the requested device and check that it is self-consistent.

    `device="cuda"` fails unless the session really runs on CUDA (onnxruntime silently falls back to CPU,
    so the providers are read back from the session, not assumed).
    """
    from drsynth.onnx_model import available_providers

    if device not in DEVICES:
        raise ConfigError(f"device must be one of {DEVICES}, got {device!r}")
    providers = ["CPUExecutionProvider"] if device == "cpu" else available_providers(prefer_gpu=True)
    if device == "cuda" and "CUDAExecutionProvider" not in providers:
        raise ConfigError(
            f"device 'cuda' requested but this onnxruntime has no CUDA provider (it has {providers}); "
            "install onnxruntime-gpu (extra `drsynth[gpu]`) or use --device auto/cpu"
        )
    clf = OnnxClassifier.load(model_path, providers=providers, threads=threads)
    if device == "cuda" and "CUDAExecutionProvider" not in clf.providers:
        raise ModelError(
            f"{model_path}: onnxruntime could not start the CUDA provider (session uses {clf.providers}); "
            "check the CUDA/cuDNN libraries match onnxruntime-gpu, or use --device cpu"
        )
    check_model(clf)
    return clf


def check_model(clf: OnnxClassifier) -> None:
    """The model's class list must match the width of its output."""
    n = len(clf.classes)
    if n < 2 or len(set(clf.classes)) != n:
        raise ModelError(f"{clf.path}: metadata drsynth.classes must list >= 2 distinct names, got {clf.classes}")
    shape = clf.session.get_outputs()[0].shape
    width = shape[-1] if shape else None
    if isinstance(width, int) and width != n:
        raise ModelError(
            f"{clf.path}: output 'logits' has {width} columns but the metadata lists {n} classes {clf.classes}; "
            "the model and its class list disagree (re-export it with `drsynth export`)"
        )


def _batches(samples: Iterable[tuple[Image.Image, str]], size: int) -> Iterator[list[tuple[Image.Image, str]]]:
    batch: list[tuple[Image.Image, str]] = []
    for s in samples:
        batch.append(s)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def evaluate_samples(
    clf: OnnxClassifier,
    samples: Iterable[tuple[Image.Image, str]],
    *,
    uri: str = "<memory>",
    domain: str = "memory",
    batch_size: int = 64,
    skipped_classes: Sequence[str] = (),
    on_batch: Any = None,
) -> DomainMetrics:
    """Run the model on (image, class name) pairs and compute the domain's numbers."""
    classes = list(clf.classes)
    index = {c: i for i, c in enumerate(classes)}
    n_cls = len(classes)
    confusion = np.zeros((n_cls, n_cls), np.int64)
    seconds = 0.0
    for batch in _batches(samples, batch_size):
        unknown = sorted({c for _, c in batch if c not in index})
        if unknown:
            raise DatasetError(
                f"{uri}: class(es) {unknown} are not among the model's classes {classes}; "
                "evaluate on a domain with the model's classes (or skip the others: --only-model-classes)"
            )
        t0 = time.perf_counter()
        logits = clf.logits(preprocess_batch([im for im, _ in batch], clf.preprocess))
        seconds += time.perf_counter() - t0
        if logits.ndim != 2 or logits.shape != (len(batch), n_cls):
            raise ModelError(
                f"{clf.path}: expected logits of shape ({len(batch)}, {n_cls}) for {n_cls} classes, "
                f"got {tuple(logits.shape)}; the model and its class list disagree"
            )
        pred = logits.argmax(axis=1)
        for (_, c), p in zip(batch, pred, strict=True):
            confusion[index[c], int(p)] += 1
        if on_batch is not None:
            on_batch(len(batch))
        metrics.evaluate().images.labels(domain).inc(len(batch))
    n = int(confusion.sum())
    if n == 0:
        raise DatasetError(f"{uri}: the domain has no images to evaluate (expected DIR/<class>/*.jpg or a dataset)")
    m = metrics_from_confusion(confusion, classes, uri=uri, images_per_s=n / max(seconds, 1e-9),
                               skipped_classes=skipped_classes)
    metrics.evaluate().accuracy.labels(domain).set(m.accuracy)
    return m


def metrics_from_confusion(
    confusion: np.ndarray,
    classes: Sequence[str],
    *,
    uri: str,
    images_per_s: float = 0.0,
    skipped_classes: Sequence[str] = (),
) -> DomainMetrics:
    confusion = np.asarray(confusion, np.int64)
    row = confusion.sum(axis=1)
    n = int(row.sum())
    acc = float(np.trace(confusion) / n)
    present = [i for i, r in enumerate(row) if r > 0]
    return DomainMetrics(
        uri=uri,
        n=n,
        classes=[classes[i] for i in present],
        accuracy=acc,
        aar=acc - 1.0 / len(classes),
        per_class_accuracy={classes[i]: float(confusion[i, i] / row[i]) for i in present},
        counts={classes[i]: int(row[i]) for i in present},
        confusion=confusion.tolist(),
        skipped_classes=list(skipped_classes),
        images_per_s=float(images_per_s),
    )


def open_eval_domain(uri: str, model_classes: Sequence[str], *, only_model_classes: bool = False, **kw: Any):
    """Open a domain and check its classes against the model's. Returns (dataset, skipped class names)."""
    from drsynth.data import open_domain

    ds = open_domain(uri, **kw)
    domain_classes = list(ds.classes)
    unknown = [c for c in domain_classes if c not in model_classes]
    known = [c for c in domain_classes if c in model_classes]
    if unknown and not only_model_classes:
        raise DatasetError(
            f"domain {uri}: class(es) {unknown} are not among the model's classes {list(model_classes)} "
            f"(the domain has {domain_classes}); rename the folders to the model's class names, or pass "
            "--only-model-classes to evaluate on the shared classes only"
        )
    if not known:
        raise DatasetError(
            f"domain {uri}: none of its classes {domain_classes} is one of the model's classes "
            f"{list(model_classes)}; expected folders named after the model's classes"
        )
    if unknown:
        ds = open_domain(uri, classes=known, **kw)
    if len(ds) == 0:
        raise DatasetError(f"domain {uri}: no images for classes {known} (expected DIR/<class>/*.jpg or a dataset)")
    return ds, unknown


def domain_samples(ds) -> Iterator[tuple[Image.Image, str]]:
    for s in ds:
        yield s["image"], s["class"]


def evaluate(
    model: str | Path | OnnxClassifier,
    domains: dict[str, str],
    *,
    out_dir: str | Path | None = None,
    train_domains: Sequence[str] = (),
    batch_size: int = 64,
    only_model_classes: bool = False,
    device: str = "auto",
    threads: int | None = None,
    progress: bool = True,
    domain_kwargs: dict[str, dict[str, Any]] | None = None,
) -> EvalResults:
    """Evaluate one model on named domains; with `out_dir`, write metrics.json and confusion-<name>.png.

    `domain_kwargs` passes reader options per domain (e.g. `{"real": {"split": "val"}}` for a dataset).
    """
    if not domains:
        raise ConfigError("no domains to evaluate on: give at least one NAME=URI_OR_FOLDER")
    for name in domains:
        if not DOMAIN_NAME.match(name):
            raise ConfigError(f"domain name {name!r}: use letters, digits, '_', '-', '.' (it names output files)")
    missing = [d for d in train_domains if d not in domains]
    if missing:
        raise ConfigError(f"training domain(s) {missing} are not among the evaluated domains {list(domains)}")
    clf = model if isinstance(model, OnnxClassifier) else load_model(model, device=device, threads=threads)
    check_model(clf)
    notes: list[str] = []
    if device == "auto":
        from drsynth.onnx_model import available_providers

        if "CUDAExecutionProvider" in available_providers() and "CUDAExecutionProvider" not in clf.providers:
            notes.append(f"CUDA provider available but the session fell back to {clf.providers}")

    results: dict[str, DomainMetrics] = {}
    opened = {name: open_eval_domain(uri, clf.classes, only_model_classes=only_model_classes,
                                     **(domain_kwargs or {}).get(name, {}))
              for name, uri in domains.items()}
    with _progress(progress) as bar:
        for name, uri in domains.items():
            ds, skipped = opened[name]
            task = bar.add_task(f"evaluate {name}", total=len(ds)) if bar else None
            results[name] = evaluate_samples(
                clf, domain_samples(ds), uri=uri, domain=name, batch_size=batch_size, skipped_classes=skipped,
                on_batch=(lambda k, t=task: bar.advance(t, k)) if bar else None,
            )
            if skipped:
                notes.append(f"{name}: skipped class(es) {skipped} the model does not know")

    ood = [m.accuracy for name, m in results.items() if name not in train_domains]
    res = EvalResults(
        model=str(clf.path),
        classes=list(clf.classes),
        backbone=clf.backbone,
        providers=clf.providers,
        train_domains=list(train_domains),
        domains=results,
        mean_accuracy=float(np.mean([m.accuracy for m in results.values()])),
        mean_out_of_domain_accuracy=float(np.mean(ood)) if ood else None,
        notes=notes,
    )
    if out_dir is not None:
        write_results(res, out_dir)
    return res


def write_results(res: EvalResults, out_dir: str | Path, *, confusion_png: bool = True) -> Path:
    """metrics.json plus (unless `confusion_png=False`) one confusion-matrix PNG per domain."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, m in res.domains.items() if confusion_png else ():
        png = plot_confusion(m, res.classes, title=f"{model_label(res.model)} on {name}")
        atomic_write_bytes(out_dir / f"confusion-{name}.png", png)
    path = out_dir / "metrics.json"
    atomic_write_json(path, res.model_dump(mode="json"))
    return path


def model_label(path: str | Path) -> str:
    """A readable name for a model file: RUN/models/<name>/model.onnx -> <name>."""
    p = Path(path)
    return p.parent.name if p.stem == "model" and p.parent.name else p.stem


def plot_confusion(m: DomainMetrics, classes: Sequence[str], *, title: str) -> bytes:
    """A confusion matrix as PNG bytes: counts and row-normalised shading."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cm = np.asarray(m.confusion, float)
    row = cm.sum(axis=1, keepdims=True)
    frac = np.divide(cm, row, out=np.zeros_like(cm), where=row > 0)
    n = len(classes)
    side = 2.2 + 0.7 * n
    fig, ax = plt.subplots(figsize=(side + 0.8, side))
    im = ax.imshow(frac, cmap="Blues", vmin=0, vmax=1)
    for i in range(n):
        for j in range(n):
            if row[i, 0] == 0:
                continue
            ax.text(j, i, f"{int(cm[i, j])}\n{frac[i, j]:.0%}", ha="center", va="center", fontsize=9,
                    color="white" if frac[i, j] > 0.6 else "black")
    ax.set_xticks(range(n), classes, rotation=30, ha="right")
    ax.set_yticks(range(n), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"{title}\naccuracy {m.accuracy:.1%}, AAR {m.aar:+.1%}, n={m.n}", fontsize=10)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="fraction of true class")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return buf.getvalue()


class _NoBar:
    def __enter__(self):
        return None

    def __exit__(self, *a):
        return False


def _progress(enabled: bool):
    if not enabled:
        return _NoBar()
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    transient=False)
