"""Kubernetes settings shared by the pipelines: resources, credentials and caching per kind of task.

Credentials never appear in a pipeline: the object store's endpoint and keys come from the Secret named by
the `store_secret` parameter (default `drsynth-store`, keys MINIO_ENDPOINT, AWS_ACCESS_KEY_ID,
AWS_SECRET_ACCESS_KEY; see manifests/base/object-store), through kfp-kubernetes. The Pushgateway URL comes
from the optional ConfigMap `drsynth-pipeline-env` (key PROMETHEUS_PUSHGATEWAY; manifests/overlays/kind).
The local runner (`drsynth run`) ignores all of this and uses the caller's environment.
"""

from __future__ import annotations

from kfp import kubernetes
from kfp.dsl import PipelineTask

STORE_SECRET = "drsynth-store"
STORE_SECRET_KEYS = {k: k for k in ("MINIO_ENDPOINT", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")}
ENV_CONFIG_MAP = "drsynth-pipeline-env"
RENDER_PARALLELISM = 8  # render tasks of one dataset at a time
MODEL_PARALLELISM = 4  # models trained at a time (each asks for its GPUs)


def store_access(task: PipelineTask, secret) -> PipelineTask:
    """The object store's endpoint and credentials from the Secret, plus the step metrics' settings."""
    kubernetes.use_secret_as_env(task, secret_name=secret, secret_key_to_env=STORE_SECRET_KEYS)
    return metrics_env(task)


def metrics_env(task: PipelineTask) -> PipelineTask:
    """The Pushgateway (from the optional ConfigMap; a task's `pushgateway_url` input overrides it) and the run
    id (from the pod's label) for the step metrics (drsynth.metrics). The run id is an environment variable,
    not a task input, on purpose: a per-run input would change every task's cache key."""
    kubernetes.use_config_map_as_env(task, config_map_name=ENV_CONFIG_MAP,
                                     config_map_key_to_env={"PROMETHEUS_PUSHGATEWAY": "PROMETHEUS_PUSHGATEWAY"},
                                     optional=True)
    kubernetes.use_field_path_as_env(task, env_name="KFP_RUN_ID", field_path="metadata.labels['pipeline/runid']")
    return task


# Requests are what the scheduler reserves (small enough for a laptop kind cluster to run several tasks);
# limits are what a task may use on a big node (the paper preset's VGG-16 runs need them).


def light(task: PipelineTask, *, cache: bool = True) -> PipelineTask:
    """Planning and bookkeeping: small, cached when deterministic."""
    task.set_cpu_request("100m").set_cpu_limit("1").set_memory_request("256M").set_memory_limit("2G")
    return task.set_caching_options(cache)


def render(task: PipelineTask) -> PipelineTask:
    """Rendering: CPU rasterising (Mesa llvmpipe) or NVIDIA EGL on GPU nodes; cached, since a render job with a
    fixed scenario, seed and index range always gives the same images."""
    task.set_cpu_request("1").set_cpu_limit("4").set_memory_request("1G").set_memory_limit("6G")
    metrics_env(task)
    return task.set_caching_options(True)


def package(task: PipelineTask, *, cache: bool = True) -> PipelineTask:
    task.set_cpu_request("500m").set_cpu_limit("2").set_memory_request("512M").set_memory_limit("4G")
    return task.set_caching_options(cache)


def train(task: PipelineTask, gpus) -> PipelineTask:
    """Training: `gpus` NVIDIA GPUs (a pipeline parameter; 0 on CPU-only clusters such as kind), shared memory
    for the data-loader workers; cached (same spec and dataset URI -> same model)."""
    task.set_cpu_request("1").set_cpu_limit("8").set_memory_request("2G").set_memory_limit("32G")
    task.set_accelerator_type("nvidia.com/gpu").set_accelerator_limit(gpus)
    kubernetes.empty_dir_mount(task, volume_name="dshm", mount_path="/dev/shm", medium="Memory", size_limit="8Gi")
    kubernetes.add_toleration(task, key="nvidia.com/gpu", operator="Exists", effect="NoSchedule")
    return task.set_caching_options(True)


def evaluate(task: PipelineTask) -> PipelineTask:
    task.set_cpu_request("500m").set_cpu_limit("4").set_memory_request("1G").set_memory_limit("16G")
    return task.set_caching_options(True)
