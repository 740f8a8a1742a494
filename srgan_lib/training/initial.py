"""Where a recipe's networks start: the generator from a parent's or a published checkpoint (``init_from``: ours,
BasicSR's and Real-ESRGAN's ``{'params_ema'|'params': ...}`` layouts, a bare state dict, the older ESRGAN keys), and
a GAN recipe's discriminator from a published discriminator file (``init_d_from``: Real-ESRGAN's
``RealESRGAN_x4plus_netD.pth`` layout ``{'params': ...}``, a bare state dict, or one of our training checkpoints).
Both refuse, naming the file, what does not fit the recipe's network."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from srgan_lib.io.weights import load_weights
from srgan_lib.models import infer_architecture, load_generator_state


def _fit(net: nn.Module, state: dict[str, torch.Tensor], path: Path, what: str, detected: str = "") -> None:
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
        raise ValueError(f"'{path}' does not fit {what}{detected}: {lines[1] if len(lines) > 1 else lines[0]}"[:700]
                         ) from None


def init_generator(net: nn.Module, path: Path, stage: str, generator: str, options: dict[str, Any]) -> None:
    """``net`` (the recipe's generator) loaded from ``path``, the EMA weights preferred (what a release ships)."""
    if not path.is_file():
        parent = "srresnet" if generator == "srresnet" else "rrdbnet"
        raise FileNotFoundError(
            f"'{stage}.init_from': generator checkpoint '{path}' not found; train its parent first (`srgan train "
            f"{parent}`, or `dvc repro`) or point init_from at a checkpoint (a Real-ESRGAN / BasicSR .pth works)")
    state = load_generator_state(path, prefer_ema=True)
    try:
        arch, found = infer_architecture(state)
        detected = f" (the file holds a {arch} with {found or 'the paper options'})"
    except ValueError:
        detected = ""
    _fit(net, state, path, f"'{stage}': {generator} with generator_options {options}",
         f"{detected}; generator_options must match the PSNR stage's (the parent's)")


DISCRIMINATOR_KEYS = ("params", "discriminator", "params_ema")  # published netD files | our training checkpoints


def init_discriminator(net: nn.Module, path: Path, stage: str, discriminator: str, options: dict[str, Any]) -> None:
    """``net`` (the recipe's discriminator) loaded from ``path``: ``{'params': ...}`` (Real-ESRGAN's netD files),
    ``{'discriminator': ...}`` (our training checkpoints) or a bare state dict."""
    if not path.is_file():
        raise FileNotFoundError(f"'{stage}.init_d_from': discriminator file '{path}' not found (e.g. Real-ESRGAN's "
                                "RealESRGAN_x4plus_netD.pth from its GitHub release; 'none' starts from scratch)")
    obj = load_weights(path, "discriminator checkpoint")
    if isinstance(obj, dict):
        obj = next((obj[k] for k in DISCRIMINATOR_KEYS if isinstance(obj.get(k), dict)), obj)
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ValueError(f"'{path}' holds no discriminator state dict (expected tensors, or 'params' of tensors)")
    _fit(net, obj, path, f"'{stage}': {discriminator} with discriminator_options {options}")
