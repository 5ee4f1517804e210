"""`drsynth serve` and `drsynth predict` (registered by drsynth.cli)."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

console = Console()


def register(app: typer.Typer) -> None:
    """Add this area's commands to the root app."""
    app.command("serve")(serve_cmd)
    app.command("predict")(predict_cmd)


def serve_cmd(
    model: Path = typer.Option(..., "--model", help="exported model.onnx (drsynth export)"),
    host: str = typer.Option("127.0.0.1", "--host", help="address to bind (0.0.0.0: every interface)"),
    port: int = typer.Option(8080, "--port", help="TCP port; 0 picks a free one and prints it"),
    name: str = typer.Option("model", "--name", help="model name in the URLs (/v1/models/NAME:predict)"),
    max_batch: int | None = typer.Option(
        None,
        "--max-batch",
        help="most instances coalesced into one onnxruntime run (default: 32 on CUDA, 1 on CPU)",
    ),
    batch_wait_ms: float = typer.Option(
        0.0,
        "--batch-wait-ms",
        help="wait this long for more requests before a run (0: greedy, no added latency)",
    ),
    max_instances: int = typer.Option(64, "--max-instances", help="most images/tensors in one request"),
    max_payload_bytes: str = typer.Option(
        "16MiB", "--max-payload-bytes", help="largest request body (e.g. 16MiB, 512k); larger gets 413"
    ),
    max_image_pixels: int = typer.Option(
        50_000_000, "--max-image-pixels", help="largest decoded image, width x height (decompression bombs)"
    ),
    threads: int | None = typer.Option(None, "--threads", help="onnxruntime intra-op threads (default: all)"),
    spin_wait: bool = typer.Option(
        False,
        "--spin-wait",
        help="onnxruntime threads busy-wait between runs (dedicated, idle machines only)",
    ),
    cpu: bool = typer.Option(False, "--cpu", help="use the CPU even when onnxruntime has CUDA"),
    access_log: bool = typer.Option(False, "--access-log", help="log one line per HTTP request"),
) -> None:
    """Serve an ONNX classifier with KServe (v1 and Open Inference Protocol v2) until Ctrl-C."""
    from pydantic import ValidationError

    from drsynth.errors import ConfigError
    from drsynth.serve.config import ServeConfig, parse_size

    try:
        cfg = ServeConfig(
            model_path=model,
            model_name=name,
            host=host,
            port=port,
            max_batch=max_batch,
            batch_wait_ms=batch_wait_ms,
            max_instances=max_instances,
            max_payload_bytes=parse_size(max_payload_bytes),
            max_image_pixels=max_image_pixels,
            threads=threads,
            spin_wait=spin_wait,
            prefer_gpu=not cpu,
            access_log=access_log,
        )
    except (ValidationError, ValueError) as e:
        raise ConfigError(f"drsynth serve: invalid option: {_one_line(e)}") from None
    from drsynth.serve import serve

    serve(cfg, announce=lambda text: print(text, flush=True))


def predict_cmd(
    images: list[Path] = typer.Argument(..., help="image files (JPEG, PNG, ...)"),
    model: Path = typer.Option(..., "--model", help="exported model.onnx (drsynth export)"),
    top_k: int = typer.Option(1, "--top-k", min=1, help="also list the k most probable classes"),
    as_json: bool = typer.Option(False, "--json", help="one JSON object per image instead of a table"),
    cpu: bool = typer.Option(False, "--cpu", help="use the CPU even when onnxruntime has CUDA"),
) -> None:
    """Label and probability for each image with an exported ONNX classifier (no server)."""
    from drsynth.predict import predict_images

    preds = predict_images(model, images, prefer_gpu=not cpu)
    if as_json:
        for p in preds:
            print(json.dumps(p.to_json()), flush=True)
        return
    table = Table(show_header=True, header_style="bold")
    table.add_column("image")
    table.add_column("label")
    table.add_column("probability", justify="right")
    if top_k > 1:
        table.add_column(f"top {top_k}")
    for p in preds:
        row = [str(p.path), p.label, f"{p.probability:.3f}"]
        if top_k > 1:
            row.append(", ".join(f"{c} {v:.3f}" for c, v in p.top(top_k)))
        table.add_row(*row)
    console.print(table)


def _one_line(e: Exception) -> str:
    from pydantic import ValidationError

    if isinstance(e, ValidationError):
        return "; ".join(f"{'.'.join(map(str, err['loc']))}: {err['msg']}" for err in e.errors())
    return str(e)
