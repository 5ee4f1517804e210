"""Rendering datasets: index ranges, worker processes, resume, and the render output folder.

In memory (for tools that look at renders, e.g. realism checks):

    scenario = load_scenario("assets/scenarios/cats_dogs.yaml", image_size=128, disable=["occluders"])
    for image, record in render_samples(scenario, range(16)):
        ...

On disk (`drsynth render`), per docs/design.md "Render output folder":

    OUT/render.json, OUT/samples/<9-digit index>.jpg + .json (the .json, written last, marks it done)

Image `i` depends only on (scenario, seed, i): any index range can be rendered alone, by any number of workers
or pods, and re-running a range skips the images already finished.
"""

from __future__ import annotations

import io
import json
import os
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np

from drsynth import __version__, metrics
from drsynth.config import Scenario
from drsynth.errors import ConfigError, DrsynthError, RenderError
from drsynth.fsutil import atomic_write_bytes, atomic_write_json
from drsynth.randomizers.base import SceneContext
from drsynth.scene_spec import SceneSpec

SAMPLES_DIR = "samples"
MANIFEST = "render.json"


def sample_key(index: int) -> str:
    return f"{index:09d}"


def available_cores() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def _set_rasterizer_threads(workers: int) -> None:
    """llvmpipe threads per process: one process per core renders best with no extra raster threads."""
    if "LP_NUM_THREADS" not in os.environ:
        cores = available_cores()
        os.environ["LP_NUM_THREADS"] = "0" if workers >= cores else str(max(1, cores // workers))


# ------------------------------------------------------------------------------------------------------------
# One worker: scenario context + renderer
# ------------------------------------------------------------------------------------------------------------


@dataclass
class Sample:
    index: int
    spec: SceneSpec
    image: np.ndarray  # H x W x 3 uint8
    record: dict[str, Any]

    def jpeg(self, quality: int) -> bytes:
        from PIL import Image

        buf = io.BytesIO()
        Image.fromarray(self.image).save(buf, format="JPEG", quality=quality)
        return buf.getvalue()


class SampleRenderer:
    """Everything one process needs to render images of a scenario (pools, randomizers, GL renderer)."""

    def __init__(self, scenario: Scenario, *, ctx: SceneContext | None = None) -> None:
        from drsynth.describe import build_context, build_randomizers
        from drsynth.render import SceneRenderer, select_platform

        select_platform()
        self.scenario = scenario
        self.ctx = ctx if ctx is not None else build_context(scenario)
        self.randomizers = build_randomizers(scenario)
        self.renderer = SceneRenderer(
            scenario.image_size,
            msaa_samples=scenario.render.msaa_samples,
            smooth_edges=scenario.render.smooth_edges,
            fur_shells=scenario.render.fur_shells,
            shadow_map_size=scenario.render.shadow_map_size,
            material_image_dir=scenario.randomizers.materials.image_dir,
            sky_image_dir=scenario.randomizers.sky.image_dir,
        )

    def render(self, index: int, *, subject_id: str | None = None) -> Sample:
        from drsynth.describe import describe_scene

        try:
            spec, posed = describe_scene(
                self.scenario,
                self.ctx,
                index,
                randomizers=self.randomizers,
                hidden_fraction=self.renderer.hidden_fraction,
                subject_id=subject_id,
            )
            result = self.renderer.render(spec, posed)
        except DrsynthError:
            raise
        except Exception as e:  # add where it happened, as WebDataset appends URLs
            raise RenderError(f"rendering image {index} (seed {self.scenario.seed}) failed: {e!r}") from e
        return Sample(index, spec, result.image, make_record(self.scenario, spec, result))

    def subjects(self) -> list:
        """Every subject this worker may draw: a class's pool, or its single subject when the subject
        randomizer is off for that class."""
        out = []
        for c in self.scenario.class_names:
            out += self.ctx.pools[c] if self.randomizers[c]["subject"].enabled else [self.ctx.singles[c]]
        return list({id(s): s for s in out}.values())

    def prebake(self, *, offset: float = 0.0) -> int:
        """Bake (or load from the subject cache) every procedural subject now, starting at `offset` (a
        fraction of the list) so parallel workers share a cold cache's work (drsynth.subjects.bake_cache)."""
        from drsynth.subjects.bake_cache import prebake

        return prebake(self.subjects(), offset=offset)

    def close(self) -> None:
        self.renderer.close()


def make_record(scenario: Scenario, spec: SceneSpec, result) -> dict[str, Any]:
    """The metadata record of one image (docs/design.md "Metadata record")."""
    d = spec.to_dict()
    subj = d["subject"]
    return {
        "key": sample_key(spec.index),
        "index": spec.index,
        "seed": spec.seed,
        "class": spec.class_name,
        "label": spec.label,
        "subject": {"id": subj["id"], "class": subj["class_name"], "breed": subj["breed"], "source": subj["source"]},
        "pose": subj["pose"],
        "camera": d["camera"],
        "lights": d["lights"],
        "ambient": d["ambient"],
        "sky": d["sky"],
        "sensor": d["sensor"],
        "occluders": d["occluders"],
        "occluder_tries": d["occluder_tries"],
        "materials": {
            "ground": d["ground"],
            "occluders": [o["material"] for o in d["occluders"]],
            "subject": subj["material"],
        },
        "subject_geometry": {
            k: subj[k] for k in ("bounds_m", "center_m", "radius_m", "head_center_m", "head_radius_m")
        },
        "style": spec.style,
        "visible_fraction": round(float(result.visible_fraction), 6),
        "bbox": result.bbox,
        "image_size": spec.image_size,
        "scenario": scenario.name,
        "disabled": scenario.disabled,
        "drsynth_version": __version__,
    }


def render_samples(
    scenario: Scenario,
    indices: Iterable[int],
    *,
    subject_id: str | None = None,
    ctx: SceneContext | None = None,
) -> Iterator[tuple[Any, dict[str, Any]]]:
    """Render images in this process: yields (PIL.Image, metadata record) per index, in order.

    The same (scenario, index) always gives the same pixels and record as `drsynth render`.
    `subject_id` forces one subject (its class's indices only); `ctx` supplies prebuilt subject pools.
    """
    from PIL import Image

    _set_rasterizer_threads(1)
    worker = SampleRenderer(scenario, ctx=ctx)
    try:
        for index in indices:
            s = worker.render(int(index), subject_id=subject_id)
            yield Image.fromarray(s.image), s.record
    finally:
        worker.close()


# ------------------------------------------------------------------------------------------------------------
# The render folder
# ------------------------------------------------------------------------------------------------------------


def manifest(scenario: Scenario) -> dict[str, Any]:
    return {
        "scenario": scenario.to_json(),
        "scenario_name": scenario.name,
        "seed": scenario.seed,
        "image_size": scenario.image_size,
        "classes": scenario.class_names,
        "disabled": scenario.disabled,
        "style": scenario.style,
        "drsynth_version": __version__,
    }


def prepare_output(out_dir: Path, scenario: Scenario) -> Path:
    """Create (or re-open, for resume) a render folder; refuses one holding a different scenario."""
    out_dir = Path(out_dir)
    samples = out_dir / SAMPLES_DIR
    try:
        samples.mkdir(parents=True, exist_ok=True)
        probe = samples / ".write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise RenderError(f"output folder {out_dir} is not writable ({e.strerror}); choose another --out") from None
    want = manifest(scenario)
    path = out_dir / MANIFEST
    if path.exists():
        try:
            have = json.loads(path.read_text())
        except (OSError, ValueError) as e:
            raise RenderError(f"{path} is unreadable ({e}); remove the folder or choose another --out") from None
        if have.get("scenario") != want["scenario"]:
            raise ConfigError(
                f"{out_dir} already holds a render of a different scenario/seed/size "
                f"({have.get('scenario_name')}, seed {have.get('seed')}, size {have.get('image_size')}); "
                "resume only with the same settings, or choose another --out"
            )
    else:
        atomic_write_json(path, want)
    for tmp in samples.glob(".*.tmp"):  # leftovers of a killed run (atomic writes never leave partial files)
        tmp.unlink(missing_ok=True)
    return samples


def done_indices(out_dir: Path, indices: Iterable[int]) -> set[int]:
    samples = Path(out_dir) / SAMPLES_DIR
    return {i for i in indices if (samples / f"{sample_key(i)}.json").exists()}


def write_sample(samples_dir: Path, sample: Sample, quality: int) -> None:
    key = sample_key(sample.index)
    atomic_write_bytes(samples_dir / f"{key}.jpg", sample.jpeg(quality))
    atomic_write_json(samples_dir / f"{key}.json", sample.record)  # last: marks the image done


# Worker-process state (one SampleRenderer per process, created by the pool initializer).
_WORKER: SampleRenderer | None = None
_WORKER_OUT: Path | None = None


def _init_worker(
    scenario_json: dict, samples_dir: str, lp_threads: str, started=None, workers: int = 1
) -> None:
    """Set up this process's renderer. With `started` (a shared counter), bake every subject first, the
    n-th worker to start beginning n/workers of the way into the pool."""
    global _WORKER, _WORKER_OUT
    os.environ.setdefault("LP_NUM_THREADS", lp_threads)
    from drsynth.config import parse_scenario

    _WORKER = SampleRenderer(parse_scenario(scenario_json, source="render job"))
    _WORKER_OUT = Path(samples_dir)
    if started is not None:
        with started.get_lock():
            n = started.value
            started.value += 1
        _WORKER.prebake(offset=n / workers)


def _should_prebake(ctx: SceneContext, images: int, workers: int) -> bool:
    """Pre-bake when the subject cache is on and each worker renders at least as many images as there are
    subjects (it would then build most of them anyway; with the cache, workers split that work)."""
    from drsynth.subjects.bake_cache import cache_dir

    n_subjects = sum(len(p) for p in ctx.pools.values())
    return workers > 1 and cache_dir() is not None and images >= workers * n_subjects


def _render_chunk(indices: list[int]) -> tuple[list[tuple[str, float, int]], dict[str, float]]:
    """Render and write `indices`; returns (class, seconds, occluder tries) per image and this worker's
    failed-subject counts, for the parent's metrics (worker processes have their own registries)."""
    assert _WORKER is not None and _WORKER_OUT is not None
    stats = []
    for i in indices:
        t = time.perf_counter()
        s = _WORKER.render(i)
        write_sample(_WORKER_OUT, s, _WORKER.scenario.render.jpeg_quality)
        stats.append((s.record["class"], time.perf_counter() - t, s.record["occluder_tries"]))
    return stats, metrics.render().failed_subjects_by_class()


@dataclass
class RenderSummary:
    out_dir: Path
    requested: int
    skipped: int
    rendered: int
    seconds: float
    #: (seconds, images) when the first images were done: what follows is the steady rate, without start-up
    first_done: tuple[float, int] | None = None

    @property
    def images_per_second(self) -> float:
        return self.rendered / self.seconds if self.seconds > 0 else 0.0

    @property
    def steady_images_per_second(self) -> float | None:
        if self.first_done is None:
            return None
        t, n = self.first_done
        return (self.rendered - n) / (self.seconds - t) if self.rendered > n and self.seconds > t else None


def render_range(
    scenario: Scenario,
    out_dir: str | Path,
    *,
    start: int = 0,
    count: int,
    workers: int | None = None,
    chunk: int = 4,
    on_progress: Callable[[int, int], None] | None = None,
    ctx: SceneContext | None = None,
) -> RenderSummary:
    """Render images [start, start + count) into `out_dir`, skipping finished ones.

    on_progress(done, total) is called as images finish (`total` excludes skipped ones). A prebuilt `ctx`
    (subject pools) renders in this process only.
    """
    if start < 0 or count < 0:
        raise ConfigError(f"--start and --count must be >= 0, got start={start}, count={count}")
    workers = workers or available_cores()
    if workers < 1:
        raise ConfigError(f"--workers must be >= 1, got {workers}")
    out_dir = Path(out_dir)
    if ctx is None:
        from drsynth.describe import build_context

        # Subject pools are checked before anything is written (a class left without subjects fails here).
        ctx = build_context(scenario)
        in_process_ctx = None if workers > 1 else ctx
    else:
        in_process_ctx = ctx
        workers = 1
    samples_dir = prepare_output(out_dir, scenario)
    wanted = range(start, start + count)
    skip = done_indices(out_dir, wanted)
    todo = [i for i in wanted if i not in skip]
    m = metrics.render()  # the step's handle under `metrics.step("render")` (the CLI)
    m.planned.set(count)
    m.skipped.inc(len(skip))
    t0 = time.perf_counter()
    if on_progress:
        on_progress(0, len(todo))
    if not todo:
        return RenderSummary(out_dir, count, len(skip), 0, 0.0)

    workers = min(workers, max(1, len(todo) // chunk))
    _set_rasterizer_threads(workers)
    from drsynth.render import select_platform

    select_platform()  # once here, inherited by the workers
    done = 0
    first_done: tuple[float, int] | None = None
    if workers == 1:
        worker = SampleRenderer(scenario, ctx=in_process_ctx or ctx)
        t0 = time.perf_counter()  # count rendering, not the pool set-up, in images/s
        try:
            for i in todo:
                t = time.perf_counter()
                sample = worker.render(i)
                write_sample(samples_dir, sample, scenario.render.jpeg_quality)
                m.count_image(sample.record["class"], time.perf_counter() - t, sample.record["occluder_tries"])
                done += 1
                if first_done is None:
                    first_done = (time.perf_counter() - t0, done)
                if on_progress:
                    on_progress(done, len(todo))
        finally:
            worker.close()
    else:
        chunks = [todo[k : k + chunk] for k in range(0, len(todo), chunk)]
        mp = get_context("spawn")  # fresh GL state per worker; never fork a GL context
        started = mp.Value("i", 0) if _should_prebake(ctx, len(todo), workers) else None
        pool = ProcessPoolExecutor(
            max_workers=workers,
            mp_context=mp,
            initializer=_init_worker,
            initargs=(scenario.to_json(), str(samples_dir), os.environ["LP_NUM_THREADS"], started, workers),
        )
        try:
            pending = {pool.submit(_render_chunk, c) for c in chunks}
            while pending:
                finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                for f in finished:
                    stats, failed_subjects = f.result()  # re-raises a worker's error here
                    done += len(stats)
                    for image in stats:
                        m.count_image(*image)
                    m.merge_failed_subjects(failed_subjects)
                    if first_done is None and done >= workers * chunk:  # every worker is up and running
                        first_done = (time.perf_counter() - t0, done)
                    if on_progress:
                        on_progress(done, len(todo))
        except BaseException:
            pool.shutdown(wait=False, cancel_futures=True)
            raise
        pool.shutdown(wait=True)
    return RenderSummary(out_dir, count, len(skip), done, time.perf_counter() - t0, first_done)
