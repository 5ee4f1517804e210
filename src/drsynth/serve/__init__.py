"""drsynth's own KServe predictor for an exported ONNX classifier (`drsynth serve`).

This is the only part of drsynth that imports `kserve`. Layout:
- `config.py`   ServeConfig: the typed, validated server settings;
- `decode.py`   request decoding and validation (v1 JSON, v2 tensors, raw image bytes) -> float32 NCHW;
- `batcher.py`  an asyncio micro-batcher that coalesces concurrent requests into one session run;
- `model.py`    OnnxPredictor, the `kserve.Model` (load / preprocess / predict / postprocess);
- `server.py`   the FastAPI app kserve builds, hardened (payload limit, 4xx for client faults, metrics)
                and run under our own uvicorn config so that `--host` is honoured;
- `metrics.py`  Prometheus counters and histograms beside kserve's own.
"""

from __future__ import annotations

import sys

# kserve.model_server parses sys.argv with argparse at import time (parse_known_args, with prefix
# matching), so `drsynth serve --model m.onnx` would be read as kserve's `--model_name m.onnx`, and an
# ambiguous prefix would make argparse exit. Import it once with a neutral argv.
_argv, sys.argv = sys.argv, sys.argv[:1]
try:
    import kserve  # noqa: F401
    import kserve.model_server  # noqa: F401
finally:
    sys.argv = _argv

from drsynth.serve.config import ServeConfig  # noqa: E402
from drsynth.serve.model import OnnxPredictor  # noqa: E402
from drsynth.serve.server import build_app, serve  # noqa: E402

__all__ = ["OnnxPredictor", "ServeConfig", "build_app", "serve"]
