"""Prometheus metrics for every long-running drsynth step (render, package, train, evaluate).

One small API, so a step adds a few lines and nothing else::

    from drsynth import metrics

    with metrics.step("render") as m:          # m: RenderMetrics, fresh values for this step
        m.planned.set(n)
        for ...:
            m.images.labels(class_name).inc()
            m.image_seconds.observe(dt)

    metrics.render().occlusion_retries.inc()   # same handle, from code that wasn't passed `m`

`step(area)` yields the typed handle of that area (`RenderMetrics`, `PackageMetrics`, `TrainMetrics`,
`EvaluateMetrics`) on its own `CollectorRegistry`, and makes it the one `metrics.render()` (etc.) returns
until the step ends. Outside a step the accessors return a process-wide handle that nothing exports, so
library code can always record without checking. Every step registry also holds the `drsynth_step_*`
series (start time, duration, running, last success).

How the numbers leave the process (decided once per step, explicit argument > `configure()` (the CLI's
root `--pushgateway` / `--metrics-port` options) > environment):

- **Pushgateway** (`pushgateway=` / `PROMETHEUS_PUSHGATEWAY`): pushed (HTTP PUT, replacing the group) when
  the step starts, every `push_interval_s` while it runs, and once more when it ends, grouped by
  `job="drsynth"`, `run_id` (`DRSYNTH_RUN_ID`, `KFP_RUN_ID`, else one id per local process), `task`
  (`task=`, `DRSYNTH_TASK`, else the area) and `instance` (`KFP_POD_NAME`, else host-pid), so parallel
  tasks of one run never overwrite each other. A failing Pushgateway never fails the step: one warning
  (logger `drsynth.metrics`), then the step goes on (later pushes are still tried, silently).
- **`/metrics` endpoint** (`port=` / `DRSYNTH_METRICS_PORT`): served on `addr` (`DRSYNTH_METRICS_ADDR`,
  default 0.0.0.0 so a pod can be scraped) while the step runs; port 0 picks a free port (`m.port`).
  A port that cannot be bound is, again, one warning.
- **Neither**: nothing network-facing happens; values stay in memory (tests and the report can read them).

Serving (`drsynth serve`) is not a step: its counters (`drsynth_serve_*`, requests by outcome) live in
`drsynth.serve.metrics`, in prometheus_client's default registry, which KServe's own /metrics exposes next
to its latency histograms.

Metric names and label sets are a contract (dashboards and alerts use them): `metric_names()` lists them
and a test pins them. Add series freely; never rename or relabel one.

Rates (`*_images_per_second`) are computed when scraped/pushed: the step's mean since it started.
Worker processes do not share these registries: record in the process that runs the step (e.g. where
results from workers arrive).
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info
from prometheus_client.exposition import push_to_gateway, start_http_server

from drsynth import __version__
from drsynth.errors import ConfigError

log = logging.getLogger("drsynth.metrics")

PUSHGATEWAY_ENV = "PROMETHEUS_PUSHGATEWAY"
PORT_ENV = "DRSYNTH_METRICS_PORT"
ADDR_ENV = "DRSYNTH_METRICS_ADDR"
RUN_ID_ENVS = ("DRSYNTH_RUN_ID", "KFP_RUN_ID")
TASK_ENV = "DRSYNTH_TASK"
INSTANCE_ENVS = ("DRSYNTH_INSTANCE", "KFP_POD_NAME")
JOB = "drsynth"
AREAS = ("render", "package", "train", "evaluate")
STEP_INFO_LABELS = ("step", "version")

# Per-image render seconds and per-object upload seconds span milliseconds to minutes.
_SECONDS_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)


def _counter_total(counter: Counter) -> float:
    """Sum of a counter over all its label values (0 when none has been used yet)."""
    return sum(s.value for fam in counter.collect() for s in fam.samples if s.name.endswith("_total"))


class _StepMetrics:
    """The `drsynth_step_*` series every step registry holds, plus the registry itself."""

    area: str = ""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
        self.started_at = time.time()
        self.ended_at: float | None = None
        self.port: int | None = None  # the port /metrics is served on, when serving
        r = self.registry
        self.info = Info("drsynth_step", "The step this process runs and the drsynth version", registry=r)
        self.info.info(dict(zip(STEP_INFO_LABELS, (self.area, __version__), strict=True)))
        self.start_time = Gauge("drsynth_step_start_time_seconds", "Unix time the step started", registry=r)
        self.start_time.set(self.started_at)
        self.duration = Gauge(
            "drsynth_step_duration_seconds", "Seconds the step has run (final once it ended)", registry=r
        )
        self.duration.set_function(self.elapsed)
        self.running = Gauge("drsynth_step_running", "1 while the step runs, 0 once it ended", registry=r)
        self.last_success = Gauge(
            "drsynth_step_last_success_time_seconds",
            "Unix time the step last ended successfully (0: not yet)",
            registry=r,
        )

    def elapsed(self) -> float:
        return (self.ended_at if self.ended_at is not None else time.time()) - self.started_at

    def _rate(self, counter: Counter) -> float:
        seconds = self.elapsed()
        return _counter_total(counter) / seconds if seconds > 0 else 0.0

    def value(self, name: str, labels: dict[str, str] | None = None) -> float | None:
        """The current value of one sample of this step (None when absent), e.g. for reports and tests."""
        return self.registry.get_sample_value(name, labels or {})


class RenderMetrics(_StepMetrics):
    """`drsynth render`: images, throughput, occlusion-sampling retries, subjects that failed."""

    area = "render"

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        super().__init__(registry)
        r = self.registry
        self.planned = Gauge(
            "drsynth_render_images_planned",
            "Images in this step's index range (done = rendered + skipped)",
            registry=r,
        )
        self.images = Counter(
            "drsynth_render_images", "Images rendered and written, by class", ["class"], registry=r
        )
        self.skipped = Counter(
            "drsynth_render_images_skipped",
            "Images skipped because they were already done (resume)",
            registry=r,
        )
        self.images_per_second = Gauge(
            "drsynth_render_images_per_second",
            "Images rendered per second, mean since the step started",
            registry=r,
        )
        self.images_per_second.set_function(lambda: self._rate(self.images))
        self.image_seconds = Histogram(
            "drsynth_render_image_seconds",
            "Seconds to sample, render and write one image",
            buckets=_SECONDS_BUCKETS,
            registry=r,
        )
        self.occlusion_retries = Counter(
            "drsynth_render_occlusion_retries",
            "Occluder placements re-sampled to meet the visibility bounds",
            registry=r,
        )
        self.failed_subjects = Counter(
            "drsynth_render_failed_subjects",
            "Subjects that could not be built or loaded, by class",
            ["class"],
            registry=r,
        )

    def count_image(self, class_name: str, seconds: float, occluder_tries: int = 1) -> None:
        """One image done: by class, its time, and its occluder layouts beyond the first."""
        self.images.labels(class_name).inc()
        self.image_seconds.observe(seconds)
        if occluder_tries > 1:
            self.occlusion_retries.inc(occluder_tries - 1)

    def failed_subjects_by_class(self) -> dict[str, float]:
        """This process's failed-subject counts (a worker returns them to the parent)."""
        return {
            s.labels["class"]: s.value
            for fam in self.failed_subjects.collect()
            for s in fam.samples
            if s.name.endswith("_total")
        }

    def merge_failed_subjects(self, worker_counts: dict[str, float]) -> None:
        """Fold in a worker's counts. Every worker loads the same subject pool, so take the largest, not
        the sum."""
        have = self.failed_subjects_by_class()
        for class_name, n in worker_counts.items():
            if n > have.get(class_name, 0.0):
                self.failed_subjects.labels(class_name).inc(n - have.get(class_name, 0.0))


class PackageMetrics(_StepMetrics):
    """`drsynth package` / `import-images`: samples, shards and bytes uploaded, retries, upload time."""

    area = "package"

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        super().__init__(registry)
        r = self.registry
        self.samples = Counter("drsynth_package_samples", "Samples written into shards", registry=r)
        self.shards_uploaded = Counter(
            "drsynth_package_shards_uploaded", "Shards uploaded to the dataset URI", registry=r
        )
        self.bytes_uploaded = Counter(
            "drsynth_package_bytes_uploaded", "Bytes uploaded (shards, manifest, card)", registry=r
        )
        self.upload_retries = Counter(
            "drsynth_package_upload_retries", "Uploads retried after a storage error", registry=r
        )
        self.upload_seconds = Histogram(
            "drsynth_package_upload_seconds",
            "Seconds to upload one object",
            buckets=_SECONDS_BUCKETS,
            registry=r,
        )


class TrainMetrics(_StepMetrics):
    """`drsynth train`: epoch, loss and accuracy per split, learning rate, throughput, GPU memory."""

    area = "train"

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        super().__init__(registry)
        r = self.registry
        self.epoch = Gauge("drsynth_train_epoch", "Current epoch (1-based; 0 before the first)", registry=r)
        self.epochs_planned = Gauge("drsynth_train_epochs_planned", "Epochs this run is to train", registry=r)
        self.loss = Gauge(
            "drsynth_train_loss", "Mean loss of the last epoch, by split", ["split"], registry=r
        )
        self.accuracy = Gauge(
            "drsynth_train_accuracy", "Top-1 accuracy of the last epoch, by split", ["split"], registry=r
        )
        self.learning_rate = Gauge("drsynth_train_learning_rate", "Current learning rate", registry=r)
        self.images = Counter("drsynth_train_images", "Training images processed, all epochs", registry=r)
        self.images_per_second = Gauge(
            "drsynth_train_images_per_second",
            "Training images per second, mean since the step started",
            registry=r,
        )
        self.images_per_second.set_function(lambda: self._rate(self.images))
        self.gpu_memory_bytes = Gauge(
            "drsynth_train_gpu_memory_bytes",
            "CUDA memory, by kind (allocated, reserved, max_allocated)",
            ["kind"],
            registry=r,
        )

    def observe_epoch(self, epoch: int, split: str, *, loss: float, accuracy: float) -> None:
        """Record one split's result for an epoch (split: "train", "val", ...)."""
        self.epoch.set(epoch)
        self.loss.labels(split).set(loss)
        self.accuracy.labels(split).set(accuracy)

    def observe_gpu_memory(self, device: Any = None) -> None:
        """Record CUDA memory of `device` (a torch.device, "cuda:0", ...); does nothing off CUDA."""
        import torch  # the caller trains, so torch is already loaded

        if not torch.cuda.is_available():
            return
        dev = torch.device(device) if device is not None else torch.device("cuda")
        if dev.type != "cuda":
            return
        self.gpu_memory_bytes.labels("allocated").set(torch.cuda.memory_allocated(dev))
        self.gpu_memory_bytes.labels("reserved").set(torch.cuda.memory_reserved(dev))
        self.gpu_memory_bytes.labels("max_allocated").set(torch.cuda.max_memory_allocated(dev))


class EvaluateMetrics(_StepMetrics):
    """`drsynth evaluate`: accuracy and images per domain (real, toon, synthetic val, ...)."""

    area = "evaluate"

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        super().__init__(registry)
        r = self.registry
        self.accuracy = Gauge(
            "drsynth_evaluate_accuracy", "Top-1 accuracy, by evaluation domain", ["domain"], registry=r
        )
        self.images = Counter(
            "drsynth_evaluate_images", "Images evaluated, by domain", ["domain"], registry=r
        )


_AREA_CLASSES: dict[str, type[_StepMetrics]] = {
    "render": RenderMetrics,
    "package": PackageMetrics,
    "train": TrainMetrics,
    "evaluate": EvaluateMetrics,
}
_lock = threading.Lock()
_active: dict[str, list[_StepMetrics]] = {a: [] for a in AREAS}
_detached: dict[str, _StepMetrics] = {}
_config: dict[str, Any] = {}
_local_run_id = f"local-{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}"


def _current(area: str) -> Any:
    with _lock:
        if _active[area]:
            return _active[area][-1]
        if area not in _detached:
            _detached[area] = _AREA_CLASSES[area]()
        return _detached[area]


def render() -> RenderMetrics:
    """The render handle of the running step (or a process-wide one nothing exports)."""
    return _current("render")


def package() -> PackageMetrics:
    """The package handle of the running step (or a process-wide one nothing exports)."""
    return _current("package")


def train() -> TrainMetrics:
    """The train handle of the running step (or a process-wide one nothing exports)."""
    return _current("train")


def evaluate() -> EvaluateMetrics:
    """The evaluate handle of the running step (or a process-wide one nothing exports)."""
    return _current("evaluate")


def configure(*, pushgateway: str | None = None, port: int | None = None, addr: str | None = None) -> None:
    """Process-wide export defaults for later steps (the CLI's root options call this).

    A Pushgateway is also put in the environment, with this process's run id, so that steps run in child
    processes (e.g. `drsynth run`'s local pipeline) push too, grouped under the same run. A port is not:
    children would compete for it.
    """
    for key, value in (("pushgateway", pushgateway), ("port", port), ("addr", addr)):
        if value is not None:
            _config[key] = value
    if pushgateway:
        os.environ[PUSHGATEWAY_ENV] = pushgateway
        os.environ.setdefault(RUN_ID_ENVS[0], run_id())


def run_id() -> str:
    """The pipeline run this process belongs to: DRSYNTH_RUN_ID, KFP_RUN_ID, else one id per process."""
    return next((os.environ[k] for k in RUN_ID_ENVS if os.environ.get(k)), _local_run_id)


def instance() -> str:
    """This process among a run's parallel tasks: DRSYNTH_INSTANCE, KFP_POD_NAME, else host-pid."""
    found = next((os.environ[k] for k in INSTANCE_ENVS if os.environ.get(k)), None)
    return found or f"{socket.gethostname()}-{os.getpid()}"


def grouping_key(task: str) -> dict[str, str]:
    """The Pushgateway grouping labels (besides job="drsynth") of one step."""
    return {"run_id": run_id(), "task": task, "instance": instance()}


def _resolve_port(port: int | None) -> int | None:
    if port is not None:
        return port
    if "port" in _config:
        return int(_config["port"])
    raw = os.environ.get(PORT_ENV, "").strip()
    if not raw:
        return None
    try:
        return int(raw)
    except ValueError:
        raise ConfigError(
            f"{PORT_ENV} must be a TCP port number, got {raw!r}; unset it or set e.g. {PORT_ENV}=9100"
        ) from None


class _Exporter:
    """Pushes one step's registry to a Pushgateway and/or serves it, never failing the step."""

    def __init__(
        self,
        m: _StepMetrics,
        *,
        task: str,
        pushgateway: str | None,
        port: int | None,
        addr: str,
        push_interval_s: float,
        timeout_s: float,
    ) -> None:
        self.m = m
        self.pushgateway = pushgateway
        self.key = grouping_key(task)
        self.timeout_s = timeout_s
        self.push_interval_s = push_interval_s
        self.warned = False
        self._stop = threading.Event()
        self._push_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._server = None
        if port is not None:
            try:
                self._server, _ = start_http_server(port, addr=addr, registry=m.registry)
                m.port = self._server.server_port
            except OSError as e:
                self._warn(f"cannot serve /metrics on {addr}:{port} ({e}); the step goes on without it")

    def _warn(self, message: str) -> None:
        if not self.warned:
            self.warned = True
            log.warning("metrics: %s", message)

    def push(self) -> bool:
        if not self.pushgateway:
            return False
        with self._push_lock:
            try:
                push_to_gateway(
                    self.pushgateway,
                    job=JOB,
                    registry=self.m.registry,
                    grouping_key=self.key,
                    timeout=self.timeout_s,
                )
                return True
            except Exception as e:  # any failure (DNS, refused, HTTP 4xx/5xx) must not fail the step
                if self.warned:
                    log.debug("metrics: push to %s failed again: %s", self.pushgateway, e)
                self._warn(
                    f"cannot push to the Pushgateway at {self.pushgateway} ({e}); "
                    "the step goes on without pushing metrics"
                )
                return False

    def start(self) -> None:
        if not self.pushgateway:
            return
        self.push()
        if self.push_interval_s > 0:
            self._thread = threading.Thread(target=self._loop, name="drsynth-metrics-push", daemon=True)
            self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(self.push_interval_s):
            self.push()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.timeout_s + 1)
        self.push()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()


@contextlib.contextmanager
def step(
    area: str,
    *,
    task: str | None = None,
    pushgateway: str | None = None,
    port: int | None = None,
    addr: str | None = None,
    push_interval_s: float = 15.0,
    timeout_s: float = 3.0,
) -> Iterator[Any]:
    """Run one step with fresh metrics of `area` ("render", "package", "train", "evaluate").

    Yields the area's handle (RenderMetrics, ...). `task` names the step in the Pushgateway grouping key
    (default: DRSYNTH_TASK, else the area); `pushgateway` (URL), `port` and `addr` override `configure()`
    and the environment (see the module docstring). An exception in the body still pushes the final
    values (running=0, no last-success time) and is re-raised; export problems only ever warn.
    """
    if area not in _AREA_CLASSES:
        raise ConfigError(f"metrics area must be one of {AREAS}, got {area!r}")
    m = _AREA_CLASSES[area]()
    m.running.set(1)
    exporter = _Exporter(
        m,
        task=task or os.environ.get(TASK_ENV) or area,
        pushgateway=pushgateway or _config.get("pushgateway") or os.environ.get(PUSHGATEWAY_ENV) or None,
        port=_resolve_port(port),
        addr=addr or _config.get("addr") or os.environ.get(ADDR_ENV) or "0.0.0.0",
        push_interval_s=push_interval_s,
        timeout_s=timeout_s,
    )
    with _lock:
        _active[area].append(m)
    exporter.start()
    ok = False
    try:
        yield m
        ok = True
    finally:
        m.ended_at = time.time()
        m.running.set(0)
        if ok:
            m.last_success.set(m.ended_at)
        with _lock:
            _active[area].remove(m)
        exporter.stop()


def metric_names() -> dict[str, tuple[str, tuple[str, ...]]]:
    """Every metric family drsynth exports: name -> (type, label names). Names and labels are stable."""
    names: dict[str, tuple[str, tuple[str, ...]]] = {}
    handles: list[Any] = [cls() for cls in _AREA_CLASSES.values()]
    for h in handles:
        for value in vars(h).values():
            if isinstance(value, Counter | Gauge | Histogram | Info):
                fam = next(iter(value.describe()))
                # the name as PromQL sees it (counters gain _total, info metrics _info)
                suffix = {"counter": "_total", "info": "_info"}.get(fam.type, "")
                labels = STEP_INFO_LABELS if isinstance(value, Info) else tuple(value._labelnames)
                names[fam.name + suffix] = (fam.type, labels)
    return dict(sorted(names.items()))
