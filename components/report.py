"""The report component: lays out the run folder and writes the HTML + Markdown report."""

from typing import List

from kfp import dsl
from kfp.dsl import HTML, Artifact, Input, Markdown, Output

from drsynth_components.images import RENDER


@dsl.component(**RENDER)
def build_report(
    plan: dict,
    evaluations: Input[List[Artifact]],
    training_logs: Input[List[Artifact]],
    heatmaps: Input[List[Artifact]],
    studies: Input[Artifact],
    run: Output[Artifact],
    report: Output[HTML],
    report_md: Output[Markdown],
):
    """The run folder (design.md, "Run directory": run.json, eval/, models/, explain/, studies/, samples/) and
    its report: one self-contained HTML page (images inlined) and the Markdown twin.

    Args:
        plan: The run plan from plan_run.
        evaluations: Every model's evaluation.
        training_logs: Every model's training history and curve.
        heatmaps: Every model's heatmaps (empty for models not explained).
        studies: The studies' results and figures.
        run: The run folder.
        report: report.html (shown in the Kubeflow UI).
        report_md: report.md.
    """
    from drsynth.steps import assemble_run

    assemble_run(plan, run.path, eval_dirs=[e.path for e in evaluations], log_dirs=[t.path for t in training_logs],
                 explain_dirs=[h.path for h in heatmaps], studies_dir=studies.path, html_path=report.path,
                 md_path=report_md.path)
