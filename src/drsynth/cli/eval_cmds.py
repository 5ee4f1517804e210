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
    app.command("study")(study_cmd)


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


def study_cmd(
    name: str = typer.Argument(..., help="architecture | ablation | transfer | scaling | all"),
    out: Path = typer.Option(Path("runs/study"), "--out", help="run folder (reused: models already built are kept)"),
    preset: str = typer.Option("default", "--preset", help="quick (seconds, CPU), default, or paper (the paper's sizes)"),
    seeds: int | None = typer.Option(None, "--seeds", min=1, help="training repeats per condition: mean and 95% interval"),
    scenario: str | None = typer.Option(None, "--scenario", help="2-class scenario: preset name or YAML path"),
    scaling_scenario: str | None = typer.Option(None, "--scaling-scenario", help="4-class scenario (scaling study)"),
    real: Path | None = typer.Option(None, "--real", help="real photos DIR/<class>/*: split 80-20 into training and test"),
    real_test: Path | None = typer.Option(None, "--real-test", help="separate real test photos (then --real is all training)"),
    toon: Path | None = typer.Option(None, "--toon", help="cartoon images DIR/<class>/* (default: renders in toon style)"),
    images_per_class: int | None = typer.Option(None, "--images-per-class", min=2, help="training renders per class"),
    test_images_per_class: int | None = typer.Option(None, "--test-images-per-class", min=1, help="held-out renders per class"),
    backbone: str | None = typer.Option(None, "--backbone", help="vgg16 (the paper's), resnet18, mobilenet_v2, small-cnn, ..."),
    weights: str | None = typer.Option(None, "--weights", help="imagenet | none | PATH to a state dict"),
    epochs: int | None = typer.Option(None, "--epochs", min=1),
    input_size: int | None = typer.Option(None, "--input-size", min=16, help="network input side, pixels"),
    render_size: int | None = typer.Option(None, "--render-size", min=16, help="render side, pixels"),
    workers: int | None = typer.Option(None, "--workers", min=0, help="render and data-loader workers"),
    ablation: list[str] = typer.Option([], "--ablation", help="only these ablation conditions (repeatable)"),
    explain_k: int | None = typer.Option(None, "--explain-k", min=0, help="transfer: heatmaps of the first K "
                                         "images per class and domain (default 4; 0 = none)"),
    curate_keep: float | None = typer.Option(None, "--curate-keep", help="curate training renders: render N / "
                                             "KEEP per class, keep the best N by ImageNet group probability"),
    curate_weights: str | None = typer.Option(None, "--curate-weights", help="mobilenet_v2 ImageNet state dict "
                                              "for --curate-keep (default: torchvision's, downloaded)"),
    report: bool = typer.Option(True, "--report/--no-report", help="rebuild RUN/report.html afterwards"),
) -> None:
    """Run one of the paper's studies (or all) end to end: render, package, train, export, evaluate, figure."""
    from drsynth.errors import ConfigError
    from drsynth.studies import STUDIES, StudyConfig, run_study

    names = list(STUDIES) if name == "all" else [name]
    if any(n not in STUDIES for n in names):
        raise ConfigError(f"unknown study {name!r}: expected one of {', '.join(STUDIES)} or all")
    given = {"seeds": seeds, "scenario": scenario, "scaling_scenario": scaling_scenario,
             "images_per_class": images_per_class, "test_images_per_class": test_images_per_class,
             "backbone": backbone, "weights": weights, "epochs": epochs, "input_size": input_size,
             "render_size": render_size, "workers": workers, "ablations": ablation or None, "explain_k": explain_k,
             "curate_keep": curate_keep, "curate_weights": curate_weights}
    try:
        cfg = StudyConfig.preset(preset, **{k: v for k, v in given.items() if v is not None})
    except ValueError as e:  # pydantic's ValidationError
        raise ConfigError(f"study settings: {e}") from None
    for n in names:
        res = run_study(n, cfg, out, real=str(real) if real else None, real_test=str(real_test) if real_test else None,
                        toon=str(toon) if toon else None, preset=preset)
        console.print(f"[bold]{n}[/] on '{res.primary_domain}' ({len(res.seeds)} seed(s)):")
        for c in res.conditions:
            ci = f" [{c.ci95[0]:.1%}, {c.ci95[1]:.1%}]" if c.n > 1 else ""
            console.print(f"  {c.group}-trained {c.label} on {c.domain}: {c.metric} {c.mean:.1%}{ci}")
        console.print(f"  -> {out / 'studies' / n / 'results.json'}, figure.png")
    if report:
        from drsynth.report import build_report

        html_path, _ = build_report(out)
        console.print(f"report: {html_path}")
