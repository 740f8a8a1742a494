"""What the code knows about one network, in one record (:class:`NetworkSpec`): how to build it, how to recognise its
weights, its value range, the precisions it runs in, its reference input, its memory cost and its paper's parameter
count. Each network's module declares its spec; :mod:`srgan_lib.models` registers them, and everything else asks."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import nn


@dataclass(frozen=True)
class NetworkSpec:
    """One registered network (a generator or a discriminator)."""

    name: str  # the registry key (params.yaml's generator / discriminator)
    display: str  # how tables and logs name it
    factory: Callable[..., nn.Module]  # built with the paper configuration unless options say otherwise
    role: Literal["generator", "discriminator"]
    input_size: tuple[int, int]  # the reference input of `srgan models summary` (a discriminator's: its HR crop)
    paper_parameters: int | None = None  # the paper configuration's count (tests/models/test_models.py asserts it)
    # generators only: the output's value range (SRGAN's tanh [-1, 1], ESRGAN/BasicSR [0, 1]; inputs are [0, 1]),
    # the autocast precisions it runs correctly in, its constructor options read from a state dict (None: not this
    # network), and the widest per-pixel activation (channels) of a forward pass for given options (the tile rule)
    output_range: tuple[float, float] | None = None
    precisions: tuple[str, ...] = ()
    detect: Callable[[dict[str, torch.Tensor]], dict[str, Any] | None] | None = None
    widest: Callable[[dict[str, Any]], int] | None = None

    def build(self, **options: Any) -> nn.Module:
        """The network with ``options`` over the paper configuration (e.g. ``num_block=4``)."""
        return self.factory(**options)
