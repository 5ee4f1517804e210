"""`drsynth package`, `import-images`, `dataset info|verify`, `store up|down|status` (registered by drsynth.cli)."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

console = Console(stderr=True)  # messages on stderr; stdout carries only what scripts consume (exports)

store_app = typer.Typer(
    help="A local S3 server (SeaweedFS) on 127.0.0.1, for the s3:// path without a cluster."
)
dataset_app = typer.Typer(help="Inspect and verify packaged datasets.")


def register(app: typer.Typer) -> None:
    """Add this area's commands to the root app."""
    app.command("package")(package_cmd)
    app.command("import-images")(import_images_cmd)
    app.add_typer(dataset_app, name="dataset")
    app.add_typer(store_app, name="store")


DEST_HELP = "dataset URI: s3://bucket/prefix (S3 settings from the environment), file:///path or a folder"


def package_cmd(
    src: list[Path] = typer.Option(
        ..., "--src", help="render output folder (render.json + samples/); repeat for several index ranges"
    ),
    dest: str = typer.Option(..., "--dest", help=DEST_HELP),
    shard_size: int = typer.Option(1000, "--shard-size", min=1, help="samples per shard"),
    name: str | None = typer.Option(None, "--name", help="dataset name (default: the scenario name)"),
    overwrite: bool = typer.Option(False, "--overwrite", help="replace a committed dataset at --dest"),
    workers: int = typer.Option(4, "--workers", min=1, help="shards built and uploaded in parallel"),
    card: bool = typer.Option(True, "--card/--no-card", help="write the dataset card (README.md, PNGs)"),
    curation: Path | None = typer.Option(
        None, "--curation", help="keep-list from `drsynth curate` (file or folder): package only the renders it keeps"
    ),
) -> None:
    """Package rendered images into WebDataset shards + manifest + dataset card at --dest."""
    from drsynth import metrics
    from drsynth.package import package

    with metrics.step("package"):
        result = package(
            src,
            dest,
            shard_size=shard_size,
            name=name,
            overwrite=overwrite,
            workers=workers,
            card=card,
            curation=curation,
        )
    _report(result)


def import_images_cmd(
    src: Path = typer.Option(..., "--src", help="image folder: SRC/<class>/*.{jpg,jpeg,png,webp,bmp}"),
    dest: str = typer.Option(..., "--dest", help=DEST_HELP),
    classes: str | None = typer.Option(
        None,
        "--classes",
        help="comma-separated class folders to import, in label order (default: all, sorted)",
    ),
    max_side: int | None = typer.Option(
        None, "--max-side", min=8, help="shrink images whose longer side exceeds this many pixels"
    ),
    max_per_class: int | None = typer.Option(
        None, "--max-per-class", min=1, help="import at most this many files per class (first in name order)"
    ),
    shard_size: int = typer.Option(1000, "--shard-size", min=1, help="samples per shard"),
    name: str | None = typer.Option(None, "--name", help="dataset name (default: the folder name)"),
    overwrite: bool = typer.Option(False, "--overwrite", help="replace a committed dataset at --dest"),
    workers: int = typer.Option(4, "--workers", min=1, help="parallel image conversions and uploads"),
    card: bool = typer.Option(True, "--card/--no-card", help="write the dataset card (README.md, PNGs)"),
) -> None:
    """Turn a folder of photos (one sub-folder per class) into a dataset; unreadable files are skipped."""
    from drsynth import metrics
    from drsynth.import_images import import_images, skipped_report

    with metrics.step("package", task="import-images"):
        result = import_images(
            src,
            dest,
            classes=[c.strip() for c in classes.split(",") if c.strip()] if classes else None,
            max_side=max_side,
            max_per_class=max_per_class,
            name=name,
            shard_size=shard_size,
            overwrite=overwrite,
            workers=workers,
            card=card,
        )
    if result.skipped:
        console.print(f"[yellow]skipped {len(result.skipped)} unreadable file(s):[/]")
        console.print(skipped_report(result.skipped), highlight=False, markup=False)
    if result.ignored:
        console.print(f"ignored {len(result.ignored)} file(s) that are not images or not in a class folder")
    _report(result.package)


def _report(result) -> None:  # result: drsynth.package.PackageResult
    m = result.manifest
    counts = ", ".join(f"{c} {m.counts[c]}" for c in m.classes)
    total_mb = sum(s.size for s in m.shards) / 1e6
    console.print(
        f"committed [bold]{m.name}[/] at {result.uri}: {m.num_samples} images ({counts}) in {len(m.shards)} "
        f"shards, {total_mb:.1f} MB; uploaded {result.shards_uploaded}, resumed {result.shards_resumed}; "
        f"{result.seconds:.1f} s ({result.images_per_s:.0f} images/s, {result.mb_per_s:.1f} MB/s)",
        highlight=False,
    )
    if result.unfinished:
        console.print(
            f"[yellow]note:[/] {len(result.unfinished)} image(s) without a .json record (unfinished renders) were "
            f"left out, e.g. {', '.join(result.unfinished[:5])}"
        )
    cur = m.source.get("curation")
    if cur:
        left = cur.get("unscored_left_out")
        note = f"; {left} unscored (rendered after curating) left out" if left else ""
        console.print(
            f"curated: kept {cur['kept']} of {cur['rendered']} renders ({cur['file']}){note}", highlight=False
        )


@dataset_app.command("info")
def dataset_info_cmd(uri: str = typer.Argument(..., help=DEST_HELP)) -> None:
    """Print a dataset's manifest summary (classes, counts, shards, source)."""
    from drsynth.data import read_manifest

    m = read_manifest(uri)
    out = Console()
    out.print(f"[bold]{m.name}[/] ({m.format}), created {m.created} by drsynth {m.drsynth_version}")
    out.print(
        f"  {m.num_samples} samples, image size {m.image_size or 'varies'}, {len(m.shards)} shards "
        f"({sum(s.size for s in m.shards) / 1e6:.1f} MB)"
    )
    for i, c in enumerate(m.classes):
        out.print(f"  {i}: {c:<16} {m.counts.get(c, 0)}")
    out.print(f"  source: {m.source.get('kind')} {m.source.get('path') or m.source.get('paths', '')}")
    if m.scenario_name:
        out.print(f"  scenario {m.scenario_name}, seed {m.seed}, disabled {m.disabled or 'none'}")


@dataset_app.command("verify")
def dataset_verify_cmd(
    uri: str = typer.Argument(..., help=DEST_HELP),
    cache_dir: Path | None = typer.Option(
        None, "--cache-dir", help="shard cache (default $DRSYNTH_CACHE or ~/.cache/drsynth/datasets)"
    ),
) -> None:
    """Download every shard into the local cache and check its sha256 against the manifest."""
    from drsynth.data import download_dataset

    m = download_dataset(uri, cache_dir=cache_dir)
    console.print(f"ok: {len(m.shards)} shards of {m.name} match their manifest checksums")


STORE_DIR_HELP = "folder for the server's data, log, credentials and PID (default $DRSYNTH_STORE_DIR or "
STORE_DIR_HELP += "~/.local/share/drsynth/store)"


@store_app.command("up")
def store_up_cmd(
    dir: Path | None = typer.Option(None, "--dir", help=STORE_DIR_HELP),
    port: int | None = typer.Option(None, "--port", min=1, max=65535, help="S3 port (default 8333 if free)"),
) -> None:
    """Start SeaweedFS in the background on 127.0.0.1 and print the `export` lines for its S3 endpoint.

    Use it as `eval "$(drsynth store up)"`.
    """
    from drsynth.local_store import running_store, start_local_store

    already = running_store(dir)
    store = start_local_store(dir, port=port)
    verb = "already running" if already is not None else "started"
    console.print(
        f"local S3 server {verb}: {store.endpoint_url} (pid {store.pid}), data in {store.dir}. "
        f"Stop it with `drsynth store down{f' --dir {dir}' if dir else ''}`.",
        highlight=False,
    )
    typer.echo(store.exports())


@store_app.command("down")
def store_down_cmd(dir: Path | None = typer.Option(None, "--dir", help=STORE_DIR_HELP)) -> None:
    """Stop the local S3 server started by `drsynth store up` (by its recorded PID)."""
    from drsynth.local_store import stop_local_store

    stopped = stop_local_store(dir)
    if stopped is None:
        console.print("no local S3 server was running there")
    else:
        console.print(
            f"stopped the local S3 server {stopped.endpoint_url} (pid {stopped.pid})", highlight=False
        )


@store_app.command("status")
def store_status_cmd(dir: Path | None = typer.Option(None, "--dir", help=STORE_DIR_HELP)) -> None:
    """Say whether the local S3 server is running, and print its `export` lines if so."""
    from drsynth.local_store import running_store

    store = running_store(dir)
    if store is None:
        console.print("no local S3 server is running there (start one with `drsynth store up`)")
        raise typer.Exit(1)
    console.print(f"running: {store.endpoint_url} (pid {store.pid}), data in {store.dir}", highlight=False)
    typer.echo(store.exports())
