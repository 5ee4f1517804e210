"""Run a drsynth pipeline on this machine, with no cluster: `kfp.local` and its SubprocessRunner.

The same compiled pipeline a cluster runs executes here task by task, each task in its own Python process
(lightweight components run without their image: `use_venv=False` means this interpreter, which has drsynth
installed). Loop iterations run two at a time (kfp.local's limit). The task logs go to a file; the terminal
shows one progress bar over the pipeline's tasks. Task outputs are cached under the run's folder, so a second
`drsynth run` with the same settings reuses the renders, datasets and models that did not change.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import re
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ANSI = re.compile(r"\x1b\[[0-9;]*m")
START = re.compile(r"Executing task '?([^'\s]+)'?")
FINISH = re.compile(r"Task '?([^'\s]+)'? finished with status (\w+)")
CACHED = re.compile(r"Task (\S+) cache hit")


@dataclass
class TaskEvents:
    """What the progress display is told: a task started, finished (ok / failed / from cache)."""

    on_start: Callable[[str], None] = lambda name: None
    on_finish: Callable[[str, str], None] = lambda name, status: None


class _LogTap(io.TextIOBase):
    """Stands in for sys.stdout while kfp.local runs: every line to the log file, task events parsed out."""

    def __init__(self, log, events: TaskEvents) -> None:
        self._log = log
        self._events = events
        self._buf = ""
        self._lock = threading.Lock()

    def writable(self) -> bool:
        return True

    def write(self, s: str) -> int:
        with self._lock:
            self._log.write(s)
            self._buf += s
            *lines, self._buf = self._buf.split("\n")
        for line in lines:
            self._event(ANSI.sub("", line))
        return len(s)

    def flush(self) -> None:
        with self._lock:
            self._log.flush()

    def _event(self, line: str) -> None:
        if m := FINISH.search(line):
            self._events.on_finish(m.group(1), m.group(2))
        elif m := CACHED.search(line):
            self._events.on_finish(m.group(1), "CACHED")
        elif m := START.search(line):
            self._events.on_start(m.group(1))


class _LogHandler(logging.Handler):
    """kfp.local logs cache hits and skips through the root logger outside a task's log context."""

    def __init__(self, tap: _LogTap) -> None:
        super().__init__(logging.INFO)
        self._tap = tap

    def emit(self, record: logging.LogRecord) -> None:
        with contextlib.suppress(Exception):
            self._tap.write(self.format(record) + "\n")


@contextlib.contextmanager
def _capture(log_path: Path, events: TaskEvents) -> Iterator[_LogTap]:
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "a", encoding="utf-8", buffering=1) as log:
        tap = _LogTap(log, events)
        handler = _LogHandler(tap)
        root = logging.getLogger()
        old_level = root.level
        root.addHandler(handler)
        root.setLevel(logging.INFO)
        old_stdout = sys.stdout
        sys.stdout = tap  # kfp.local prints task logs with print() and logs via StreamHandler(sys.stdout)
        try:
            with warnings.catch_warnings():
                # kfp.local warns once per task that our images are not python:* images and that cluster
                # settings (resources, GPUs, display names) have no effect locally: expected here.
                warnings.simplefilter("ignore", RuntimeWarning)
                warnings.simplefilter("ignore", UserWarning)
                yield tap
        finally:
            sys.stdout = old_stdout
            root.removeHandler(handler)
            root.setLevel(old_level)


def run_local(
    pipeline: str,
    arguments: dict[str, Any],
    *,
    work_dir: str | os.PathLike[str],
    cache: bool = True,
    events: TaskEvents | None = None,
) -> Any:
    """Run pipeline `pipeline` ("paper_study" | "train_and_serve") locally with `arguments`.

    `work_dir` holds kfp.local's pipeline root (`root/`), its cache (`cache/`) and the task log (`tasks.log`).
    Returns the pipeline's outputs (paper_study: the run-folder artifact). A failed task raises
    `drsynth.errors.PipelineError` naming it and the log.
    """
    from kfp import local

    from drsynth.errors import PipelineError
    from drsynth_pipelines.registry import get_pipeline

    work = Path(work_dir).absolute()
    log_path = work / "tasks.log"
    local.init(
        runner=local.SubprocessRunner(use_venv=False),
        pipeline_root=str(work / "root"),
        enable_caching=cache,
        cache_root=str(work / "cache"),
        raise_on_error=True,
    )
    func = get_pipeline(pipeline)
    t0 = time.monotonic()
    with _capture(log_path, events or TaskEvents()) as tap:
        tap.write(f"\n==== {time.strftime('%Y-%m-%d %H:%M:%S')} drsynth run: {pipeline} {arguments}\n")
        try:
            result = func(**arguments)
        except Exception as e:  # kfp.local raises RuntimeError for a failed task, others for its own faults
            if isinstance(e, PipelineError):
                raise
            msg = ANSI.sub("", str(e)).strip().splitlines()
            tap.write(f"==== {type(e).__name__}: {' '.join(msg)}\n")
            raise PipelineError(f"pipeline {pipeline} failed: {msg[0] if msg else type(e).__name__} "
                                f"(task logs: {log_path})") from None
        finally:
            tap.write(f"==== finished after {time.monotonic() - t0:.0f} s\n")
    return result


def tail(path: str | os.PathLike[str], lines: int = 40) -> str:
    """The last lines of a log (for error messages)."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return "".join(f.readlines()[-lines:])
    except OSError:
        return ""
