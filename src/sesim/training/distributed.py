"""Several processes through ``torchrun``: process group, per-rank device, the few collectives.

A run started by ``torchrun --nproc_per_node N sesim train ...`` sees ``WORLD_SIZE``, ``RANK``
and ``LOCAL_RANK`` in its environment; a plain ``sesim train`` is one process and touches no
``torch.distributed`` at all. ``train.batch_size`` is the global batch: each of the N processes
takes ``batch_size / N`` of the same samples a single process would, so a run means the same
thing (and resumes) whatever the number of processes.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel


@dataclass
class Processes:
    """This process's place among the training processes (one process: rank 0 of 1)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    _cpu_group: object = field(default=None, repr=False)

    @property
    def main(self) -> bool:
        """Rank 0 writes logs, samples and checkpoints."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def wrap(self, module: nn.Module, device: torch.device) -> nn.Module:
        """``module`` under DistributedDataParallel (gradients averaged over processes), or as is."""
        if not self.distributed:
            return module
        ids = [device.index] if device.type == "cuda" else None
        # No buffer in SeSim's trained networks changes during training: nothing to broadcast.
        return DistributedDataParallel(module, device_ids=ids, broadcast_buffers=False)

    def all_true(self, flag: Tensor) -> bool:
        """Whether ``flag`` (a 0-d bool tensor) holds on every process: they must agree to skip."""
        if not self.distributed:
            return bool(flag)
        agreed = flag.to(torch.int32)
        dist.all_reduce(agreed, op=dist.ReduceOp.MIN)
        return bool(agreed)

    def any_rank(self, flag: Tensor) -> Tensor:
        """``flag`` (a 0-d device tensor) as its maximum over processes, all-reduced on the
        device: no host sync (the non-finite guard of fused Adam)."""
        if not self.distributed:
            return flag
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        return flag

    def any_flag(self, flag: bool) -> bool:
        """Whether any process raised ``flag`` (stop requests), over a CPU group: no GPU sync."""
        if not self.distributed:
            return flag
        value = torch.tensor([int(flag)])
        dist.all_reduce(value, op=dist.ReduceOp.MAX, group=self._cpu_group)
        return bool(value)

    def any_flags(self, *flags: bool) -> tuple[bool, ...]:
        """:meth:`any_flag` of several flags in one all-reduce."""
        if not self.distributed:
            return tuple(bool(flag) for flag in flags)
        values = torch.tensor([int(flag) for flag in flags])
        dist.all_reduce(values, op=dist.ReduceOp.MAX, group=self._cpu_group)
        return tuple(bool(value) for value in values)

    def mean(self, scalars: dict[str, Tensor]) -> dict[str, Tensor]:
        """Average detached scalar tensors over processes (only when logging)."""
        if not self.distributed or not scalars:
            return scalars
        stacked = torch.stack([value.to(torch.float64) for value in scalars.values()])
        dist.all_reduce(stacked, op=dist.ReduceOp.SUM)
        return dict(zip(scalars, stacked / self.world_size, strict=True))

    def gather(self, item: object) -> list[object]:
        """Every process's ``item`` (picklable; tensors on the CPU), in rank order."""
        if not self.distributed:
            return [item]
        items: list[object] = [None] * self.world_size
        dist.all_gather_object(items, item, group=self._cpu_group)
        return items


def start(device_name: str) -> tuple[Processes, str]:
    """Join the process group when launched by ``torchrun``; returns the processes and the
    device name this process should use (``cuda:LOCAL_RANK`` for a CUDA run)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return Processes(), device_name
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    cuda = device_name.startswith("cuda") or (device_name == "auto" and torch.cuda.is_available())
    if cuda:
        # More processes than cards share them round-robin (NCCL cannot: set SESIM_DIST_BACKEND=gloo).
        index = local_rank % max(1, torch.cuda.device_count())
        torch.cuda.set_device(index)
        device_name = f"cuda:{index}"
    if not dist.is_initialized():
        dist.init_process_group(backend=os.environ.get("SESIM_DIST_BACKEND") or ("nccl" if cuda else "gloo"))
    cpu_group = dist.new_group(backend="gloo") if cuda else None
    return Processes(rank, world_size, local_rank, cpu_group), device_name


def stop(processes: Processes) -> None:
    if processes.distributed and dist.is_initialized():
        dist.destroy_process_group()


__all__ = ["Processes", "start", "stop"]
