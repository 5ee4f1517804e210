"""Pipeline building blocks shared by the pipelines."""

from kfp import dsl

from drsynth_components.plan import dataset_jobs
from drsynth_components.render import package_dataset, render_shard
from drsynth_pipelines import settings


def build_dataset(plan, dataset: str, store_secret, pushgateway_url="") -> dsl.PipelineTask:
    """One dataset: its render tasks in parallel (one per shard), then one package task over all of them.
    Both push their step metrics to `pushgateway_url` (a pipeline parameter; empty: the cluster default)."""
    jobs = dataset_jobs(plan=plan, dataset=dataset)
    settings.light(jobs).set_display_name(f"{dataset}: shards")
    with dsl.ParallelFor(jobs.output, parallelism=settings.RENDER_PARALLELISM) as job:
        shard = render_shard(job=job, pushgateway_url=pushgateway_url)
        settings.render(shard).set_display_name(f"{dataset}: render")
    packaged = package_dataset(renders=dsl.Collected(shard.outputs["render"]), pushgateway_url=pushgateway_url)
    settings.store_access(settings.package(packaged), store_secret).set_display_name(f"{dataset}: package")
    return packaged
