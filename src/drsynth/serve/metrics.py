"""Prometheus metrics of `drsynth serve`, exported on /metrics beside kserve's stage histograms
(request_preprocess_seconds, request_predict_seconds, request_postprocess_seconds).

They live in prometheus_client's default registry, which is what kserve's /metrics handler exposes.
Label values are bounded: route templates (not raw paths), status codes, three outcomes.
"""

from __future__ import annotations

from prometheus_client import Counter, Histogram

REQUESTS = Counter(
    "drsynth_serve_requests",
    "HTTP requests by route template, status code and outcome (ok, client_error, server_error)",
    ["route", "code", "outcome"],
)
REQUEST_SECONDS = Histogram(
    "drsynth_serve_request_seconds",
    "HTTP request latency from first byte in to last byte out, by route template",
    ["route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
INSTANCES = Counter("drsynth_serve_instances", "images or tensors classified", ["model_name"])
BATCH_SIZE = Histogram(
    "drsynth_serve_batch_size",
    "instances per onnxruntime run (the micro-batcher's effect)",
    ["model_name"],
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
)


def outcome(status: int) -> str:
    if status >= 500:
        return "server_error"
    if status >= 400:
        return "client_error"
    return "ok"
