"""Checkpoint -> ONNX (docs/design.md "ONNX model"), checked against PyTorch before anything is written.

    input   `input`  float32 [N, 3, H, W], N dynamic, preprocessed per the checkpoint's Preprocess
    output  `logits` float32 [N, n_classes]
    metadata_props: drsynth.classes (JSON list), drsynth.preprocess (Preprocess JSON), drsynth.backbone,
                    drsynth.version

The parity check runs the exported bytes in ONNX Runtime (CPU) and the checkpoint in PyTorch (float32, eval)
on a seeded batch spanning the preprocessed value range, at two batch sizes (the dynamic axis), and fails
above `tolerance` max abs difference on the logits. Optionally writes a Triton / KServe model repository:

    REPO/<name>/config.pbtxt      onnxruntime backend, dynamic batching, labels and preprocessing
    REPO/<name>/labels.txt        one class per line (Triton's classification extension)
    REPO/<name>/1/model.onnx
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from drsynth import __version__
from drsynth.checkpoint import CheckpointInfo, load_checkpoint
from drsynth.errors import ConfigError, ModelError
from drsynth.fsutil import atomic_dir, atomic_write_bytes
from drsynth.onnx_model import (
    INPUT_NAME,
    META_BACKBONE,
    META_CLASSES,
    META_PREPROCESS,
    META_VERSION,
    OUTPUT_NAME,
)
from drsynth.preprocess import Preprocess

DEFAULT_OPSET = 18
DEFAULT_TOLERANCE = 1e-4
_MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")


@dataclass(frozen=True)
class ExportResult:
    path: Path
    classes: list[str]
    backbone: str
    max_abs_diff: float
    checked_batch_sizes: tuple[int, ...]
    size_bytes: int
    triton_model_dir: Path | None = None


def parity_inputs(pp: Preprocess, batch: int, *, seed: int = 0) -> np.ndarray:
    """A seeded batch uniform over the range real preprocessed images take: ((0..1) - mean) / std."""
    rng = np.random.default_rng(seed)
    x = rng.random((batch, 3, pp.image_size, pp.image_size), dtype=np.float32)
    mean = np.asarray(pp.mean, np.float32)[None, :, None, None]
    std = np.asarray(pp.std, np.float32)[None, :, None, None]
    return (x - mean) / std


EXPORTERS = ("auto", "torchscript", "dynamo")


def _export_torchscript(model: torch.nn.Module, example: torch.Tensor, opset: int):
    import io
    import warnings

    import onnx

    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter announces its deprecation on every call
        torch.onnx.export(
            model,
            (example,),
            buf,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
            opset_version=opset,
            dynamo=False,
        )
    return onnx.load_from_string(buf.getvalue())


def _export_dynamo(model: torch.nn.Module, example: torch.Tensor, opset: int):
    program = torch.onnx.export(
        model,
        (example,),
        None,
        input_names=[INPUT_NAME],
        output_names=[OUTPUT_NAME],
        dynamo=True,
        dynamic_shapes=({0: torch.export.Dim("batch", min=1, max=65536)},),
        opset_version=opset,
        external_data=False,
        verbose=False,
    )
    return program.model_proto


def to_onnx_bytes(
    model: torch.nn.Module, info: CheckpointInfo, *, opset: int = DEFAULT_OPSET, exporter: str = "auto"
) -> bytes:
    """The model as ONNX bytes with a dynamic batch axis and drsynth's metadata_props.

    `auto` uses the TorchScript exporter (measured here: 0.06 s for small-cnn and 0.4 s for mobilenet_v2,
    against 2.5 s and 7.5 s for the torch.export-based one, which dominated short pipeline runs) and falls back
    to the torch.export-based exporter for a model the TorchScript one cannot trace. The parity check that
    follows judges either result.
    """
    if exporter not in EXPORTERS:
        raise ConfigError(f"unknown ONNX exporter '{exporter}'; expected one of {list(EXPORTERS)}")
    pp = info.preprocess
    example = torch.from_numpy(parity_inputs(pp, 2))
    model = model.eval()
    order = {
        "auto": (_export_torchscript, _export_dynamo),
        "torchscript": (_export_torchscript,),
        "dynamo": (_export_dynamo,),
    }[exporter]
    errors = []
    proto = None
    for fn in order:
        try:
            proto = fn(model, example, opset)
            break
        except Exception as e:  # exporter failures come in many types; keep each one's reason
            errors.append(f"{fn.__name__.removeprefix('_export_')}: {type(e).__name__}: {str(e)[:300]}")
    if proto is None:
        raise ModelError(f"ONNX export of {info.backbone} failed ({'; '.join(errors)})")
    import onnx

    onnx.helper.set_model_props(
        proto,
        {
            META_CLASSES: json.dumps(info.classes),
            META_PREPROCESS: pp.to_json(),
            META_BACKBONE: info.backbone,
            META_VERSION: __version__,
        },
    )
    proto.doc_string = f"drsynth {__version__} classifier: {info.backbone}, classes {info.classes}"
    return proto.SerializeToString()


def parity_check(
    model: torch.nn.Module,
    onnx_bytes: bytes,
    pp: Preprocess,
    *,
    batch_sizes: tuple[int, ...] = (1, 4),
    seed: int = 0,
) -> float:
    """Max abs difference of the logits, ONNX Runtime (CPU) vs PyTorch float32, over `batch_sizes`."""
    import onnxruntime as ort

    session = ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
    worst = 0.0
    model = model.eval()
    for i, n in enumerate(batch_sizes):
        x = parity_inputs(pp, n, seed=seed + i)
        with torch.no_grad():
            expected = model(torch.from_numpy(x)).float().numpy()
        got = session.run([OUTPUT_NAME], {INPUT_NAME: x})[0]
        if got.shape != expected.shape:
            raise ModelError(f"ONNX output shape {got.shape} != PyTorch {expected.shape} at batch {n}")
        worst = max(worst, float(np.abs(got - expected).max()))
    return worst


def triton_config(name: str, info: CheckpointInfo, *, max_batch_size: int = 32) -> str:
    """config.pbtxt for Triton's onnxruntime backend (also what KServe's Triton runtime reads)."""
    pp = info.preprocess

    def quoted(s: str) -> str:
        return json.dumps(s)  # a JSON string is a valid protobuf text-format string

    return (
        f"name: {quoted(name)}\n"
        'backend: "onnxruntime"\n'
        f"max_batch_size: {max_batch_size}\n"
        "input [\n"
        "  {\n"
        f"    name: {quoted(INPUT_NAME)}\n"
        "    data_type: TYPE_FP32\n"
        f"    dims: [ 3, {pp.image_size}, {pp.image_size} ]\n"
        "  }\n"
        "]\n"
        "output [\n"
        "  {\n"
        f"    name: {quoted(OUTPUT_NAME)}\n"
        "    data_type: TYPE_FP32\n"
        f"    dims: [ {len(info.classes)} ]\n"
        '    label_filename: "labels.txt"\n'
        "  }\n"
        "]\n"
        "dynamic_batching { }\n"
        f'parameters: {{ key: "{META_CLASSES}" value: {{ string_value: {quoted(json.dumps(info.classes))} }} }}\n'
        f'parameters: {{ key: "{META_PREPROCESS}" value: {{ string_value: {quoted(pp.to_json())} }} }}\n'
        f'parameters: {{ key: "{META_BACKBONE}" value: {{ string_value: {quoted(info.backbone)} }} }}\n'
    )


def check_triton_name(name: str) -> None:
    if not _MODEL_NAME.match(name):
        raise ConfigError(
            f"Triton model name {name!r} is not usable as a folder and model name: "
            "use letters, digits, '_', '-', '.', starting with a letter or digit"
        )


def write_triton_repo(
    repo: str | Path, name: str, onnx_bytes: bytes, info: CheckpointInfo, *, max_batch_size: int = 32
) -> Path:
    """REPO/<name>/{config.pbtxt, labels.txt, 1/model.onnx}; replaces that model folder atomically."""
    check_triton_name(name)
    target = Path(repo) / name
    with atomic_dir(target, overwrite=True) as tmp:
        (tmp / "1").mkdir()
        (tmp / "1" / "model.onnx").write_bytes(onnx_bytes)
        (tmp / "labels.txt").write_text("".join(c + "\n" for c in info.classes), encoding="utf-8")
        (tmp / "config.pbtxt").write_text(
            triton_config(name, info, max_batch_size=max_batch_size), encoding="utf-8"
        )
    return target


def export_checkpoint(
    checkpoint_dir: str | Path,
    out_path: str | Path,
    *,
    opset: int = DEFAULT_OPSET,
    exporter: str = "auto",
    tolerance: float = DEFAULT_TOLERANCE,
    triton_repo: str | Path | None = None,
    triton_name: str = "drsynth",
    triton_max_batch_size: int = 32,
) -> ExportResult:
    """Export a checkpoint folder to `out_path`; nothing is written unless the parity check passes."""
    out_path = Path(out_path)
    if out_path.is_dir():
        raise ConfigError(f"--out {out_path} is a folder; expected the path of the .onnx file to write")
    if triton_repo is not None:
        check_triton_name(triton_name)
    model, info = load_checkpoint(checkpoint_dir)
    onnx_bytes = to_onnx_bytes(model, info, opset=opset, exporter=exporter)
    batch_sizes = (1, 4)
    diff = parity_check(model, onnx_bytes, info.preprocess, batch_sizes=batch_sizes)
    if not diff <= tolerance:  # also catches NaN
        raise ModelError(
            f"ONNX parity check failed for {checkpoint_dir}: max abs logit difference {diff:.3g} vs PyTorch exceeds "
            f"{tolerance:g} (an operator exported differently; try another --opset); nothing was written"
        )
    atomic_write_bytes(out_path, onnx_bytes)
    triton_dir = None
    if triton_repo is not None:
        triton_dir = write_triton_repo(
            triton_repo, triton_name, onnx_bytes, info, max_batch_size=triton_max_batch_size
        )
    return ExportResult(
        path=out_path,
        classes=list(info.classes),
        backbone=info.backbone,
        max_abs_diff=diff,
        checked_batch_sizes=batch_sizes,
        size_bytes=len(onnx_bytes),
        triton_model_dir=triton_dir,
    )


__all__ = [
    "ExportResult",
    "export_checkpoint",
    "parity_check",
    "parity_inputs",
    "to_onnx_bytes",
    "triton_config",
    "write_triton_repo",
]
