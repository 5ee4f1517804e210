"""`train_and_serve`: one scenario -> dataset -> model -> ONNX and a Triton model repository in object storage.

    plan_run (no studies) -> synth-control + held-out test renders (ParallelFor over shards, package)
      -> train_model -> export_model (ONNX + Triton repository) -> evaluate_model -> publish_model

The published model lands at STORE/<publish_prefix>/onnx/model.onnx and STORE/<publish_prefix>/triton/
<model_name>/, where the InferenceServices of manifests/base/serving read it (drsynth's predictor and
KServe's Triton runtime).
"""

from kfp import dsl

from drsynth.presets import preset
from drsynth_components.evaluate import evaluate_model
from drsynth_components.plan import model_items, plan_run
from drsynth_components.serve import publish_model
from drsynth_components.train import export_model, train_model
from drsynth_pipelines import common, settings

D = preset("default", store_uri="s3://drsynth").pipeline_parameters()


@dsl.pipeline(
    name="drsynth-train-and-serve",
    description="Render one scenario, package it to object storage, train a classifier, export it to ONNX and a "
    "Triton model repository, evaluate it, and publish it where KServe serves it.",
)
def train_and_serve(
    store_uri: str = D["store_uri"],
    scenario: str = D["scenario"],
    images_per_class: int = D["images_per_class"],
    test_images_per_class: int = D["test_images_per_class"],
    render_size: int = D["render_size"],
    input_size: int = D["input_size"],
    backbone: str = D["backbone"],
    weights: str = D["weights"],
    epochs: int = D["epochs"],
    batch_size: int = D["batch_size"],
    lr: float = D["lr"],
    render_seed: int = D["render_seed"],
    test_seed: int = D["test_seed"],
    holdout_fraction: float = D["holdout_fraction"],
    shard_size: int = D["shard_size"],
    max_breeds: int = D["max_breeds"],
    curate_keep: float = D["curate_keep"],
    curate_weights: str = D["curate_weights"],
    render_workers: int = D["render_workers"],
    train_workers: int = D["train_workers"],
    train_gpus: int = 1,
    device: str = D["device"],
    model_name: str = "drsynth",
    publish_prefix: str = "models/latest",
    preset: str = D["preset"],
    name: str = D["name"],
    store_secret: str = settings.STORE_SECRET,
    pushgateway_url: str = "",
):
    """Train and publish one classifier (see drsynth.presets.RunConfig for the shared parameters).

    Args:
        store_uri: Where datasets and the model go (s3://bucket/prefix); credentials from `store_secret`.
        scenario: The scenario preset to render.
        images_per_class: Training renders per class.
        test_images_per_class: Held-out renders per class (the synthetic and toon test domains).
        render_size: Render side in pixels.
        input_size: Network input side in pixels.
        backbone: vgg16 (the paper's), resnet18/50, mobilenet_v2, efficientnet_b0, small-cnn.
        weights: imagenet, none, a path in the image, or default (the backbone's).
        epochs: Training epochs.
        batch_size: Training batch size.
        lr: Adam learning rate.
        render_seed: Scenario seed of the training renders.
        test_seed: Scenario seed of the held-out test renders.
        holdout_fraction: Share of breeds kept out of training for the test domains.
        shard_size: Images per render task and dataset shard.
        max_breeds: At most this many breed presets per class and no blends (0: all).
        curate_keep: Curate the training renders (drsynth curate): render images_per_class / curate_keep per
            class, keep the best by ImageNet group probability (classes cat, dog, bicycle, car; 0: keep all).
        curate_weights: mobilenet_v2 ImageNet state dict for curation (a path in the image), or default
            (torchvision's, downloaded by the package task).
        render_workers: Render processes per render task (0: the task's cores).
        train_workers: Data-loader workers of the training task.
        train_gpus: GPUs of the training task (0 on CPU-only clusters).
        device: auto, cpu or cuda.
        model_name: The model's name in the Triton repository (and its InferenceService).
        publish_prefix: Where under store_uri the model is published.
        preset: The preset these values came from (a label).
        name: The run's name.
        store_secret: The Kubernetes Secret with MINIO_ENDPOINT, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY.
        pushgateway_url: Prometheus Pushgateway for the render, package, train and evaluate step metrics,
            e.g. http://pushgateway.drsynth-monitoring:9091 (empty: the drsynth-pipeline-env ConfigMap's, if any).
    """
    plan = plan_run(
        preset=preset, name=name, scenario=scenario, scaling_scenario=D["scaling_scenario"],
        images_per_class=images_per_class, test_images_per_class=test_images_per_class, render_size=render_size,
        render_seed=render_seed, test_seed=test_seed, holdout_fraction=holdout_fraction,
        real_test_fraction=D["real_test_fraction"], backbone=backbone, weights=weights, input_size=input_size,
        epochs=epochs, batch_size=batch_size, lr=lr, seeds=1, ablations=["control"],
        architecture_variants=["dropout-0.3"], studies=[], shard_size=shard_size, max_breeds=max_breeds,
        explain="none", explain_k=D["explain_k"], render_workers=render_workers, train_workers=train_workers,
        device=device, store_uri=store_uri, real_uri="", real_test_uri="", toon_uri="",
        import_max_side=D["import_max_side"],
        curate_keep=curate_keep, curate_weights=curate_weights,
    )
    settings.light(plan).set_display_name("plan")
    packaged = [common.build_dataset(plan.output, ds, store_secret, pushgateway_url)
                for ds in ("synth-control", "test-synthetic", "test-toon")]
    models = model_items(plan=plan.output).after(*packaged)
    settings.light(models).set_display_name("plan model")
    with dsl.ParallelFor(models.output, parallelism=1) as job:
        trained = train_model(job=job, gpus=train_gpus, pushgateway_url=pushgateway_url)
        settings.store_access(settings.train(trained, train_gpus), store_secret).set_display_name("train")
        exported = export_model(checkpoint=trained.outputs["checkpoint"], triton_name=model_name)
        settings.evaluate(exported).set_display_name("export ONNX + Triton")
        evaluated = evaluate_model(job=job, onnx=exported.outputs["onnx"], checkpoint=trained.outputs["checkpoint"],
                                   pushgateway_url=pushgateway_url)
        settings.store_access(settings.evaluate(evaluated), store_secret).set_display_name("evaluate")
        published = publish_model(onnx=exported.outputs["onnx"], triton=exported.outputs["triton"],
                                  store_uri=store_uri, prefix=publish_prefix).after(evaluated)
        settings.store_access(settings.light(published, cache=False), store_secret).set_display_name("publish")
