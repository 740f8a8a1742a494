"""Distributed training under ``torchrun``: this process's place in the job, and joining it (NCCL on GPUs, gloo on
CPU). A global batch is split over the processes (:mod:`srgan_lib.training.data`); see
:mod:`srgan_lib.training.trainer` for what matches one process.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist


@dataclass
class Dist:
    """This process's place in a (possibly single-process) job."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.world_size > 1:
            dist.barrier()

    def broadcast_checkpoint(self, ckpt: dict[str, Any] | None, device: torch.device) -> dict[str, Any] | None:
        """Rank 0's checkpoint (or None) on every rank, so the hosts of a multi-node job need no shared ``train.out``:
        sent as ``torch.save`` bytes and read back with ``weights_only=True``, like a checkpoint file."""
        if self.world_size <= 1:
            return ckpt
        on = device if dist.get_backend() == "nccl" else torch.device("cpu")
        payload = torch.empty(0, dtype=torch.uint8)
        if self.main and ckpt is not None:
            buf = io.BytesIO()
            torch.save(ckpt, buf)
            payload = torch.frombuffer(bytearray(buf.getvalue()), dtype=torch.uint8)
        size = torch.tensor([payload.numel()], dtype=torch.int64, device=on)
        dist.broadcast(size, 0)
        if int(size.item()) == 0:
            return None
        data = payload.to(on) if self.main else torch.empty(int(size.item()), dtype=torch.uint8, device=on)
        dist.broadcast(data, 0)
        if self.main:
            return ckpt
        return torch.load(io.BytesIO(data.cpu().numpy().tobytes()), map_location="cpu", weights_only=True)


def init_distributed(device: str, timeout_s: float = 600) -> Dist:
    """Join the ``torchrun`` job described by the environment (WORLD_SIZE > 1), or run single-process. A collective
    that waits longer than ``timeout_s`` (``train.dist_timeout``: a peer died) fails instead of hanging."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.startswith("cuda") else "gloo",
                                timeout=timedelta(seconds=timeout_s))
    return Dist(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))
