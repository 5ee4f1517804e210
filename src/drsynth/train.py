"""Train a classifier on a dataset URI (torchvision references layout: train_one_epoch, evaluate, main).

    cfg = TrainConfig(data="s3://bucket/cats-dogs", out="runs/vgg", backbone="vgg16", evals={"real": "photos/"})
    result = main(cfg)

The paper's setup is the default: ImageNet backbone, frozen, head Linear(F,128)-ReLU-Dropout(0.3)-Linear(128,n),
Adam lr 1e-3, 10 epochs, train-time augmentation (`drsynth.augment`). Every epoch reports accuracy on the
validation data and on every `evals` domain (the paper's Fig. 2), written to `history.json` and `curve.png`;
the checkpoint (`drsynth.checkpoint`) keeps the epoch with the best validation accuracy.

On CUDA: autocast in bf16 (fp16 with a GradScaler where bf16 is missing), channels_last, pinned memory; the
step follows pytorch/vision#4874 (forward under autocast, unscale before clipping, one optimizer step).
With a frozen backbone the feature cache (`drsynth.features`) makes later epochs train only the head.

Several processes (torchrun, Kubeflow Trainer; `drsynth.distributed`): one device each, DistributedDataParallel
around the part that learns (the head of a frozen backbone, else the whole model), each rank reading its own
share of the data, metrics summed over the ranks; rank 0 writes the checkpoint, history, curve and logs.
`batch_size` is per process.

Randomness: torch is seeded from `seed`; each augmented image is a function of (seed, sample key, view), so
results do not depend on the number of DataLoader workers.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from torch import nn

from drsynth import __version__, metrics
from drsynth.augment import AugmentConfig, ImageTransform, eval_transform, seeded_view, train_transform
from drsynth.checkpoint import INFO_FILE, CheckpointInfo, HeadInfo, save_checkpoint
from drsynth.distributed import Distributed, launch
from drsynth.errors import ConfigError, DatasetError
from drsynth.features import FeatureStore
from drsynth.fsutil import atomic_dir, atomic_write_bytes, atomic_write_json
from drsynth.models import BACKBONES, NO_WEIGHTS, Classifier, build_model, default_weights
from drsynth.preprocess import Preprocess

if TYPE_CHECKING:
    from drsynth.storage import Store

HISTORY_FILE = "history.json"
CURVE_FILE = "curve.png"


class TrainConfig(BaseModel):
    """Everything one training run depends on; stored in the checkpoint as `train_config`."""

    model_config = ConfigDict(extra="forbid")

    data: str = Field(
        description="training dataset URI (s3://, file://, a folder) or an image folder DIR/<class>/*"
    )
    out: str = Field(description="checkpoint folder to write (model.safetensors, model.json, history, curve)")
    val: str | None = Field(
        None, description="validation dataset or folder; default: the val split of `data`"
    )
    val_fraction: float = Field(
        0.1, gt=0, lt=1, description="share of `data` held out when `val` is not given"
    )
    evals: dict[str, str] = Field(
        default_factory=dict, description="NAME -> dataset/folder evaluated every epoch"
    )
    classes: list[str] | None = Field(None, description="train on these classes, in this label order")
    backbone: str = Field("vgg16", description="one of drsynth.models.BACKBONES (the paper's: vgg16)")
    weights: str | None = Field(
        None, description="imagenet | none | PATH; default imagenet (small-cnn: none)"
    )
    frozen: bool | None = Field(None, description="freeze the backbone; default: frozen unless weights=none")
    hidden: int = Field(128, ge=1, description="units of the head's hidden layer")
    dropout: float = Field(0.3, ge=0, lt=1, description="dropout before the output layer")
    epochs: int = Field(10, ge=1)
    batch_size: int = Field(32, ge=1)
    lr: float = Field(1e-3, gt=0, description="Adam learning rate")
    weight_decay: float = Field(0.0, ge=0)
    clip_grad_norm: float | None = Field(None, gt=0, description="clip the gradient norm (None: no clipping)")
    image_size: int = Field(224, ge=16, le=1024, description="network input side; eval resizes to size/0.875")
    augment: AugmentConfig = Field(default_factory=AugmentConfig)
    cache_views: int = Field(
        2, ge=0, description="frozen backbone: augmented views cached per image (0: off)"
    )
    threads: int | None = Field(
        None,
        ge=1,
        description="torch CPU threads while training (default: torch's; set it to the pod's CPU limit)",
    )
    workers: int | None = Field(
        None, ge=0, description="DataLoader workers (default: CPU cores - 1, at most 8)"
    )
    seed: int = Field(0, ge=0)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    amp: Literal["auto", "bf16", "fp16", "off"] = Field(
        "auto", description="CUDA autocast dtype (auto: bf16)"
    )
    channels_last: bool | None = Field(None, description="default: on CUDA")
    dataset_cache: str | None = Field(None, description="local shard cache folder (default $DRSYNTH_CACHE)")
    overwrite: bool = Field(False, description="replace `out` (and a checkpoint at `upload`) if it exists")
    upload: str | None = Field(
        None, description="also copy the finished checkpoint folder to this store URI (s3://bucket/prefix)"
    )
    progress: bool = True

    @field_validator("backbone")
    @classmethod
    def _known_backbone(cls, v: str) -> str:
        if v not in BACKBONES:
            raise ValueError(f"unknown backbone {v!r}: expected one of {', '.join(BACKBONES)}")
        return v

    @model_validator(mode="after")
    def _defaults(self) -> TrainConfig:
        if self.weights is None:
            self.weights = default_weights(self.backbone)
        if self.frozen is None:
            self.frozen = self.weights != NO_WEIGHTS
        if self.classes is not None and len(set(self.classes)) != len(self.classes):
            raise ValueError(f"classes must be distinct, got {self.classes}")
        reserved = [n for n in self.evals if n in ("train", "val")]
        if reserved:
            raise ValueError(
                f"evaluation domain names {reserved} are reserved for the training and validation data"
            )
        return self

    @property
    def preprocess(self) -> Preprocess:
        return Preprocess.for_size(self.image_size)


# ------------------------------------------------------------------------------------------------ data


class ToTensor:
    """Sample dict -> (image tensor, model label). Augmented views are seeded by (seed, key, view)."""

    def __init__(
        self,
        transform: ImageTransform,
        *,
        seed: int = 0,
        view: int | None = None,
        label_of: dict[str, int] | None = None,
    ) -> None:
        self.transform, self.seed, self.view, self.label_of = transform, seed, view, label_of

    def __call__(self, sample: dict[str, Any]) -> tuple[torch.Tensor, int]:
        img = sample["image"]
        if self.view is None:
            x = self.transform(img)
        else:
            x = seeded_view(self.transform, img, seed=self.seed, key=sample["__key__"], view=self.view)
        label = self.label_of[sample["class"]] if self.label_of is not None else int(sample["label"])
        return x, label


class TensorStream(torch.utils.data.IterableDataset):
    """A sample-dict dataset mapped through `to_tensor` (the wrapped dataset splits work across workers)."""

    def __init__(self, samples: Any, to_tensor: Callable[[dict[str, Any]], tuple[torch.Tensor, int]]) -> None:
        self.samples, self.to_tensor = samples, to_tensor

    def __iter__(self):
        for sample in self.samples:
            yield self.to_tensor(sample)

    def __len__(self) -> int:
        return len(self.samples)


@dataclass
class EvalSet:
    """A validation or evaluation domain: its samples and how its class names map to model labels."""

    name: str
    samples: Any
    label_of: dict[str, int]
    skipped_classes: list[str] = field(default_factory=list)


def load_data(cfg: TrainConfig) -> tuple[Any, EvalSet, list[EvalSet]]:
    """(train samples, validation set, evaluation sets) as sample-dict datasets (drsynth.data)."""
    from drsynth.data import open_domain
    from drsynth.evaluate import open_eval_domain

    kw: dict[str, Any] = {"cache_dir": cfg.dataset_cache} if cfg.dataset_cache else {}
    split = "all" if cfg.val else "train"
    train = open_domain(
        cfg.data,
        split=split,
        val_fraction=cfg.val_fraction,
        classes=cfg.classes,
        shuffle=True,
        seed=cfg.seed,
        **kw,
    )
    classes = list(train.classes)
    if len(classes) < 2:
        raise DatasetError(f"training data {cfg.data} has classes {classes}; a classifier needs at least 2")
    if len(train) == 0:
        raise DatasetError(f"training data {cfg.data} has no samples for classes {classes}")
    label_of = {c: i for i, c in enumerate(classes)}
    if cfg.val:
        val_ds, skipped = open_eval_domain(cfg.val, classes, only_model_classes=True, **kw)
        val = EvalSet("val", val_ds, label_of, skipped)
    else:
        val_ds = open_domain(cfg.data, split="val", val_fraction=cfg.val_fraction, classes=classes, **kw)
        if len(val_ds) == 0:
            raise DatasetError(
                f"the validation split of {cfg.data} is empty ({len(train)} training samples, val_fraction "
                f"{cfg.val_fraction}); pass --val URI or a larger --val-fraction"
            )
        val = EvalSet("val", val_ds, label_of)
    evals = []
    for name, uri in cfg.evals.items():
        ds, skipped = open_eval_domain(uri, classes, only_model_classes=True, **kw)
        evals.append(EvalSet(name, ds, label_of, skipped))
    return train, val, evals


def make_loader(
    stream: TensorStream, cfg: TrainConfig, device: torch.device, *, processes_per_node: int = 1
) -> torch.utils.data.DataLoader:
    cores = (os.cpu_count() or 1) // processes_per_node  # the training processes of a node share its cores
    workers = cfg.workers if cfg.workers is not None else min(8, max(0, cores - 1))
    # Forking a process whose process group runs background threads (Gloo, NCCL) can leave a worker holding
    # a lock no thread will release (a rare hang, seen on CI); forkserver workers start from a clean process.
    distributed = torch.distributed.is_available() and torch.distributed.is_initialized()
    context = "forkserver" if workers > 0 and distributed else None
    return torch.utils.data.DataLoader(
        stream,
        batch_size=cfg.batch_size,
        num_workers=workers,
        pin_memory=device.type == "cuda",
        multiprocessing_context=context,
    )


# --------------------------------------------------------------------------------------------- the loop


@dataclass
class Precision:
    """Autocast settings of a run: dtype None means full float32."""

    device_type: str
    dtype: torch.dtype | None

    def autocast(self):
        if self.dtype is None:
            return nullcontext()
        return torch.autocast(self.device_type, dtype=self.dtype)


def choose_device(name: str) -> torch.device:
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device=cuda requested but torch sees no CUDA device; use --device auto or cpu")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(name)


def choose_precision(amp: str, device: torch.device) -> Precision:
    if device.type != "cuda" or amp == "off":
        return Precision(device.type, None)
    if amp == "auto":
        amp = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return Precision(device.type, torch.bfloat16 if amp == "bf16" else torch.float16)


class RunningStats:
    """Loss and accuracy sums kept on the device: reading them synchronises, so the loop reads them rarely."""

    def __init__(self) -> None:
        self.loss_sum: torch.Tensor | float = 0.0
        self.correct: torch.Tensor | int = 0
        self.n = 0

    def update(self, loss: torch.Tensor, logits: torch.Tensor, labels: torch.Tensor) -> None:
        self.loss_sum = self.loss_sum + loss.float() * len(labels)
        self.correct = self.correct + (logits.argmax(1) == labels).sum()
        self.n += len(labels)

    @property
    def loss(self) -> float:
        return float(self.loss_sum) / max(self.n, 1)

    @property
    def accuracy(self) -> float:
        return int(self.correct) / max(self.n, 1)

    def summed(self, dist: Distributed) -> RunningStats:
        """These statistics summed over all training processes."""
        loss_sum, correct, n = dist.sum(float(self.loss_sum), int(self.correct), self.n)
        total = RunningStats()
        total.loss_sum, total.correct, total.n = float(loss_sum), int(correct), int(n)
        return total


def train_one_epoch(
    model: Classifier,
    criterion: nn.Module,
    optimizer: torch.optim.Optimizer,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    *,
    device: torch.device,
    precision: Precision,
    scaler: torch.amp.GradScaler | None = None,
    clip_grad_norm: float | None = None,
    features_in: bool = False,
    record: Callable[[torch.Tensor, torch.Tensor], None] | None = None,
    channels_last: bool = False,
    on_batch: Callable[[RunningStats, float], None] | None = None,
    trainable: nn.Module | None = None,
    dist: Distributed | None = None,
) -> dict[str, float]:
    """One pass over `batches` (images, or backbone features when `features_in`); returns loss, accuracy, speed.

    A frozen backbone runs without gradients and its features go to `record` (the feature cache) if given.
    `trainable` is the part that learns (default: `model.head` when the backbone is frozen, else `model`), in
    DistributedDataParallel when several processes train (`dist`); the results then cover all of them.
    """
    dist = dist or Distributed()
    net = trainable if trainable is not None else (model.head if model.frozen or features_in else model)
    model.train()
    net.train()
    stats = RunningStats()
    params = [p for p in model.parameters() if p.requires_grad]
    metric = metrics.train()
    start = shown = time.perf_counter()
    with dist.uneven_inputs(net):
        for x, y in batches:
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            if channels_last and not features_in:
                x = x.contiguous(memory_format=torch.channels_last)
            with precision.autocast():
                if model.frozen and not features_in:
                    with torch.no_grad():
                        x = model.backbone(x)
                    if record is not None:
                        record(x, y)
                logits = net(x)
                loss = criterion(logits, y)
            optimizer.zero_grad(set_to_none=True)
            if scaler is not None:
                scaler.scale(loss).backward()
                if clip_grad_norm is not None:
                    scaler.unscale_(optimizer)  # clip the true gradients, not the scaled ones
                    nn.utils.clip_grad_norm_(params, clip_grad_norm)
                scaler.step(optimizer)
                scaler.update()
            else:
                loss.backward()
                if clip_grad_norm is not None:
                    nn.utils.clip_grad_norm_(params, clip_grad_norm)
                optimizer.step()
            stats.update(loss.detach(), logits.detach(), y)
            metric.images.inc(len(y))
            now = time.perf_counter()
            if on_batch is not None and now - shown >= 0.5:  # reading the stats waits for the device
                on_batch(stats, now - start)
                shown = now
    loss_value, accuracy = stats.loss, stats.accuracy  # synchronises: the clock below includes all work
    seconds = time.perf_counter() - start
    if on_batch is not None:
        on_batch(stats, seconds)
    if dist.enabled:  # the whole epoch: sums over the ranks, the slowest rank's time
        stats, seconds = stats.summed(dist), dist.max(seconds)
        loss_value, accuracy = stats.loss, stats.accuracy
    return {
        "loss": loss_value,
        "accuracy": accuracy,
        "n": stats.n,
        "seconds": seconds,
        "images_per_s": stats.n / seconds if seconds > 0 else 0.0,
    }


@torch.no_grad()
def evaluate(
    model: Classifier,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    *,
    device: torch.device,
    precision: Precision,
    classes: Sequence[str],
    features_in: bool = False,
    record: Callable[[torch.Tensor, torch.Tensor], None] | None = None,
    channels_last: bool = False,
    dist: Distributed | None = None,
) -> dict[str, Any]:
    """Accuracy, loss and per-class accuracy (recall) over `batches` (with `dist`: over every rank's batches)."""
    model.eval()
    criterion = nn.CrossEntropyLoss(reduction="sum")
    loss_sum, correct = 0.0, 0
    per_class_total = torch.zeros(len(classes), dtype=torch.long)
    per_class_correct = torch.zeros(len(classes), dtype=torch.long)
    start = time.perf_counter()
    for x, y in batches:
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        if channels_last and not features_in:
            x = x.contiguous(memory_format=torch.channels_last)
        with precision.autocast():
            if features_in:
                logits = model.head(x)
            else:
                feats = model.backbone(x)
                if record is not None:
                    record(feats, y)
                logits = model.head(feats)
        loss_sum += float(criterion(logits.float(), y))
        hit = (logits.argmax(1) == y).cpu()
        y_cpu = y.cpu()
        correct += int(hit.sum())
        per_class_total += torch.bincount(y_cpu, minlength=len(classes))
        per_class_correct += torch.bincount(y_cpu[hit], minlength=len(classes))
    if dist is not None and dist.enabled:
        loss_t, correct_t, total_t, correct_per_class = dist.sum(
            loss_sum, correct, per_class_total, per_class_correct
        )
        loss_sum, correct = float(loss_t), int(correct_t)
        per_class_total, per_class_correct = total_t.long(), correct_per_class.long()
    n = int(per_class_total.sum())
    return {
        "accuracy": correct / n if n else 0.0,
        "loss": loss_sum / n if n else 0.0,
        "n": n,
        "per_class_accuracy": {
            c: int(per_class_correct[i]) / int(per_class_total[i])
            for i, c in enumerate(classes)
            if per_class_total[i]
        },
        "seconds": time.perf_counter() - start,
    }


# ----------------------------------------------------------------------------------------------- main


@dataclass
class TrainResult:
    out: Path
    classes: list[str]
    best_epoch: int
    best_val_accuracy: float
    history: list[dict[str, Any]]


def main(cfg: TrainConfig) -> TrainResult:
    """Train per `cfg`; writes the checkpoint folder `cfg.out` (atomically, when training finishes).

    Under torchrun every process calls this; they train together and rank 0 writes the outputs.
    """
    threads_before = torch.get_num_threads()
    if cfg.threads:
        # torch sizes its pool by the host's cores, not a container's CPU limit; oversubscribed
        # threads spin and can make small models several times slower
        torch.set_num_threads(cfg.threads)
    try:
        with launch(choose_device(cfg.device)) as dist:
            return _train(cfg, dist)
    finally:
        torch.set_num_threads(threads_before)


def _train(cfg: TrainConfig, dist: Distributed) -> TrainResult:
    out = Path(cfg.out)
    if out.exists() and not cfg.overwrite and not (out.is_dir() and not any(out.iterdir())):
        raise ConfigError(
            f"output folder {out} already exists; pass --overwrite to replace it, or another --out"
        )
    upload = _upload_target(cfg) if cfg.upload and dist.is_main else None
    device = dist.device
    precision = choose_precision(cfg.amp, device)
    channels_last = cfg.channels_last if cfg.channels_last is not None else device.type == "cuda"
    torch.manual_seed(cfg.seed)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True

    train_ds, val_set, eval_sets = load_data(cfg)
    classes = list(train_ds.classes)
    pp = cfg.preprocess
    model = build_model(
        cfg.backbone,
        len(classes),
        weights=cfg.weights,
        hidden=cfg.hidden,
        dropout=cfg.dropout,
        frozen=cfg.frozen,
    ).to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    # the part that learns; with several processes in DistributedDataParallel, which averages its gradients
    trainable = dist.wrap(model.head if model.frozen else model)
    if dist.enabled:
        torch.manual_seed(cfg.seed + dist.rank)  # own dropout masks per rank (the weights are rank 0's)
    criterion = nn.CrossEntropyLoss()
    optimizer = torch.optim.Adam(
        [p for p in model.parameters() if p.requires_grad], lr=cfg.lr, weight_decay=cfg.weight_decay
    )
    scaler = torch.amp.GradScaler(device.type) if precision.dtype == torch.float16 else None
    store = FeatureStore() if model.frozen and cfg.cache_views > 0 else None
    augment, plain = train_transform(pp, cfg.augment), eval_transform(pp)

    history: list[dict[str, Any]] = []
    best: dict[str, Any] = {"epoch": 0, "val_accuracy": -1.0, "score": (-1.0, -float("inf"))}
    m = metrics.train()  # the step's handle under `metrics.step("train")` (the CLI), else an unexported one
    with _output_dir(out, dist) as tmp, _progress(cfg.progress and dist.is_main) as bar:
        m.epochs_planned.set(cfg.epochs)
        m.learning_rate.set(cfg.lr)
        for epoch in range(cfg.epochs):
            # --- train: from cached features when this epoch's view is cached, else from images
            view = epoch % cfg.cache_views if store is not None else epoch
            cache_name = f"train/view-{view}"
            share = -(-len(train_ds) // dist.world_size)  # what one rank reads, about
            task = bar.add_task(
                f"epoch {epoch + 1}/{cfg.epochs} train", total=share, loss=0.0, acc=0.0, ips=0.0
            )

            def on_batch(stats: RunningStats, seconds: float, task: Any = task) -> None:
                rate = stats.n / seconds if seconds > 0 else 0.0
                bar.update(task, completed=stats.n, loss=stats.loss, acc=stats.accuracy, ips=rate)

            recorder = None
            if store is not None and cache_name in store:
                gen = torch.Generator().manual_seed(cfg.seed * 1_000_003 + epoch)
                batches: Iterable = store.batches(cache_name, cfg.batch_size, generator=gen)
                features_in = True
            else:
                train_ds.set_epoch(epoch)
                stream = TensorStream(train_ds, ToTensor(augment, seed=cfg.seed, view=view))
                loader = make_loader(stream, cfg, device, processes_per_node=dist.local_world_size)
                batches, features_in = loader, False
                recorder = store.recorder(cache_name) if store is not None else None
            train_stats = train_one_epoch(
                model, criterion, optimizer, batches, device=device, precision=precision, scaler=scaler,
                clip_grad_norm=cfg.clip_grad_norm, features_in=features_in, record=recorder,
                channels_last=channels_last, on_batch=on_batch, trainable=trainable, dist=dist,
            )  # fmt: skip
            dist.sync_buffers(model)  # every rank evaluates (and rank 0 saves) rank 0's batch-norm statistics
            if recorder is not None:
                recorder.finish()
            train_stats["cached"] = features_in
            bar.remove_task(task)
            m.observe_epoch(epoch + 1, "train", loss=train_stats["loss"], accuracy=train_stats["accuracy"])

            # --- validation and every evaluation domain
            results = {}
            for es in [val_set, *eval_sets]:
                results[es.name] = _evaluate_set(
                    model, es, cfg, store, classes, plain, device, precision, channels_last, dist
                )
                m.observe_epoch(
                    epoch + 1, es.name, loss=results[es.name]["loss"], accuracy=results[es.name]["accuracy"]
                )
            m.observe_gpu_memory(device)
            row = {
                "epoch": epoch + 1,
                "train": train_stats,
                "val": results.pop("val"),
                "eval": results,
            }
            history.append(row)
            cache_bytes = int(dist.sum(store.nbytes if store is not None else 0)[0])  # every rank's cache
            if dist.is_main:
                bar.console.print(_epoch_line(row, cfg.epochs), highlight=False)

            # --- keep the best checkpoint by validation accuracy; on a tie (a small or easy validation set
            # saturates) the lower validation loss wins
            score = (row["val"]["accuracy"], -row["val"]["loss"])
            if score > best["score"]:
                best = {"epoch": epoch + 1, "val_accuracy": row["val"]["accuracy"], "score": score}
                if tmp is not None:
                    save_checkpoint(tmp, model, _checkpoint_info(cfg, classes, pp, row))
            if tmp is not None:
                _write_history(tmp, cfg, classes, history, best, cache_bytes, [val_set, *eval_sets], dist)
    if upload is not None:
        _upload(out, upload)
    return TrainResult(out, classes, best["epoch"], best["val_accuracy"], history)


def _output_dir(out: Path, dist: Distributed):
    """Rank 0 writes into a temporary sibling of `out`, renamed when training ends; other ranks write nothing."""
    return atomic_dir(out, overwrite=True) if dist.is_main else nullcontext(None)


def _upload_target(cfg: TrainConfig) -> Store:
    """The store at `cfg.upload`, checked before training (reachable, writable, no checkpoint unless overwrite)."""
    from drsynth.storage import open_store

    store = open_store(str(cfg.upload))
    store.prepare_for_write()
    if store.stat(INFO_FILE) is not None and not cfg.overwrite:
        raise ConfigError(
            f"{store.child_uri(INFO_FILE)} already exists (a checkpoint was uploaded there); pass --overwrite "
            "to replace it, or another --upload URI"
        )
    return store


def _upload(folder: Path, store: Store) -> None:
    """The checkpoint's files, model.json last: as on disk, its presence marks a complete checkpoint."""
    from drsynth.storage import sha256_file

    store.delete(INFO_FILE)  # a replaced checkpoint is incomplete until the new model.json lands
    files = sorted((f for f in folder.iterdir() if f.is_file()), key=lambda f: (f.name == INFO_FILE, f.name))
    for f in files:
        store.put_file(f.name, f, sha256=sha256_file(f))


def _evaluate_set(
    model: Classifier,
    es: EvalSet,
    cfg: TrainConfig,
    store: FeatureStore | None,
    classes: list[str],
    plain: ImageTransform,
    device: torch.device,
    precision: Precision,
    channels_last: bool,
    dist: Distributed,
) -> dict[str, Any]:
    """Evaluate one set (each rank its share); with a feature store its features are computed only once."""
    name = f"eval/{es.name}"
    if store is not None and name in store:
        return evaluate(
            model,
            store.batches(name, 256),
            device=device,
            precision=precision,
            classes=classes,
            features_in=True,
            dist=dist,
        )
    recorder = store.recorder(name) if store is not None else None
    stream = TensorStream(es.samples, ToTensor(plain, label_of=es.label_of))
    loader = make_loader(stream, cfg, device, processes_per_node=dist.local_world_size)
    res = evaluate(
        model,
        loader,
        device=device,
        precision=precision,
        classes=classes,
        record=recorder,
        channels_last=channels_last,
        dist=dist,
    )
    if recorder is not None:
        recorder.finish()
    return res


def _checkpoint_info(
    cfg: TrainConfig, classes: list[str], pp: Preprocess, row: dict[str, Any]
) -> CheckpointInfo:
    return CheckpointInfo(
        classes=classes,
        backbone=cfg.backbone,
        weights=str(cfg.weights),
        head=HeadInfo(hidden=cfg.hidden, dropout=cfg.dropout),
        frozen=bool(cfg.frozen),
        preprocess=pp,
        metrics={
            "epoch": row["epoch"],
            "val_accuracy": row["val"]["accuracy"],
            "val_loss": row["val"]["loss"],
            "train_accuracy": row["train"]["accuracy"],
            "train_loss": row["train"]["loss"],
            "eval_accuracy": {k: v["accuracy"] for k, v in row["eval"].items()},
        },
        train_config=cfg.model_dump(mode="json"),
        drsynth_version=__version__,
    )


def _write_history(
    out: Path,
    cfg: TrainConfig,
    classes: list[str],
    history: list[dict[str, Any]],
    best: dict[str, Any],
    feature_cache_bytes: int,
    sets: list[EvalSet],
    dist: Distributed,
) -> None:
    atomic_write_json(
        out / HISTORY_FILE,
        {
            "classes": classes,
            "backbone": cfg.backbone,
            "frozen": cfg.frozen,
            "best_epoch": best["epoch"],
            "best_val_accuracy": best["val_accuracy"],
            "feature_cache_bytes": feature_cache_bytes,
            "processes": dist.world_size,
            "skipped_classes": {es.name: es.skipped_classes for es in sets if es.skipped_classes},
            "epochs": history,
            "drsynth_version": __version__,
        },
    )
    state = (
        "frozen" if cfg.frozen else ("trained from scratch" if cfg.weights == NO_WEIGHTS else "fine-tuned")
    )
    curve = plot_curve(history, classes, title=f"{cfg.backbone}, {state}", best_epoch=best["epoch"])
    atomic_write_bytes(out / CURVE_FILE, curve)


def plot_curve(
    history: list[dict[str, Any]], classes: Sequence[str], *, title: str, best_epoch: int | None = None
) -> bytes:
    """Accuracy per epoch (train, val, every eval domain): the paper's Fig. 2, as PNG bytes."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    epochs = [r["epoch"] for r in history]
    fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=110)
    ax.plot(epochs, [r["train"]["accuracy"] for r in history], "o--", color="0.55", label="train (augmented)")
    ax.plot(epochs, [r["val"]["accuracy"] for r in history], "o-", linewidth=2, label="validation")
    for name in history[-1]["eval"] if history else []:
        ax.plot(
            epochs, [r["eval"].get(name, {}).get("accuracy", float("nan")) for r in history], "s-", label=name
        )
    ax.axhline(1 / len(classes), color="0.3", linestyle=":", linewidth=1, label=f"chance (1/{len(classes)})")
    if best_epoch:
        ax.axvline(best_epoch, color="tab:green", alpha=0.4, linewidth=6, label=f"kept: epoch {best_epoch}")
    ax.set(xlabel="epoch", ylabel="accuracy", ylim=(0, 1.02), title=f"Accuracy per epoch: {title}")
    ax.set_xticks(epochs if len(epochs) <= 20 else epochs[:: max(1, len(epochs) // 10)])
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


def _epoch_line(row: dict[str, Any], epochs: int) -> str:
    t = row["train"]
    parts = [
        f"epoch {row['epoch']}/{epochs}",
        f"train loss {t['loss']:.3f} acc {t['accuracy']:.3f} ({t['images_per_s']:.0f} img/s{', cached' if t['cached'] else ''})",
        f"val acc {row['val']['accuracy']:.3f}",
    ]
    parts += [f"{k} acc {v['accuracy']:.3f}" for k, v in row["eval"].items()]
    return " | ".join(parts)


def _progress(enabled: bool):
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]:.3f} acc {task.fields[acc]:.3f} {task.fields[ips]:.0f} img/s"),
        TimeElapsedColumn(),
        disable=not enabled,
        transient=True,
    )
