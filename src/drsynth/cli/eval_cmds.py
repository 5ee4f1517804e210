"""`drsynth evaluate`, `drsynth explain`, `drsynth study`, `drsynth report` (registered by drsynth.cli)."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

console = Console()


def register(app: typer.Typer) -> None:
    """Add this area's commands to the root app."""
    app.command("evaluate")(evaluate_cmd)


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
