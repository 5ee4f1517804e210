"""`drsynth render` and `drsynth preview` (registered by drsynth.cli)."""

from __future__ import annotations

from pathlib import Path

import typer

SCENARIO_HELP = "Scenario YAML (presets: assets/scenarios/cats_dogs.yaml, cats_dogs_bikes_cars.yaml)."
DISABLE_HELP = (
    "Switch a randomizer off (repeatable): subject, pose, camera, lighting, sky, sensor, occluders, materials, "
    "subject_texture."
)


def register(app: typer.Typer) -> None:
    """Add this area's commands to the root app."""

    @app.command()
    def render(
        scenario: Path = typer.Option(..., "--scenario", help=SCENARIO_HELP),
        count: int = typer.Option(..., "--count", help="Number of images (indices start .. start+count-1)."),
        out: Path = typer.Option(..., "--out", help="Render folder (render.json + samples/); re-run to resume."),
        seed: int | None = typer.Option(None, "--seed", help="Scenario seed (default: the scenario's)."),
        size: int | None = typer.Option(None, "--size", help="Image size in pixels (default: the scenario's, 256)."),
        disable: list[str] = typer.Option([], "--disable", help=DISABLE_HELP),
        enable: list[str] = typer.Option([], "--enable", help="Switch a randomizer on (e.g. subject_texture)."),
        start: int = typer.Option(0, "--start", help="First global index (shard a dataset across pods)."),
        workers: int | None = typer.Option(None, "--workers", help="Worker processes (default: all cores)."),
        style: str | None = typer.Option(None, "--style", help="pbr or toon (default: the scenario's)."),
    ) -> None:
        """Render a domain-randomized dataset (JPEG + JSON metadata per image)."""
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        from drsynth.config import load_scenario
        from drsynth.render_job import available_cores, render_range

        sc = load_scenario(scenario, seed=seed, image_size=size, disable=disable, enable=enable, style=style)
        n_workers = workers or available_cores()
        console = Console(stderr=True)
        console.print(
            f"rendering {count} images of '{sc.name}' (seed {sc.seed}, {sc.image_size}px, classes "
            f"{', '.join(sc.class_names)}, disabled: {', '.join(sc.disabled) or 'none'}) with {n_workers} "
            f"worker(s) -> {out}",
            highlight=False,
            soft_wrap=True,
        )
        with Progress(
            TextColumn("[bold]render"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[rate]}"),
            TimeRemainingColumn(),
            console=console,
        ) as progress:
            task = progress.add_task("render", total=count, rate="")
            state = {"t0": None}

            def on_progress(done: int, total: int) -> None:
                import time

                if state["t0"] is None and done == 0:
                    state["t0"] = time.perf_counter()
                    progress.update(task, total=total)
                elapsed = time.perf_counter() - state["t0"]
                rate = f"{done / elapsed:.1f} img/s" if done and elapsed > 0 else "starting workers"
                progress.update(task, completed=done, rate=rate)

            from drsynth import metrics

            with metrics.step("render"):
                summary = render_range(
                    sc, out, start=start, count=count, workers=n_workers, on_progress=on_progress
                )
        skipped = f", {summary.skipped} already done" if summary.skipped else ""
        steady = summary.steady_images_per_second
        steady_txt = f"; {steady:.1f} images/s after start-up" if steady else ""
        console.print(
            f"rendered {summary.rendered} images in {summary.seconds:.1f} s "
            f"({summary.images_per_second:.1f} images/s{steady_txt}{skipped}) -> {out}",
            highlight=False,
            soft_wrap=True,
        )

    @app.command()
    def preview(
        scenario: Path = typer.Option(..., "--scenario", help=SCENARIO_HELP),
        out: Path = typer.Option(..., "--out", help="Contact sheet PNG to write."),
        count: int = typer.Option(24, "--count", help="Tiles (ignored with --by breed: one per breed)."),
        by: str = typer.Option("index", "--by", help="index (the first images) or breed (one tile per breed)."),
        seed: int | None = typer.Option(None, "--seed", help="Scenario seed (default: the scenario's)."),
        size: int = typer.Option(192, "--size", help="Tile size in pixels."),
        disable: list[str] = typer.Option([], "--disable", help=DISABLE_HELP),
        enable: list[str] = typer.Option([], "--enable", help="Switch a randomizer on."),
        style: str | None = typer.Option(None, "--style", help="pbr or toon."),
        columns: int = typer.Option(8, "--columns", help="Tiles per row."),
    ) -> None:
        """Render a labelled contact sheet of a scenario for people to look at."""
        from rich.console import Console

        from drsynth.config import load_scenario
        from drsynth.errors import ConfigError
        from drsynth.preview import preview_sheet

        if by not in ("index", "breed"):
            raise ConfigError(f"--by must be 'index' or 'breed', got '{by}'")
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

        sc = load_scenario(scenario, seed=seed, image_size=size, disable=disable, enable=enable, style=style)
        console = Console(stderr=True)
        with Progress(TextColumn("[bold]preview"), BarColumn(), MofNCompleteColumn(), console=console) as progress:
            task = progress.add_task("preview", total=None)

            def on_progress(done: int, total: int) -> None:
                progress.update(task, completed=done, total=total)

            n = preview_sheet(sc, out, count=count, by=by, columns=columns, on_progress=on_progress)
        console.print(f"wrote a contact sheet of {n} renders -> {out}", highlight=False, soft_wrap=True)
