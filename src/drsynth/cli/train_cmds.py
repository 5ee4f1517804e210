"""`drsynth train` and `drsynth export` (registered by drsynth.cli)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.console import Console

console = Console()


def register(app: typer.Typer) -> None:
    """Add this area's commands to the root app."""
    app.command("train")(train_cmd)
    app.command("export")(export_cmd)


def train_cmd(
    data: str = typer.Option(
        ..., "--data", help="training dataset URI (s3://, file://, folder) or DIR/<class>/*"
    ),
    out: Path = typer.Option(..., "--out", help="checkpoint folder to write"),
    val: str | None = typer.Option(
        None, "--val", help="validation dataset/folder (default: val split of --data)"
    ),
    eval_domains: list[str] = typer.Option(
        [], "--eval", help="NAME=URI_OR_FOLDER evaluated after every epoch (the paper's Fig. 2); repeatable"
    ),
    backbone: str | None = typer.Option(
        None,
        "--backbone",
        help="vgg16 (default, the paper's), resnet18, resnet50, mobilenet_v2, "
        "mobilenet_v3_large, efficientnet_b0, convnext_tiny or small-cnn",
    ),  # fmt: skip
    weights: str | None = typer.Option(
        None, "--weights", help="imagenet (torchvision's; default), none, or PATH of a state dict file"
    ),
    epochs: int | None = typer.Option(None, "--epochs", min=1, help="default 10"),
    classes: str | None = typer.Option(None, "--classes", help="comma-separated classes, in label order"),
    unfreeze: bool | None = typer.Option(
        None, "--unfreeze/--freeze", help="fine-tune the backbone too (default: frozen unless --weights none)"
    ),
    batch_size: int | None = typer.Option(None, "--batch-size", min=1, help="default 32"),
    lr: float | None = typer.Option(None, "--lr", help="Adam learning rate (default 0.001)"),
    dropout: float | None = typer.Option(None, "--dropout", help="head dropout (default 0.3)"),
    image_size: int | None = typer.Option(None, "--image-size", help="network input side (default 224)"),
    cache_views: int | None = typer.Option(
        None,
        "--cache-views",
        min=0,
        help="frozen backbone: augmented views whose features are cached (default 2; 0 off)",
    ),
    no_augment: bool = typer.Option(False, "--no-augment", help="train on the eval transform"),
    val_fraction: float | None = typer.Option(
        None, "--val-fraction", help="held-out share of --data (default 0.1)"
    ),
    workers: int | None = typer.Option(
        None, "--workers", min=0, help="DataLoader workers (default: cores - 1)"
    ),
    seed: int | None = typer.Option(None, "--seed", min=0, help="default 0"),
    threads: int | None = typer.Option(None, "--threads", min=1, help="torch CPU threads (default: torch's)"),
    device: str | None = typer.Option(None, "--device", help="auto (default), cpu or cuda"),
    amp: str | None = typer.Option(
        None, "--amp", help="CUDA autocast: auto (bf16, else fp16), bf16, fp16, off"
    ),
    config: Path | None = typer.Option(
        None, "--config", help="YAML/JSON TrainConfig (all settings, incl. `augment`); flags override it"
    ),
    upload: str | None = typer.Option(
        None, "--upload", help="also copy the finished checkpoint to this store URI (s3://bucket/prefix)"
    ),
    overwrite: bool = typer.Option(
        False, "--overwrite", help="replace --out (and a checkpoint at --upload) if it exists"
    ),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="show the progress bar"),
) -> None:
    """Train a classifier (backbone + the paper's 128-unit head) and write a checkpoint folder.

    Under torchrun (`torchrun --nproc-per-node N -m drsynth train ...`) the N processes train together
    (DistributedDataParallel, --batch-size per process) and rank 0 writes the checkpoint.
    """
    from contextlib import nullcontext

    from drsynth import metrics
    from drsynth.distributed import is_main_process
    from drsynth.evaluate import parse_domains
    from drsynth.train import main

    settings: dict[str, Any] = _read_config(config) if config else {}
    flags: dict[str, Any] = {
        "data": data,
        "out": str(out),
        "val": val,
        "backbone": backbone,
        "weights": weights,
        "epochs": epochs,
        "classes": [c.strip() for c in classes.split(",") if c.strip()] if classes else None,
        "frozen": None if unfreeze is None else not unfreeze,
        "batch_size": batch_size,
        "lr": lr,
        "dropout": dropout,
        "image_size": image_size,
        "cache_views": cache_views,
        "val_fraction": val_fraction,
        "workers": workers,
        "seed": seed,
        "threads": threads,
        "device": device,
        "amp": amp,
        "upload": upload,
    }
    settings.update({k: v for k, v in flags.items() if v is not None})
    if eval_domains:
        settings["evals"] = parse_domains(eval_domains)
    if no_augment:
        settings["augment"] = {**settings.get("augment", {}), "enabled": False}
    settings["overwrite"] = overwrite or settings.get("overwrite", False)
    settings["progress"] = progress
    cfg = _validate(settings)
    main_process = is_main_process()  # under torchrun: rank 0 prints and exports the step's metrics
    state = "frozen" if cfg.frozen else ("trained from scratch" if cfg.weights == "none" else "fine-tuned")
    if main_process:
        console.print(
            f"training {cfg.backbone} ({state}, weights {cfg.weights}) for {cfg.epochs} epochs on {cfg.data}"
        )
    with metrics.step("train") if main_process else nullcontext():
        result = main(cfg)
    if main_process:
        console.print(
            f"best epoch {result.best_epoch}: val accuracy {result.best_val_accuracy:.1%}; classes {result.classes}\n"
            f"wrote {result.out}/ (model.safetensors, model.json, history.json, curve.png)"
            + (f"\nuploaded it to {cfg.upload}" if cfg.upload else "")
        )


def export_cmd(
    checkpoint: Path = typer.Option(..., "--checkpoint", help="checkpoint folder written by `drsynth train`"),
    out: Path = typer.Option(..., "--out", help="ONNX file to write, e.g. model.onnx"),
    triton_repo: Path | None = typer.Option(
        None, "--triton-repo", help="also write a Triton/KServe model repository: DIR/<name>/1/model.onnx"
    ),
    triton_name: str = typer.Option("drsynth", "--triton-name", help="model name inside --triton-repo"),
    max_batch_size: int = typer.Option(32, "--max-batch-size", min=1, help="Triton max_batch_size"),
    opset: int = typer.Option(18, "--opset", min=13, help="ONNX opset"),
    exporter: str = typer.Option(
        "auto", "--exporter", help="auto (TorchScript, falling back to torch.export) | torchscript | dynamo"
    ),
    tolerance: float = typer.Option(1e-4, "--tolerance", help="max abs logit difference allowed vs PyTorch"),
) -> None:
    """Export a checkpoint to ONNX (dynamic batch, class names and preprocessing in metadata), parity-checked."""
    from drsynth.export import export_checkpoint

    result = export_checkpoint(
        checkpoint,
        out,
        opset=opset,
        exporter=exporter,
        tolerance=tolerance,
        triton_repo=triton_repo,
        triton_name=triton_name,
        triton_max_batch_size=max_batch_size,
    )
    console.print(
        f"parity vs PyTorch: max abs difference {result.max_abs_diff:.3g} over batch sizes "
        f"{list(result.checked_batch_sizes)} (limit {tolerance:g})"
    )
    console.print(
        f"wrote {result.path} ({result.size_bytes / 1e6:.1f} MB, {result.backbone}, classes {result.classes})"
    )
    if result.triton_model_dir is not None:
        console.print(
            f"wrote Triton model repository entry {result.triton_model_dir}/ (config.pbtxt, labels.txt, 1/model.onnx)"
        )


def _read_config(path: Path) -> dict[str, Any]:
    import yaml

    from drsynth.errors import ConfigError

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise ConfigError(f"cannot read --config {path}: {e.strerror or e}") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"--config {path} is not valid YAML/JSON: {e}") from None
    if not isinstance(data, dict):
        raise ConfigError(
            f"--config {path} must hold a mapping of TrainConfig fields, got {type(data).__name__}"
        )
    return data


def _validate(settings: dict[str, Any]):
    from pydantic import ValidationError

    from drsynth.errors import ConfigError
    from drsynth.train import TrainConfig

    try:
        return TrainConfig.model_validate(settings)
    except ValidationError as e:
        problems = "; ".join(
            f"{'.'.join(map(str, err['loc'])) or 'config'}: {err['msg']} (got {err.get('input')!r})"
            for err in e.errors()[:5]
        )
        raise ConfigError(f"invalid training settings: {problems}") from None
