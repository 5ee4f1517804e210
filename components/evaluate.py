"""Evaluation components: one model on its domains (+ heatmaps), and the paper's studies (fan-in)."""

from typing import List

from kfp import dsl
from kfp.dsl import Artifact, ClassificationMetrics, Input, Metrics, Model, Output

from drsynth_components.images import RENDER, TRAIN


@dsl.component(**TRAIN)
def evaluate_model(
    job: dict,
    onnx: Input[Model],
    checkpoint: Input[Model],
    evaluation: Output[Artifact],
    heatmaps: Output[Artifact],
    metrics: Output[Metrics],
    confusion: Output[ClassificationMetrics],
    pushgateway_url: str = "",
):
    """Evaluate one model on each of its domains (real, held-out synthetic, toon) with ONNX Runtime; draw
    GradCAM + occlusion heatmaps for the models the plan explains.

    Args:
        job: One item of model_items.
        onnx: The exported model (folder with model.onnx).
        checkpoint: The checkpoint (for GradCAM).
        evaluation: metrics.json + confusion-<domain>.png (design.md, run directory `eval/<model>/`).
        heatmaps: <domain>.png heatmap grids + index.json (empty for models not explained).
        metrics: Accuracy and AAR per domain, mean accuracy, mean out-of-domain accuracy.
        confusion: The confusion matrix on the model's primary domain (real photos when given).
        pushgateway_url: Prometheus Pushgateway for the step metrics (empty: the cluster's default, if any).
    """
    from drsynth import metrics as step_metrics
    from drsynth.fsutil import atomic_write_json
    from drsynth.steps import evaluate_model as run
    from drsynth.steps import primary_domain

    step_metrics.configure(pushgateway=pushgateway_url or None)
    res = run(job, onnx.path, evaluation.path, checkpoint_dir=checkpoint.path, explain_dir=heatmaps.path)
    for name, d in res["domains"].items():
        metrics.log_metric(f"{name}/accuracy", float(d["accuracy"]))
        metrics.log_metric(f"{name}/aar", float(d["aar"]))
    for key in ("mean_accuracy", "mean_out_of_domain_accuracy"):
        if res.get(key) is not None:
            metrics.log_metric(key, float(res[key]))
    main = primary_domain(list(res["domains"]))
    confusion.log_confusion_matrix(res["classes"], res["domains"][main]["confusion"])
    confusion.metadata["domain"] = main
    evaluation.metadata["model"] = job["name"]
    for a in (metrics, confusion):  # a file behind every output (caches check for it)
        atomic_write_json(a.path, a.metadata)


@dsl.component(**RENDER)
def collect_studies(plan: dict, evaluations: Input[List[Artifact]], studies: Output[Artifact],
                    metrics: Output[Metrics]):
    """Fan-in: the paper's studies (architecture, ablation, transfer, scaling) from the models' evaluations:
    per bar the per-seed values, mean and 95% interval (results.json) and the figure (figure.png).

    Args:
        plan: The run plan from plan_run.
        evaluations: Every model's evaluation (dsl.Collected).
        studies: <study>/results.json + figure.png per study.
        metrics: Each bar's mean, named study/group/condition/domain/metric.
    """
    from drsynth.fsutil import atomic_write_json
    from drsynth.steps import collect_studies as run

    summary = run(plan, [e.path for e in evaluations], studies.path)
    for study, bars in summary.items():
        for key, value in bars.items():
            metrics.log_metric(f"{study}/{key}", float(value))
    atomic_write_json(metrics.path, metrics.metadata)  # a file behind every output (caches check for it)
