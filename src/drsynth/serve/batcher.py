"""Coalesce concurrent requests into one onnxruntime run (server-side dynamic batching).

Requests wait in a queue; one worker task takes as many as fit in `max_batch` instances, runs them as one
batch in a thread (onnxruntime releases the GIL), and hands each request its rows. With `max_wait_s = 0`
the batcher is greedy: it never delays a lone request, and under load the requests that arrive while a run
is in progress form the next batch. A positive `max_wait_s` trades that much latency for fuller batches.
KServe's own batcher lives in its Go agent sidecar (cluster only), so `drsynth serve` needs its own.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass

import numpy as np

log = logging.getLogger(__name__)


@dataclass
class _Pending:
    inputs: np.ndarray
    future: asyncio.Future


class MicroBatcher:
    """`await submit(x)` runs `run_fn` on x, possibly concatenated with other callers' inputs."""

    def __init__(
        self,
        run_fn: Callable[[np.ndarray], np.ndarray],
        *,
        max_batch: int,
        max_wait_s: float = 0.0,
        executor: Executor | None = None,
        on_batch: Callable[[int], None] | None = None,
    ):
        if max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {max_batch}")
        self.run_fn = run_fn
        self.max_batch = max_batch
        self.max_wait_s = max_wait_s
        self.executor = executor
        self.on_batch = on_batch
        self._pending: collections.deque[_Pending] = collections.deque()
        self._wakeup: asyncio.Event | None = None
        self._worker: asyncio.Task | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    async def submit(self, inputs: np.ndarray) -> np.ndarray:
        """Rows of `run_fn(batch)` for these inputs, in order."""
        loop = asyncio.get_running_loop()
        if self._worker is None or self._worker.done() or self._loop is not loop:
            # Created lazily: the server's event loop does not exist when the model is loaded.
            self._loop = loop
            self._wakeup = asyncio.Event()
            self._worker = loop.create_task(self._work(), name="drsynth-micro-batcher")
        item = _Pending(inputs, loop.create_future())
        self._pending.append(item)
        self._wakeup.set()
        return await item.future

    async def close(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
            self._worker = None
        while self._pending:
            p = self._pending.popleft()
            if not p.future.done():
                p.future.set_exception(RuntimeError("the predictor is shutting down"))

    def _take(self) -> list[_Pending]:
        """Whole requests, oldest first, up to max_batch instances (at least one request)."""
        taken = [self._pending.popleft()]
        n = len(taken[0].inputs)
        while self._pending and n + len(self._pending[0].inputs) <= self.max_batch:
            item = self._pending.popleft()
            taken.append(item)
            n += len(item.inputs)
        return taken

    def _run_chunked(self, batch: np.ndarray) -> np.ndarray:
        # One request may carry more than max_batch instances: run it in max_batch slices.
        if len(batch) <= self.max_batch:
            return self.run_fn(batch)
        return np.concatenate(
            [self.run_fn(batch[i : i + self.max_batch]) for i in range(0, len(batch), self.max_batch)]
        )

    async def _work(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            while not self._pending:
                self._wakeup.clear()
                await self._wakeup.wait()
            if self.max_wait_s > 0 and sum(len(p.inputs) for p in self._pending) < self.max_batch:
                await asyncio.sleep(self.max_wait_s)
            taken = [p for p in self._take() if not p.future.done()]  # drop callers that went away
            if not taken:
                continue
            batch = taken[0].inputs if len(taken) == 1 else np.concatenate([p.inputs for p in taken])
            try:
                outputs = await loop.run_in_executor(self.executor, self._run_chunked, batch)
                if self.on_batch is not None:
                    self.on_batch(len(batch))
            except Exception as e:  # the callers get the error; the worker keeps serving
                log.exception("batch of %d failed", len(batch))
                for p in taken:
                    if not p.future.done():
                        p.future.set_exception(e)
                continue
            start = 0
            for p in taken:
                stop = start + len(p.inputs)
                if not p.future.done():
                    p.future.set_result(outputs[start:stop])
                start = stop
