"""Progress for long work: a rich bar for a person at a terminal, throttled lines for a pipeline task's log.

Both hand out the same `(done, total)` callback the library's long functions take (`render_range`,
`run_realism`, `curate`), so a caller picks how progress is shown without the library knowing.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterator
from typing import Any

OnProgress = Callable[[int, int], None]


@contextlib.contextmanager
def count_bar(label: str, *, enabled: bool = True, console: Any = None) -> Iterator[OnProgress | None]:
    """A `(done, total)` callback drawing a rich bar (count, time elapsed and left), or None when disabled."""
    if not enabled:
        yield None
        return
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    columns = (TextColumn(f"[bold]{label}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
               TimeRemainingColumn())
    with Progress(*columns, console=console) as bar:
        task = bar.add_task(label, total=None)
        yield lambda done, total: bar.update(task, completed=done, total=total)


def log_every(seconds: float, label: str) -> OnProgress:
    """A `(done, total)` callback printing `label: done/total` at most every `seconds` and at the end (in a
    pipeline task the log is the only progress bar)."""
    last = [-math.inf]  # the first call always prints

    def report(done: int, total: int) -> None:
        now = time.monotonic()
        if now - last[0] >= seconds or done == total:
            last[0] = now
            print(f"{label}: {done}/{total}", flush=True)

    return report
