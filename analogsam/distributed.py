"""Data-parallel training over processes and machines: PyTorch's ``torch.distributed`` and
``DistributedDataParallel`` (DDP), launched by ``torchrun``; no scheduler of our own.

:func:`analogsam.training.train` uses this module when ``distributed=True``, or on its own under
``torchrun`` (which sets ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK``). What it decides:

- **The process group**: ``gloo`` on the CPU, ``nccl`` on CUDA with one GPU per process
  (``cuda:LOCAL_RANK``). A group the caller has initialised already is used as it is and left open.
- **The shards**: every replica trains on a fixed share of the training set for the whole run, a
  seeded permutation of the sample indices dealt out round-robin and padded to equal length by
  repeating the first samples (as ``torch.utils.data.DistributedSampler`` pads). Each epoch shuffles
  within the shard. Unlike ``DistributedSampler``, the shard does not change from epoch to epoch: SAF
  keeps each sample's logits from earlier epochs, and a replica can only have those of its own samples.
- **The batch size** is global: the samples of one optimizer step over all replicas, as in a
  single-process run, so ``lr`` and the schedule keep their meaning. Each of the N replicas takes
  ``batch_size / N`` of them; ``batch_size`` must be a multiple of N.
- **Randomness of the step** (noise injection, RWP, the adversarial attack's start, dropout): each
  replica draws from torch's generator seeded with ``seed`` and its rank, so replicas draw independent
  noise; the weights start equal (seeded alike, and DDP broadcasts rank 0's at construction).
- **BatchNorm**: plain DDP, not ``SyncBatchNorm``: a train-mode forward normalises with its own
  replica's batch statistics, and the running statistics are rank 0's (DDP broadcasts rank 0's buffers
  at every forward; :func:`broadcast_buffers` does it on demand).
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from analogsam.device import resolve_device
from analogsam.errors import AnalogsamError, InvalidParameterError

#: The environment ``torchrun`` sets in every process it starts.
TORCHRUN_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK")


class DistributedSetupError(AnalogsamError, RuntimeError):
    """Distributed training was asked for but the processes cannot form a group."""


def launched_by_torchrun() -> bool:
    """Whether this process was started by ``torchrun`` (its rank variables are set)."""
    return all(v in os.environ for v in TORCHRUN_VARIABLES)


def is_main_process() -> bool:
    """True outside distributed training and on rank 0 inside it: the process that writes and prints
    (after the group has closed, ``torchrun``'s ``RANK`` says which process this was)."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank() == 0
    return int(os.environ.get("RANK", 0)) == 0


@dataclass
class Replicas:
    """This process's place in the group: ``rank`` of ``world_size``, computing on ``device``."""

    rank: int
    world_size: int
    device: torch.device
    backend: str
    owns_group: bool  # True when :func:`join` created the group (and :meth:`close` ends it)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def close(self) -> None:
        if self.owns_group and dist.is_initialized():
            # Rank 0 hosts the group's store: leaving before the others are done aborts them.
            dist.barrier()
            dist.destroy_process_group()

    def describe(self, batch_size: int) -> dict:
        """What a run's config records about the group."""
        return {
            "world_size": self.world_size,
            "backend": self.backend,
            "batch_size_per_replica": per_replica_batch(batch_size, self.world_size),
        }


def join(device: str | torch.device | None) -> Replicas:
    """Join (or, under ``torchrun``, create) the process group and pick this process's device.

    ``device`` ``"auto"``/``"cuda"`` under several processes means ``cuda:LOCAL_RANK``; the backend is
    ``nccl`` on CUDA and ``gloo`` on the CPU.
    """
    if not dist.is_available():
        raise DistributedSetupError(
            "distributed training: this torch build has no torch.distributed; install "
            "a build with it or train without distributed=True"
        )
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    resolved = resolve_device(device)
    if resolved.type == "cuda":
        resolved = torch.device("cuda", local_rank if resolved.index is None else resolved.index)
        resolved = resolve_device(resolved)  # a LOCAL_RANK beyond the GPUs says so
        torch.cuda.set_device(resolved)
    owns = not dist.is_initialized()
    if owns:
        missing = [v for v in (*TORCHRUN_VARIABLES, "MASTER_ADDR", "MASTER_PORT") if v not in os.environ]
        if missing:
            raise DistributedSetupError(
                f"distributed training: environment variable(s) {', '.join(missing)} not set; launch with "
                "`torchrun --nproc-per-node N -m analogsam train ...` or call "
                "torch.distributed.init_process_group first"
            )
        dist.init_process_group("nccl" if resolved.type == "cuda" else "gloo")
    backend = str(dist.get_backend())
    if resolved.type == "cuda" and backend == "gloo":
        raise DistributedSetupError(
            "distributed training on cuda in a gloo process group: initialise the "
            "group with backend 'nccl' or train with --device cpu"
        )
    return Replicas(dist.get_rank(), dist.get_world_size(), resolved, backend, owns)


def per_replica_batch(batch_size: int, world_size: int) -> int:
    """Each replica's share of the global ``batch_size``."""
    if batch_size % world_size:
        raise InvalidParameterError(
            f"batch_size {batch_size} is the global batch of one step and must split evenly over the "
            f"{world_size} processes; pass a multiple of {world_size}, e.g. {world_size * max(1, batch_size // world_size)}"
        )
    return batch_size // world_size


def shard_indices(num_samples: int, rank: int, world_size: int, seed: int) -> torch.Tensor:
    """Replica ``rank``'s fixed share of ``num_samples`` training samples (dataset indices).

    A seeded permutation, padded to a multiple of ``world_size`` by repeating its first samples, dealt
    out round-robin: every shard has ``ceil(num_samples / world_size)`` indices, the shards together
    cover every sample, and only padding repeats one.
    """
    order = torch.randperm(num_samples, generator=torch.Generator().manual_seed(seed))
    per_shard = math.ceil(num_samples / world_size)
    padded = torch.cat([order, order[: per_shard * world_size - num_samples]])
    return padded[rank::world_size].clone()


def shard_batches(
    dataset, shard: torch.Tensor, batch_size: int, *, seed: int
) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """``(inputs, targets, dataset indices)`` batches of ``shard``, shuffled with ``seed``."""
    order = shard[torch.randperm(len(shard), generator=torch.Generator().manual_seed(seed))]
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        yield dataset.x[idx], dataset.y[idx], idx


def wrap(model: nn.Module, replicas: Replicas) -> nn.Module:
    """``model`` in a ``DistributedDataParallel`` (parameters and buffers broadcast from rank 0 now,
    gradients averaged in every backward outside ``no_sync()``, buffers broadcast at every forward)."""
    from torch.nn.parallel import DistributedDataParallel

    device_ids = [replicas.device] if replicas.device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=device_ids, broadcast_buffers=True)


def sum_over_replicas(values: list[float]) -> list[float]:
    """Element-wise sums of ``values`` over every replica (one all-reduce, in float64)."""
    if not (dist.is_available() and dist.is_initialized()):
        return list(values)
    device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else None
    tensor = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(tensor)
    return tensor.tolist()


def share_from_main(obj):
    """``obj`` as rank 0 has it, on every replica (a broadcast of one picklable object)."""
    if not (dist.is_available() and dist.is_initialized()):
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


@torch.no_grad()
def broadcast_buffers(module: nn.Module) -> None:
    """Overwrite every replica's buffers (BatchNorm running statistics...) with rank 0's: one
    broadcast per dtype and device, not one per buffer (this runs at every MESA step)."""
    if not (dist.is_available() and dist.is_initialized()):
        return
    groups: dict[tuple, list[torch.Tensor]] = {}
    for buffer in module.buffers():
        groups.setdefault((buffer.dtype, buffer.device), []).append(buffer)
    for buffers in groups.values():
        flat = torch.cat([b.reshape(-1) for b in buffers])
        dist.broadcast(flat, src=0)
        for buffer, value in zip(buffers, flat.split([b.numel() for b in buffers])):
            buffer.copy_(value.view_as(buffer))


def seed_replica(seed: int, rank: int) -> None:
    """Seed torch's generators for this replica's own draws (``seed`` and ``rank`` combined, so no two
    replicas draw the same noise)."""
    torch.manual_seed(seed * 1_000_003 + 7919 * (rank + 1))
