"""drsynth's Kubeflow Pipelines v2 components (installed as `drsynth_components`).

One lightweight Python component per pipeline step, each a typed signature, a docstring and one call into
`drsynth.steps` (imports inside the function: the function's source is what runs in the pod). Inputs and
outputs are typed KFP artifacts (Dataset, Model, Metrics, ClassificationMetrics, HTML, Markdown) so the
Kubeflow UI shows the datasets' cards, the models, the metrics, the confusion matrix and the report.

Each component runs on the image of its step (`base_image`, see images/): the images have drsynth and kfp
installed, so no package is pip-installed at run time (`install_kfp_package=False`).
"""

from drsynth_components.evaluate import collect_studies, evaluate_model
from drsynth_components.images import IMAGE_RENDER, IMAGE_SERVE, IMAGE_TRAIN
from drsynth_components.plan import dataset_jobs, model_items, plan_run
from drsynth_components.render import import_datasets, package_dataset, render_shard
from drsynth_components.report import build_report
from drsynth_components.serve import publish_model
from drsynth_components.train import export_model, train_model

__all__ = [
    "IMAGE_RENDER", "IMAGE_SERVE", "IMAGE_TRAIN", "build_report", "collect_studies", "dataset_jobs",
    "evaluate_model", "export_model", "import_datasets", "model_items", "package_dataset", "plan_run",
    "publish_model", "render_shard", "train_model",
]
