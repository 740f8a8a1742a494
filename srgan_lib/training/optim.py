"""Learning-rate schedules and the EMA of generator weights: small, stateless where possible, so resume is exact."""

from __future__ import annotations

import copy
import math
from collections.abc import Iterable, Sequence

import torch
from torch import nn


def multistep_lr(base_lr: float, milestones: Sequence[int], gamma: float, iteration: int) -> float:
    """The learning rate of update number ``iteration`` (1-based): ``base * gamma^k``, k = milestones passed.

    SRGAN: 1e-4 for iterations 1..1e5, 1e-5 after (milestones [1e5], gamma 0.1). A pure function of the iteration,
    so a resumed run needs no scheduler state.
    """
    return base_lr * gamma ** sum(1 for m in milestones if iteration > m)


SCHEDULES = ("multistep", "cosine")


def learning_rate(base_lr: float, iteration: int, *, schedule: str, iterations: int, warmup: int = 0,
                  milestones: Sequence[int] = (), gamma: float = 1.0, lr_min: float = 0.0) -> float:
    """The learning rate of update ``iteration`` (1-based): a linear warm-up over the first ``warmup`` updates (from
    ``base / warmup`` to ``base``), then ``multistep`` (the papers': ``base * gamma^k``, k = milestones passed) or
    ``cosine`` (half a cosine from ``base`` to ``lr_min`` at ``iterations``, as BasicSR's CosineAnnealing).

    A pure function of the iteration, so a resumed run needs no scheduler state. With ``cosine`` the whole schedule
    depends on ``iterations``: changing it changes the run (its trajectory key says so: srgan_lib.training.trajectory).
    """
    if warmup and iteration <= warmup:
        return base_lr * iteration / warmup
    if schedule == "multistep":
        return multistep_lr(base_lr, milestones, gamma, iteration)
    if schedule == "cosine":
        t = min(max(iteration - warmup, 0) / max(iterations - warmup, 1), 1.0)
        return lr_min + (base_lr - lr_min) * 0.5 * (1.0 + math.cos(math.pi * t))
    raise ValueError(f"unknown schedule {schedule!r}; choose one of {', '.join(SCHEDULES)}")


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Set every parameter group's learning rate."""
    for group in optimizer.param_groups:
        group["lr"] = lr


class EMA:
    """Exponential moving average of a model's parameters: ``ema = decay * ema + (1 - decay) * param``.

    Buffers (BatchNorm statistics) are copied, not averaged. ``foreach``: one fused ``torch._foreach_lerp_`` over all
    parameters per update (a few kernels); otherwise a Python loop with one ``lerp_`` per parameter tensor (hundreds
    of small kernels for RRDBNet), the same arithmetic.
    """

    def __init__(self, model: nn.Module, decay: float, *, foreach: bool = True) -> None:
        self.decay, self.foreach = decay, foreach
        self.model = copy.deepcopy(model).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        ema_params = list(self.model.parameters())
        params = [p.detach() for p in model.parameters()]
        if self.foreach:
            torch._foreach_lerp_(ema_params, params, 1.0 - self.decay)
        else:
            for e, p in zip(ema_params, params, strict=True):
                e.lerp_(p, 1.0 - self.decay)
        for b_ema, b in zip(self.model.buffers(), model.buffers(), strict=True):
            b_ema.copy_(b)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return self.model.state_dict()

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.model.load_state_dict(state, strict=True)


def adam(params: Iterable[nn.Parameter], lr: float, betas: tuple[float, float], *, fused: bool) -> torch.optim.Adam:
    """Adam; ``fused`` asks for the single-kernel implementation (CPU and CUDA in current PyTorch) and falls back to
    the multi-tensor ``foreach`` one where the parameters' device has no fused kernel."""
    params = list(params)
    if fused:
        try:
            return torch.optim.Adam(params, lr=lr, betas=betas, fused=True)
        except RuntimeError:
            pass
    return torch.optim.Adam(params, lr=lr, betas=betas, foreach=True)
