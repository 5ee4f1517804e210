"""Checkpoint folder (train -> export/explain), per docs/design.md "Checkpoint":

    DIR/model.safetensors   the Classifier's state dict (safetensors: loading runs no code)
    DIR/model.json          format, classes, backbone, weights, head, frozen, preprocess, metrics,
                            train_config, drsynth_version (written last: its presence marks a complete save)

`load_checkpoint(dir)` rebuilds the network from model.json (with no pretrained download) and loads the state
dict strictly; anything missing, corrupt or mismatched is a ModelError that names the file.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from drsynth import __version__
from drsynth.errors import ConfigError, ModelError
from drsynth.fsutil import atomic_write_bytes, atomic_write_json
from drsynth.models import NO_WEIGHTS, Classifier, build_model
from drsynth.preprocess import Preprocess

FORMAT = "drsynth-checkpoint/1"
WEIGHTS_FILE = "model.safetensors"
INFO_FILE = "model.json"


class HeadInfo(BaseModel):
    model_config = ConfigDict(extra="forbid")

    hidden: int = Field(128, ge=1)
    dropout: float = Field(0.3, ge=0, lt=1)


class CheckpointInfo(BaseModel):
    """model.json. Unknown keys are kept (a newer drsynth may add some) but never required."""

    model_config = ConfigDict(extra="allow")

    format: Literal["drsynth-checkpoint/1"] = FORMAT
    classes: list[str]
    backbone: str
    weights: str
    head: HeadInfo = HeadInfo()
    frozen: bool
    preprocess: Preprocess
    metrics: dict[str, Any] = Field(default_factory=dict)
    train_config: dict[str, Any] = Field(default_factory=dict)
    drsynth_version: str = __version__


def save_checkpoint(directory: str | Path, model: Classifier, info: CheckpointInfo) -> Path:
    """Write model.safetensors, then model.json, each atomically; returns the folder."""
    from safetensors.torch import save

    directory = Path(directory)
    if len(info.classes) != model.head[-1].out_features:
        raise ValueError(f"info has {len(info.classes)} classes, the model {model.head[-1].out_features}")
    state = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    atomic_write_bytes(directory / WEIGHTS_FILE, save(state, metadata={"format": FORMAT}))
    atomic_write_json(directory / INFO_FILE, info.model_dump(mode="json"))
    return directory


def read_info(directory: str | Path) -> CheckpointInfo:
    """model.json of a checkpoint folder, validated."""
    directory = Path(directory)
    info_path = directory / INFO_FILE
    if not directory.is_dir():
        raise ModelError(
            f"checkpoint folder not found: {directory} (train one with `drsynth train --out DIR`)"
        )
    if not info_path.is_file():
        raise ModelError(
            f"{directory} is not a drsynth checkpoint: {INFO_FILE} is missing (an interrupted save, or the wrong "
            "folder; `drsynth train --out DIR` writes it)"
        )
    try:
        raw = json.loads(info_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ModelError(
            f"{info_path} is not valid JSON ({e}); the checkpoint is corrupt, train again"
        ) from None
    if isinstance(raw, dict) and raw.get("format") != FORMAT:
        raise ModelError(f"{info_path}: format is {raw.get('format')!r}, expected {FORMAT!r}")
    try:
        return CheckpointInfo.model_validate(raw)
    except ValidationError as e:
        problems = "; ".join(f"{'.'.join(map(str, err['loc']))}: {err['msg']}" for err in e.errors()[:5])
        raise ModelError(f"{info_path} is not a valid checkpoint description: {problems}") from None


def load_checkpoint(
    directory: str | Path, *, device: str | torch.device = "cpu"
) -> tuple[Classifier, CheckpointInfo]:
    """Rebuild the classifier of a checkpoint folder, in eval mode on `device`, and its description."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    directory = Path(directory)
    info = read_info(directory)
    weights_path = directory / WEIGHTS_FILE
    if not weights_path.is_file():
        raise ModelError(
            f"checkpoint {directory} has {INFO_FILE} but no {WEIGHTS_FILE}; copy the whole folder"
        )
    try:
        state = load_file(str(weights_path), device="cpu")
    except (SafetensorError, OSError, ValueError) as e:
        raise ModelError(
            f"{weights_path} is corrupt or truncated ({e}); copy it again or train again"
        ) from None
    try:
        model = build_model(
            info.backbone,
            len(info.classes),
            weights=NO_WEIGHTS,  # the state dict below holds every weight; never download here
            hidden=info.head.hidden,
            dropout=info.head.dropout,
            frozen=info.frozen,
        )
    except ConfigError as e:  # a backbone this drsynth version does not know
        raise ModelError(f"{directory / INFO_FILE}: {e}") from None
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise ModelError(
            f"{weights_path} does not match {info.backbone} with {len(info.classes)} classes as {INFO_FILE} "
            f"describes: {str(e)[:400]}"
        ) from None
    return model.to(device).eval(), info
