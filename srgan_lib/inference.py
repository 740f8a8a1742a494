"""Trained generators as SR methods: read a checkpoint, recognise its architecture, super-resolve uint8 images.

The architecture and its options are read from the state dict itself (key names and tensor shapes), so any checkpoint
this project writes, BasicSR's and Real-ESRGAN's x4 RRDBNet, and the older ESRGAN layouts all load without a config.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from srgan_lib.models import OUTPUT_RANGES, build_model, load_generator_state


def infer_architecture(state: dict[str, torch.Tensor]) -> tuple[str, dict[str, Any]]:
    """(model name, constructor options) of a generator state dict; a clear error for anything else."""
    blocks = {int(m.group(1)) for k in state if (m := re.match(r"body\.(\d+)\.", k))}
    if "conv_first.weight" in state and "body.0.rdb1.conv1.weight" in state:
        return "rrdbnet", {
            "num_block": len(blocks),
            "num_feat": state["conv_first.weight"].shape[0],
            "num_grow_ch": state["body.0.rdb1.conv1.weight"].shape[0],
        }
    if "conv_first.weight" in state and "body.0.bn1.weight" in state:
        ups = {int(m.group(1)) for k in state if (m := re.match(r"upsample\.(\d+)\.", k))}
        return "srresnet", {
            "num_block": len(blocks),
            "num_feat": state["conv_first.weight"].shape[0],
            "scale": 2 ** len(ups),
        }
    sample = ", ".join(list(state)[:4])
    raise ValueError(f"not an SRResNet or RRDBNet generator state dict (keys start with {sample})")


def load_generator(path: str | Path, *, prefer_ema: bool = True, device: str | torch.device = "cpu") -> nn.Module:
    """The generator stored in ``path`` (EMA weights when present), in eval mode, with ``value_range`` set."""
    state = load_generator_state(path, prefer_ema=prefer_ema)
    name, options = infer_architecture(state)
    model = build_model(name, **options)
    model.load_state_dict(state, strict=True)
    model.value_range = OUTPUT_RANGES[name]  # type: ignore[assignment]
    model.arch = (name, options)  # type: ignore[assignment]
    return model.eval().to(device)


class GeneratorMethod:
    """An :data:`srgan_lib.evaluation.SRMethod` backed by a generator: uint8 LR -> uint8 SR (clamped, rounded).

    Inference goes through :class:`srgan_lib.upscale.Upscaler`, in fp32 unless ``precision`` says otherwise (the
    papers' tables are measured in fp32) and channels_last unless told not to, so a large test image is processed in
    tiles sized from the free memory (``tile=None``) instead of running out of memory; ``tile=0`` forces whole images.
    """

    def __init__(self, model: nn.Module, device: str | torch.device = "cpu", value_range: tuple[float, float] | None
                 = None, *, tile: int | None = None, tile_pad: int = 32, precision: str = "fp32",
                 channels_last: bool = True) -> None:
        from srgan_lib.upscale import Upscaler

        self.upscaler = Upscaler(model, device=device, tile=tile, tile_pad=tile_pad, precision=precision,
                                 value_range=value_range, channels_last=channels_last)
        self.precision, self.layout = self.upscaler.levers.precision, self.upscaler.levers.layout
        self.scale = self.upscaler.scale

    def __call__(self, lr: np.ndarray) -> np.ndarray:
        return self.upscaler.upscale_array(np.ascontiguousarray(lr, dtype=np.uint8))
