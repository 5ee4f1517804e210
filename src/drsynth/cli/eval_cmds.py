"""`drsynth evaluate`, `drsynth explain`, `drsynth study`, `drsynth report` (registered by drsynth.cli)."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

console = Console()


def register(app: typer.Typer) -> None:
    """Add this area's commands to the root app."""
    app.command("evaluate")(evaluate_cmd)
    app.command("explain")(explain_cmd)
    app.command("report")(report_cmd)


def evaluate_cmd(
    model: Path = typer.Option(..., "--model", help="exported model.onnx (drsynth export)"),
    domain: list[str] = typer.Option(
        ..., "--domain", help="NAME=URI_OR_FOLDER: a dataset URI (s3://, file://, path with dataset.json) or an "
        "image folder DIR/<class>/*; repeat for several domains"),
    out: Path = typer.Option(..., "--out", help="folder for metrics.json and confusion-<domain>.png"),
    train_domain: list[str] = typer.Option(
        [], "--train-domain", help="NAME of a domain the model was trained on (excluded from the mean "
        "out-of-domain accuracy); repeatable"),
    batch_size: int = typer.Option(64, "--batch-size", min=1, help="images per ONNX Runtime call"),
    device: str = typer.Option("auto", "--device", help="auto (CUDA when onnxruntime has it), cpu or cuda"),
    only_model_classes: bool = typer.Option(
        False, "--only-model-classes", help="skip domain classes the model does not know instead of failing"),
) -> None:
    """Evaluate an ONNX classifier on one or more domains: accuracy, AAR, per-class accuracy, confusion."""
    from drsynth import metrics
    from drsynth.evaluate import evaluate, parse_domains

    with metrics.step("evaluate"):
        res = evaluate(model, parse_domains(domain), out_dir=out, train_domains=train_domain,
                       batch_size=batch_size, only_model_classes=only_model_classes, device=device)
    console.print(f"model {res.model} ({res.backbone}, classes {res.classes}) on {', '.join(res.providers)}")
    for name, m in res.domains.items():
        per = ", ".join(f"{c} {a:.1%}" for c, a in m.per_class_accuracy.items())
        tag = " (train)" if name in res.train_domains else ""
        console.print(f"  {name}{tag}: accuracy {m.accuracy:.1%}  AAR {m.aar:+.1%}  n={m.n}  [{per}]")
    if res.mean_out_of_domain_accuracy is not None:
        console.print(f"  mean out-of-domain accuracy {res.mean_out_of_domain_accuracy:.1%}")
    for note in res.notes:
        console.print(f"  [yellow]note:[/] {note}")
    console.print(f"wrote {out / 'metrics.json'}")


def explain_cmd(
    domain: list[str] = typer.Option(..., "--domain", help="NAME=URI_OR_FOLDER; repeat for several domains"),
    out: Path = typer.Option(..., "--out", help="folder for <domain>.png grids and index.json"),
    model: Path | None = typer.Option(None, "--model", help="model.onnx: occlusion sensitivity (model-agnostic)"),
    checkpoint: Path | None = typer.Option(None, "--checkpoint", help="checkpoint folder: GradCAM"),
    k: int = typer.Option(4, "--k", min=1, help="first K images of each class and domain"),
    target: str = typer.Option("true", "--target", help="heat for: true (the image's class), pred, or a class name"),
    patch: int | None = typer.Option(None, "--patch", min=1, help="occlusion square, pixels (default side/7)"),
    stride: int | None = typer.Option(None, "--stride", min=1, help="occlusion step, pixels (default patch/2)"),
) -> None:
    """GradCAM and occlusion-sensitivity heatmaps for the first K images per class (the paper's Fig. 5)."""
    from drsynth.evaluate import parse_domains
    from drsynth.explain import explain

    index = explain(parse_domains(domain), out, onnx_model=model, checkpoint=checkpoint, k=k, target=target,
                    patch=patch, stride=stride)
    for name, d in index["domains"].items():
        console.print(f"  {name}: {len(d['images'])} images, {d['correct']} predicted right -> {out / d['png']}")


def report_cmd(
    run: Path = typer.Option(..., "--run", help="the run folder (drsynth run / drsynth study --out)"),
    title: str | None = typer.Option(None, "--title", help="page title"),
) -> None:
    """Build RUN/report.html (self-contained) and RUN/report.md from a run folder."""
    from drsynth.report import build_report

    html_path, md_path = build_report(run, title=title)
    console.print(f"wrote {html_path} and {md_path}")
