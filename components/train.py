"""Model components: train one model, export it to ONNX (and a Triton model repository)."""

from kfp import dsl
from kfp.dsl import Artifact, Input, Metrics, Model, Output

from drsynth_components.images import TRAIN


@dsl.component(**TRAIN)
def train_model(job: dict, gpus: int, checkpoint: Output[Model], training_log: Output[Artifact],
                metrics: Output[Metrics], pushgateway_url: str = ""):
    """Train one classifier (backbone + the paper's head) on its dataset; keep the best epoch by validation.

    Args:
        job: One item of model_items: model spec, training data URI, evaluation domains.
        gpus: The GPUs this task asked for (its accelerator limit); with 1 or more, training fails fast if
            CUDA does not see them instead of silently running on the CPU.
        checkpoint: The checkpoint folder (model.safetensors + model.json, history, curve).
        training_log: The checkpoint without its weights (what the report shows).
        metrics: Best validation accuracy, its epoch, the last training accuracy.
        pushgateway_url: Prometheus Pushgateway for the step metrics (empty: the cluster's default, if any).
    """
    from drsynth import metrics as step_metrics
    from drsynth.fsutil import atomic_write_json
    from drsynth.steps import train_model as run

    step_metrics.configure(pushgateway=pushgateway_url or None)

    res = run(job, checkpoint.path, training_log.path, gpus=gpus)
    checkpoint.metadata.update({"model": res["model"], "classes": res["classes"]})
    for key in ("best_val_accuracy", "best_epoch", "train_accuracy"):
        if res.get(key) is not None:
            metrics.log_metric(key, float(res[key]))
    atomic_write_json(metrics.path, metrics.metadata)  # a file behind every output (caches check for it)


@dsl.component(**TRAIN)
def export_model(checkpoint: Input[Model], onnx: Output[Model], triton: Output[Model], triton_name: str = "drsynth"):
    """Export a checkpoint to ONNX (checked against PyTorch) and a Triton model repository.

    Args:
        checkpoint: The checkpoint folder from train_model.
        onnx: A folder holding model.onnx (input `input` [N,3,H,W], output `logits`; metadata: classes,
            preprocessing).
        triton: A Triton model repository: <triton_name>/{config.pbtxt, labels.txt, 1/model.onnx}.
        triton_name: The model's name in the Triton repository.
    """
    from drsynth.steps import export_model as run

    res = run(checkpoint.path, onnx.path, triton_dir=triton.path, triton_name=triton_name)
    onnx.metadata.update(res)
    triton.metadata.update({"model": res["model"], "triton_name": triton_name})
