"""The LR a real-world recipe trains on: Real-ESRGAN's chain applied to each batch's HR on the training device, or,
for a sample whose image brings its own LR (paired camera data), that LR with probability ``paired_prob``. Every
choice is keyed by (seed, iteration, global sample), so resume and every DDP layout see the same inputs."""

from __future__ import annotations

from dataclasses import replace

import torch

from srgan_lib.data.degradations import DegradationSettings, Draws, degrade_batch, sample_generator


def realworld_lr(hr01: torch.Tensor, stored_lr01: torch.Tensor, settings: DegradationSettings, seed: int,
                 iteration: int, samples: list[int], own: torch.Tensor | None, paired_prob: float
                 ) -> tuple[torch.Tensor, Draws]:
    """LR (B, 3, h, w) in [0, 1] and the chain's draws: synthetic, except the samples with their own LR (``own``)
    that keep it, each with probability ``paired_prob`` (its own draw, apart from the chain's; the draws' ``own_lr``
    says which did)."""
    lr, draws = degrade_batch(hr01.contiguous(), settings, seed, iteration, samples)
    if own is None:
        return lr, draws
    u = torch.stack([torch.rand((), generator=sample_generator(seed, f"{iteration}/paired", s), dtype=torch.float64)
                     for s in samples])
    keep = own.cpu() & (u < paired_prob)
    lr = torch.where(keep.view(-1, 1, 1, 1).to(lr.device), stored_lr01.to(lr), lr)
    return lr, replace(draws, own_lr=keep)
