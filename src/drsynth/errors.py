"""The errors drsynth raises for bad input. The CLI prints their message as one line and exits non-zero.

A message says what was expected, what was received, where (file, key, seed/index, URI), and the likely fix.
"""


class DrsynthError(Exception):
    """Base class: a user-facing failure with an actionable message."""

    exit_code = 2


class ConfigError(DrsynthError):
    """A scenario, preset or command-line value is invalid."""


class AssetError(DrsynthError):
    """A model, texture, sky or other asset file cannot be used."""


class RenderError(DrsynthError):
    """Rendering cannot proceed (no GL platform, placement exhausted, unwritable output)."""


class DatasetError(DrsynthError):
    """A dataset is missing, incomplete, corrupt or has the wrong shape for the request."""


class StoreError(DrsynthError):
    """Object storage is unreachable, refuses the credentials, or an upload failed after its retries."""


class ModelError(DrsynthError):
    """A checkpoint, ONNX model or weights file is missing, corrupt or incompatible."""


class PipelineError(DrsynthError):
    """A pipeline task failed, or a Kubeflow Pipelines endpoint refused or lost a run."""
