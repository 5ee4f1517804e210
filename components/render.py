"""Dataset components: render one shard, package a dataset (fan-in), import the user's photo folders."""

from typing import List

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Output

from drsynth_components.images import RENDER


@dsl.component(**RENDER)
def render_shard(job: dict, render: Output[Artifact], pushgateway_url: str = ""):
    """Render one index range of a scenario (one shard of a dataset) into a render folder.

    Deterministic for a given job (scenario, seed, range), so the task is cached.

    Args:
        job: One item of dataset_jobs: the resolved scenario, start, count and the dataset's URI.
        render: The render folder (render.json, samples/<key>.jpg + .json).
        pushgateway_url: Prometheus Pushgateway for the step metrics (empty: the cluster's default, if any).
    """
    from drsynth import metrics
    from drsynth.steps import render_shard as run

    metrics.configure(pushgateway=pushgateway_url or None)

    render.metadata.update(run(job, render.path))


@dsl.component(**RENDER)
def package_dataset(renders: Input[List[Artifact]], dataset: Output[Dataset], pushgateway_url: str = ""):
    """Fan-in: package a dataset's render folders into WebDataset shards + manifest + card in the store.

    Args:
        renders: The render folders of one dataset (dsl.Collected over its shards).
        dataset: The dataset's manifest and card; metadata `uri` is where the dataset lives.
        pushgateway_url: Prometheus Pushgateway for the step metrics (empty: the cluster's default, if any).
    """
    from drsynth import metrics
    from drsynth.steps import package_dataset as run

    metrics.configure(pushgateway=pushgateway_url or None)

    dataset.metadata.update(run([r.path for r in renders], dataset.path))


@dsl.component(**RENDER)
def import_datasets(plan: dict, real_train: Output[Dataset], real_test: Output[Dataset], toon: Output[Dataset],
                    pushgateway_url: str = ""):
    """Import the user's image folders (real photos split 80-20, cartoons) into the store as datasets.

    A folder the plan does not name is skipped (metadata `skipped`). Not cached: a folder's content may change
    under the same name.

    Args:
        plan: The run plan from plan_run.
        real_train: The real photos used for training.
        real_test: The real photos of the `real` test domain.
        toon: The cartoons of the `toon` test domain.
        pushgateway_url: Prometheus Pushgateway for the step metrics (empty: the cluster's default, if any).
    """
    from drsynth import metrics
    from drsynth.steps import import_datasets as run

    metrics.configure(pushgateway=pushgateway_url or None)

    outs = {"real-train": real_train, "real-test": real_test, "toon": toon}
    done = run(plan, {name: a.path for name, a in outs.items()})
    for name, artifact in outs.items():
        artifact.metadata.update(done[name])
