"""`drsynth realism` (does this subject read as a cat?) and `drsynth curate` (keep the renders that do);
registered by drsynth.cli."""

from __future__ import annotations

from pathlib import Path

import typer

from drsynth.progress import count_bar

WEIGHTS_HELP = (
    "torchvision mobilenet_v2 ImageNet state dict (.pth/.safetensors); default: torchvision's own ImageNet "
    "weights (downloaded once, needs network)."
)


def register(app: typer.Typer) -> None:
    """Add this area's commands to the root app."""

    @app.command()
    def realism(
        scenario: Path = typer.Option(
            ..., "--scenario", help="Scenario YAML (e.g. assets/scenarios/cats_dogs.yaml)."
        ),
        count: int = typer.Option(200, "--count", help="Images to render and score (classes alternate)."),
        weights: str | None = typer.Option(None, "--weights", help=WEIGHTS_HELP),
        out: Path | None = typer.Option(
            None,
            "--out",
            help="Report folder (realism.json, least_recognized.png, index.html); default realism-<scenario>.",
        ),
        seed: int | None = typer.Option(None, "--seed", help="Scenario seed (default: the scenario's)."),
        start: int = typer.Option(0, "--start", help="First image index."),
        classes: list[str] = typer.Option([], "--class", help="Only these classes (repeatable)."),
        per_breed: bool = typer.Option(True, "--per-breed/--per-class", help="Print every breed / model."),
    ) -> None:
        """Render N images and report the share an ImageNet classifier puts in the right ImageNet group (cat
        281-285, dog 151-268, bicycle 444/671, car 407/436/...), per class and per breed or model, with a
        contact sheet of the least recognised breeds."""
        from rich.console import Console
        from rich.table import Table

        from drsynth import realism as rl
        from drsynth.config import load_scenario

        sc = load_scenario(scenario, seed=seed, classes=classes or None)
        for c in sc.class_names:
            rl.imagenet_group(c)
        console = Console(stderr=True)
        console.print(
            f"realism: {count} images of '{sc.name}' (seed {sc.seed}, classes {', '.join(sc.class_names)}), "
            f"classifier mobilenet_v2 ({weights or 'torchvision ImageNet weights'})",
            highlight=False,
            soft_wrap=True,
        )
        with count_bar("render + classify", console=console) as on_progress:
            result = rl.run_realism(sc, count, weights=weights, start=start, progress=on_progress)
        out_dir = out or Path(f"realism-{sc.name}")
        paths = rl.write_report(result, out_dir, scenario_name=sc.name, weights=weights)
        table = Table(title=f"recognised by ImageNet mobilenet_v2 (top-1 in the class's group), {sc.name}")
        for col in ("class / breed", "recognised", "n", "commonest misses"):
            table.add_column(col)
        for name, frac, n, misses in rl.format_table(result.summary, per_breed=per_breed):
            table.add_row(name, frac, str(n), misses)
        Console().print(table)
        console.print(
            f"report: {paths['html']} ({paths['json'].name}, {paths['sheet'].name})", highlight=False
        )

    @app.command()
    def curate(
        src: list[Path] = typer.Option(
            ...,
            "--src",
            help="render output folder (render.json + samples/); repeat for several index ranges",
        ),
        keep: float = typer.Option(
            0.5, "--keep", help="fraction of each class to keep, the best-scored first (0 < keep <= 1)"
        ),
        weights: str | None = typer.Option(None, "--weights", help=WEIGHTS_HELP),
        out: Path | None = typer.Option(
            None, "--out", help="folder for curation.json, curation.png, index.html (default: SRC/curation)"
        ),
    ) -> None:
        """Score every render by the ImageNet probability of its class's group and keep the best --keep of
        each class; `drsynth package --curation OUT` then packages only those."""
        from rich.console import Console

        from drsynth import curate as cu

        out_dir = out or src[0] / "curation"
        console = Console(stderr=True)
        with count_bar("classify", console=console) as on_progress:
            curation, paths = cu.curate(src, out_dir, keep_fraction=keep, weights=weights, progress=on_progress)
        for c, v in curation.classes.items():
            dropped = v["mean_score_dropped"]
            least = ", ".join(f"{b} {x['kept_fraction']:.0%}" for b, x in list(v["breeds"].items())[:4])
            console.print(
                f"{c}: kept {v['kept']} of {v['rendered']} (group probability: kept mean {v['mean_score_kept']:.3f}, "
                f"dropped mean {'-' if dropped is None else f'{dropped:.3f}'}); least kept: {least}",
                highlight=False,
            )
        console.print(
            f"keep-list: {paths['json']} (sheet {paths['sheet'].name}, {paths['html'].name})", highlight=False
        )
