"""`paper_study`: the paper's four studies as one Kubeflow pipeline.

    plan_run
      -> per dataset (control, 7 ablations, 4-class, held-out synthetic / toon / 4-class test domains):
           dataset_jobs -> ParallelFor(shards): render_shard -> package_dataset(dsl.Collected(renders))
      -> import_datasets (the user's real photos / cartoons, when given)
      -> model_items -> ParallelFor(models): train_model -> export_model -> evaluate_model (+ heatmaps)
      -> collect_studies(dsl.Collected(evaluations)) -> build_report

Defaults are the `default` preset (VGG-16, 1,000 renders per class); `drsynth pipeline submit --preset quick`
or the UI form change them. Without `real_uri` the real-trained models are left out and every figure reports
the held-out synthetic domain (the report says so).
"""


from typing import List

from kfp import dsl
from kfp.dsl import Artifact

from drsynth.presets import preset
from drsynth.runplan import RENDER_DATASETS
from drsynth_components.evaluate import collect_studies, evaluate_model
from drsynth_components.plan import model_items, plan_run
from drsynth_components.render import import_datasets
from drsynth_components.report import build_report
from drsynth_components.train import export_model, train_model
from drsynth_pipelines import common, settings

D = preset("default", store_uri="s3://drsynth").pipeline_parameters()



@dsl.pipeline(
    name="drsynth-paper-study",
    description="Domain-randomized renders -> datasets in object storage -> classifiers -> ONNX -> cross-domain "
    "evaluation -> the paper's architecture, ablation, transfer and scaling studies -> report.",
)
def paper_study(
    store_uri: str = D["store_uri"],
    images_per_class: int = D["images_per_class"],
    test_images_per_class: int = D["test_images_per_class"],
    render_size: int = D["render_size"],
    input_size: int = D["input_size"],
    backbone: str = D["backbone"],
    weights: str = D["weights"],
    epochs: int = D["epochs"],
    batch_size: int = D["batch_size"],
    lr: float = D["lr"],
    seeds: int = D["seeds"],
    real_uri: str = D["real_uri"],
    real_test_uri: str = D["real_test_uri"],
    toon_uri: str = D["toon_uri"],
    import_max_side: int = D["import_max_side"],
    studies: List[str] = D["studies"],
    ablations: List[str] = D["ablations"],
    architecture_variants: List[str] = D["architecture_variants"],
    scenario: str = D["scenario"],
    scaling_scenario: str = D["scaling_scenario"],
    render_seed: int = D["render_seed"],
    test_seed: int = D["test_seed"],
    holdout_fraction: float = D["holdout_fraction"],
    real_test_fraction: float = D["real_test_fraction"],
    shard_size: int = D["shard_size"],
    max_breeds: int = D["max_breeds"],
    curate_keep: float = D["curate_keep"],
    curate_weights: str = D["curate_weights"],
    explain: str = D["explain"],
    explain_k: int = D["explain_k"],
    render_workers: int = D["render_workers"],
    train_workers: int = D["train_workers"],
    train_gpus: int = 1,
    device: str = D["device"],
    preset: str = D["preset"],
    name: str = D["name"],
    store_secret: str = settings.STORE_SECRET,
    pushgateway_url: str = "",
) -> Artifact:
    """Every figure of the paper on drsynth's renders (see drsynth.presets.RunConfig for each parameter).

    Args:
        store_uri: Where datasets and models go (s3://bucket/prefix); credentials from `store_secret`.
        images_per_class: Training renders per class of every dataset.
        test_images_per_class: Held-out renders per class of each rendered test domain.
        render_size: Render side in pixels.
        input_size: Network input side in pixels.
        backbone: vgg16 (the paper's), resnet18/50, mobilenet_v2, efficientnet_b0, small-cnn.
        weights: imagenet, none, a path in the image, or default (the backbone's).
        epochs: Training epochs per model.
        batch_size: Training batch size.
        lr: Adam learning rate.
        seeds: Training repeats per condition (bars show mean and 95% interval).
        real_uri: Real photos DIR/<class>/* as an s3:// prefix (empty: no real-trained models).
        real_test_uri: Separate real test photos (empty: 20% of real_uri).
        toon_uri: Cartoons DIR/<class>/* as an s3:// prefix (empty: drsynth's toon renders).
        import_max_side: Imported photos larger than this many pixels are downscaled (0: keep).
        studies: Any of architecture, ablation, transfer, scaling.
        ablations: Ablation conditions (drsynth.studies.ABLATIONS).
        architecture_variants: no-dropout, dropout-0.3, unfrozen.
        scenario: The 2-class scenario preset.
        scaling_scenario: The 4-class scenario preset.
        render_seed: Scenario seed of the training renders.
        test_seed: Scenario seed of the held-out test renders.
        holdout_fraction: Share of breeds kept out of training for the test domains.
        real_test_fraction: Share of real_uri used as the real test domain.
        shard_size: Images per render task and dataset shard.
        max_breeds: At most this many breed presets per class and no blends (0: all).
        curate_keep: Curate the training renders (drsynth curate): render images_per_class / curate_keep per
            class, keep the best by ImageNet group probability (classes cat, dog, bicycle, car; 0: keep all).
        curate_weights: mobilenet_v2 ImageNet state dict for curation (a path in the image), or default
            (torchvision's, downloaded by the package task).
        explain: Heatmaps for the control models, all models, or none.
        explain_k: Heatmap images per class and domain.
        render_workers: Render processes per render task (0: the task's cores).
        train_workers: Data-loader workers per training task.
        train_gpus: GPUs per training task (0 on CPU-only clusters).
        device: auto, cpu or cuda for training and evaluation.
        preset: The preset these values came from (a label in the report).
        name: The run's name in the report.
        store_secret: The Kubernetes Secret with MINIO_ENDPOINT, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY.
        pushgateway_url: Prometheus Pushgateway for the render, package, train and evaluate step metrics,
            e.g. http://pushgateway.drsynth-monitoring:9091 (empty: the drsynth-pipeline-env ConfigMap's, if any).

    Returns:
        The run folder (report.html, report.md, run.json, eval/, models/, explain/, studies/, samples/).
    """
    plan = plan_run(
        preset=preset, name=name, scenario=scenario, scaling_scenario=scaling_scenario,
        images_per_class=images_per_class, test_images_per_class=test_images_per_class, render_size=render_size,
        render_seed=render_seed, test_seed=test_seed, holdout_fraction=holdout_fraction,
        real_test_fraction=real_test_fraction, backbone=backbone, weights=weights, input_size=input_size,
        epochs=epochs, batch_size=batch_size, lr=lr, seeds=seeds, ablations=ablations,
        architecture_variants=architecture_variants, studies=studies, shard_size=shard_size, max_breeds=max_breeds,
        explain=explain, explain_k=explain_k, render_workers=render_workers, train_workers=train_workers,
        device=device, store_uri=store_uri, real_uri=real_uri, real_test_uri=real_test_uri, toon_uri=toon_uri,
        import_max_side=import_max_side,
        curate_keep=curate_keep, curate_weights=curate_weights,
    )
    settings.light(plan).set_display_name("plan")

    packaged = [common.build_dataset(plan.output, ds, store_secret, pushgateway_url) for ds in RENDER_DATASETS]
    imported = import_datasets(plan=plan.output, pushgateway_url=pushgateway_url)
    settings.store_access(settings.package(imported, cache=False), store_secret).set_display_name("import photos")

    models = model_items(plan=plan.output).after(*packaged, imported)
    settings.light(models).set_display_name("plan models")
    with dsl.ParallelFor(models.output, parallelism=settings.MODEL_PARALLELISM) as job:
        trained = train_model(job=job, gpus=train_gpus, pushgateway_url=pushgateway_url)
        settings.store_access(settings.train(trained, train_gpus), store_secret).set_display_name("train")
        exported = export_model(checkpoint=trained.outputs["checkpoint"])
        settings.evaluate(exported).set_display_name("export ONNX")
        evaluated = evaluate_model(job=job, onnx=exported.outputs["onnx"], checkpoint=trained.outputs["checkpoint"],
                                   pushgateway_url=pushgateway_url)
        settings.store_access(settings.evaluate(evaluated), store_secret).set_display_name("evaluate")

    studied = collect_studies(plan=plan.output, evaluations=dsl.Collected(evaluated.outputs["evaluation"]))
    settings.light(studied).set_display_name("studies")
    report = build_report(
        plan=plan.output,
        evaluations=dsl.Collected(evaluated.outputs["evaluation"]),
        training_logs=dsl.Collected(trained.outputs["training_log"]),
        heatmaps=dsl.Collected(evaluated.outputs["heatmaps"]),
        studies=studied.outputs["studies"],
    )
    settings.store_access(settings.light(report, cache=False), store_secret).set_display_name("report")
    return report.outputs["run"]

