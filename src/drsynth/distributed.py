"""torch.distributed for drsynth.train: one training process per device, started by torchrun.

    torchrun --standalone --nproc-per-node 2 -m drsynth train --data ... --out ...

torchrun (and Kubeflow Trainer's torch-distributed runtime, which runs torchrun in every node's pod) sets
WORLD_SIZE, RANK, LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR and MASTER_PORT in each process it starts.
`launch(device)` reads them, joins the process group (NCCL on CUDA, Gloo on CPU) and yields a `Distributed`
that describes this process; without WORLD_SIZE > 1 it yields the single-process one, whose helpers change
nothing, so the training loop has one code path. How the trainer uses it (torchvision references' recipe):

- one device per process: cuda:LOCAL_RANK (CPU processes share the host);
- DistributedDataParallel around the part that learns (`wrap`), under `uneven_inputs` (torch's `Join`):
  ranks read different shards, so their batch counts differ and the early finishers must not hang the others;
- each rank reads its own share of the data (drsynth.data splits shards or samples by rank and worker);
- loss/accuracy sums are all-reduced (`sum`), so every rank has the whole epoch's metrics and keeps the same
  best epoch; buffers (batch-norm statistics) are broadcast from rank 0 before evaluating (`sync_buffers`),
  so every rank evaluates exactly the model rank 0 saves;
- only rank 0 (`is_main`) writes the checkpoint, history, curve and logs.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field

import torch
import torch.distributed as dist
from torch import nn

from drsynth.errors import ConfigError

ENV_VARS = ("WORLD_SIZE", "RANK", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


@dataclass(frozen=True)
class Distributed:
    """This process's place among the training processes, and the collectives the trainer needs."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    local_world_size: int = 1
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the process that writes files and prints."""
        return self.rank == 0

    def wrap(self, module: nn.Module) -> nn.Module:
        """`module` in DistributedDataParallel (sharing its parameters) when several processes train, else itself."""
        if not self.enabled:
            return module
        device_ids = [self.device.index] if self.device.type == "cuda" else None
        return nn.parallel.DistributedDataParallel(module, device_ids=device_ids)

    def uneven_inputs(self, module: nn.Module) -> AbstractContextManager:
        """Around a training pass through `wrap(...)`: ranks that run out of batches keep answering the others'
        gradient all-reduces (torch's Join) instead of leaving them waiting."""
        if isinstance(module, nn.parallel.DistributedDataParallel):
            return module.join()
        return nullcontext()

    def sum(self, *values: torch.Tensor | float | int) -> list[torch.Tensor]:
        """Each value (number or tensor) summed over all processes in one all-reduce; float64 CPU tensors."""
        parts = [torch.as_tensor(v).detach().to("cpu", torch.float64).reshape(-1) for v in values]
        flat = torch.cat(parts)
        if self.enabled:
            on_device = flat.to(self.device)  # NCCL reduces CUDA tensors only
            dist.all_reduce(on_device, op=dist.ReduceOp.SUM)
            flat = on_device.cpu()
        out, start = [], 0
        for v, p in zip(values, parts, strict=True):
            out.append(flat[start : start + p.numel()].reshape(torch.as_tensor(v).shape))
            start += p.numel()
        return out

    def max(self, value: float) -> float:
        """The largest `value` over all processes (e.g. the slowest rank's epoch time)."""
        if not self.enabled:
            return value
        t = torch.tensor([value], dtype=torch.float64, device=self.device)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return float(t.item())

    def sync_buffers(self, module: nn.Module) -> None:
        """Copy rank 0's buffers (batch-norm running statistics) to every rank."""
        if self.enabled:
            for buf in module.buffers():
                dist.broadcast(buf, src=0)


def read_env(env: Mapping[str, str] | None = None) -> tuple[int, int, int, int]:
    """(rank, world size, local rank, local world size) from torchrun's variables; (0, 1, 0, 1) without them."""
    env = os.environ if env is None else env
    if "WORLD_SIZE" not in env:
        return 0, 1, 0, 1

    def number(name: str, default: int | None = None) -> int:
        raw = env.get(name)
        if raw is None and default is not None:
            return default
        try:
            return int(str(raw))
        except ValueError:
            raise ConfigError(
                f"{name}={raw!r} is not an integer; WORLD_SIZE is set, so drsynth expects torchrun's "
                f"variables ({', '.join(ENV_VARS)}). Launch with torchrun, or unset WORLD_SIZE for one process"
            ) from None

    world = number("WORLD_SIZE")
    if world <= 1:
        return 0, 1, 0, 1
    rank, local_rank = number("RANK"), number("LOCAL_RANK", 0)
    local_world = number("LOCAL_WORLD_SIZE", world)
    if not (0 <= rank < world and 0 <= local_rank < local_world <= world):
        raise ConfigError(
            f"inconsistent torchrun variables: RANK={rank}, WORLD_SIZE={world}, LOCAL_RANK={local_rank}, "
            f"LOCAL_WORLD_SIZE={local_world}; expected 0 <= RANK < WORLD_SIZE and 0 <= LOCAL_RANK < "
            "LOCAL_WORLD_SIZE <= WORLD_SIZE. Launch with torchrun rather than setting them by hand"
        )
    missing = [k for k in ("MASTER_ADDR", "MASTER_PORT") if not env.get(k)]
    if missing:
        raise ConfigError(
            f"WORLD_SIZE={world} but {', '.join(missing)} not set: the processes cannot find each other. "
            "Launch with torchrun (it sets them), or set MASTER_ADDR/MASTER_PORT to rank 0's address"
        )
    return rank, world, local_rank, local_world


def is_main_process(env: Mapping[str, str] | None = None) -> bool:
    """Whether this process is rank 0 (or the only one): the one that prints and exports metrics."""
    return read_env(env)[0] == 0


@contextmanager
def launch(device: torch.device, env: Mapping[str, str] | None = None) -> Iterator[Distributed]:
    """Join the process group torchrun describes (and leave it afterwards); one process: no group at all.

    `device` is the device kind the run asked for; on CUDA each process takes cuda:LOCAL_RANK.
    """
    rank, world, local_rank, local_world = read_env(env)
    if world == 1:
        yield Distributed(device=device)
        return
    if device.type == "cuda":
        visible = torch.cuda.device_count()
        if local_rank >= visible:
            raise ConfigError(
                f"process LOCAL_RANK={local_rank} needs its own GPU but CUDA sees {visible}: start at most "
                f"{visible} processes per node (torchrun --nproc-per-node, TrainJob numProcPerNode)"
            )
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    owns_group = not dist.is_initialized()
    if owns_group:
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo", rank=rank, world_size=world)
    elif (dist.get_rank(), dist.get_world_size()) != (rank, world):
        raise ConfigError(
            f"a process group is already initialised as rank {dist.get_rank()} of {dist.get_world_size()}, "
            f"but the environment says rank {rank} of {world}"
        )
    try:
        yield Distributed(rank, world, local_rank, local_world, device)
    finally:
        if owns_group:
            dist.destroy_process_group()
