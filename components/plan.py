"""Planning components: the run plan, each dataset's render tasks, the models to train."""

from typing import List

from kfp import dsl

from drsynth_components.images import RENDER


@dsl.component(**RENDER)
def plan_run(
    preset: str,
    name: str,
    scenario: str,
    scaling_scenario: str,
    images_per_class: int,
    test_images_per_class: int,
    render_size: int,
    render_seed: int,
    test_seed: int,
    holdout_fraction: float,
    real_test_fraction: float,
    backbone: str,
    weights: str,
    input_size: int,
    epochs: int,
    batch_size: int,
    lr: float,
    seeds: int,
    ablations: List[str],
    architecture_variants: List[str],
    studies: List[str],
    shard_size: int,
    max_breeds: int,
    explain: str,
    explain_k: int,
    render_workers: int,
    train_workers: int,
    device: str,
    store_uri: str,
    real_uri: str,
    real_test_uri: str,
    toon_uri: str,
    import_max_side: int,
    curate_keep: float,
    curate_weights: str,
) -> dict:
    """Resolve the pipeline parameters into the run plan: scenarios (training / held-out breeds), every dataset
    with its store URI (named by content, so unchanged datasets keep their URI and cached renders), the
    evaluation domains. See drsynth.presets.RunConfig for each parameter and drsynth.runplan for the plan.

    Returns:
        The run plan (drsynth-plan/1), read by the planning, import, studies and report steps.
    """
    params = dict(locals())
    from drsynth.steps import make_plan

    return make_plan(params)


@dsl.component(**RENDER)
def dataset_jobs(plan: dict, dataset: str) -> List[dict]:
    """The render tasks of one dataset, one per shard (one `skip` task when the plan does not render it).

    Args:
        plan: The run plan from plan_run.
        dataset: The dataset's name (drsynth.runplan.RENDER_DATASETS).

    Returns:
        Self-contained render jobs: resolved scenario, index range, the dataset's URI.
    """
    from drsynth.steps import dataset_jobs as jobs

    return jobs(plan, dataset)


@dsl.component(**RENDER)
def model_items(plan: dict) -> List[dict]:
    """The models the run's studies need, each trained once (drsynth.runplan.ModelJob).

    Args:
        plan: The run plan from plan_run.

    Returns:
        One item per model: its spec, training data URI, evaluation domains, whether to draw heatmaps.
    """
    from drsynth.steps import model_items as items

    return items(plan)
