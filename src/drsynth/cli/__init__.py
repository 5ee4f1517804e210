"""The `drsynth` command line.

Each area of the product registers its commands from its own module (render_cmds, data_cmds, ...), so the
modules stay small and owners don't collide. Command bodies import the library lazily: `drsynth --help`
must not pay for torch or pyrender.
"""

from __future__ import annotations

import sys

import typer
from rich.console import Console

from drsynth import __version__
from drsynth.errors import DrsynthError

from . import data_cmds, eval_cmds, pipeline_cmds, realism_cmds, render_cmds, serve_cmds, train_cmds

err_console = Console(stderr=True)

app = typer.Typer(
    name="drsynth",
    help="Domain-randomized synthetic images -> classifier -> ONNX -> evaluation, as a Kubeflow pipeline.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"drsynth {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
    pushgateway: str = typer.Option(
        None, "--pushgateway", metavar="URL",
        help="Push step metrics to this Prometheus Pushgateway (default: $PROMETHEUS_PUSHGATEWAY).",
    ),
    metrics_port: int = typer.Option(
        None, "--metrics-port", metavar="PORT", min=0, max=65535,
        help="Serve step metrics at :PORT/metrics while a step runs (default: $DRSYNTH_METRICS_PORT).",
    ),
) -> None:
    if pushgateway is not None or metrics_port is not None:
        from drsynth import metrics  # lazily: `drsynth --help` stays fast

        metrics.configure(pushgateway=pushgateway, port=metrics_port)


for _module in (render_cmds, realism_cmds, data_cmds, train_cmds, eval_cmds, serve_cmds, pipeline_cmds):
    _module.register(app)


def main(argv: list[str] | None = None) -> None:
    """Entry point: user-facing errors become one line on stderr and exit code 2."""
    try:
        # Without standalone mode click returns (not raises) the code of a `typer.Exit(n)`.
        code = app(args=argv, standalone_mode=False)
        if isinstance(code, int) and code != 0:
            sys.exit(code)
    except DrsynthError as e:
        err_console.print(f"[bold red]error:[/] {e}", highlight=False, soft_wrap=True)
        sys.exit(e.exit_code)
    except typer.Exit as e:
        sys.exit(e.exit_code)
    except typer.Abort:
        err_console.print("[bold red]aborted[/]")
        sys.exit(130)
    except KeyboardInterrupt:
        err_console.print("[bold red]interrupted[/]")
        sys.exit(130)
    except Exception as e:  # click usage errors and the like
        import click

        usage_errors: tuple[type[Exception], ...] = (click.ClickException,)
        try:  # typer >= 0.2x raises its vendored click's exceptions, which are not click's
            from typer._click.exceptions import ClickException as VendoredClickException

            usage_errors += (VendoredClickException,)
        except ImportError:
            pass
        if isinstance(e, usage_errors):
            e.show()
            sys.exit(e.exit_code)
        raise
