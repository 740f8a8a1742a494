"""The second-order chain: blur, resize, noise, JPEG, twice, then [resize + sinc] and JPEG in the drawn order."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from srgan_lib.data.degradations.draws import Draws, draw
from srgan_lib.data.degradations.kernels import filter_batch, kernels
from srgan_lib.data.degradations.noise import jpeg, noise_fields, quantize
from srgan_lib.data.degradations.settings import DegradationError, DegradationSettings


def _interp(x: torch.Tensor, size: tuple[int, int], mode: str) -> torch.Tensor:
    size = (max(1, size[0]), max(1, size[1]))
    return F.interpolate(x, size=size, mode=mode, **({} if mode == "area" else {"align_corners": False}))


def apply(hr: torch.Tensor, s: DegradationSettings, d: Draws, gens: list[torch.Generator]) -> torch.Tensor:
    """HR (B, 3, H, W) in [0, 1] through the second-order chain with the draws ``d``: LR (B, 3, H/scale, W/scale),
    8-bit values. Blur, noise and JPEG per sample; each resize one call for the batch."""
    h, w = hr.shape[-2:]
    lr_hw = (h // s.scale, w // s.scale)
    x = filter_batch(hr, kernels(d.blur1))
    x = _interp(x, (int(h * d.resize1[0]), int(w * d.resize1[0])), d.resize1[1])
    x = jpeg(x + noise_fields(x, d.noise1, gens), d.jpeg1)
    if bool((d.blur2.family != 4).any()):
        x = filter_batch(x, kernels(d.blur2))
    x = _interp(x, (int(lr_hw[0] * d.resize2[0]), int(lr_hw[1] * d.resize2[0])), d.resize2[1])  # relative to LR
    x = x + noise_fields(x, d.noise2, gens)
    sinc = kernels(d.final_sinc) if bool((d.final_sinc.family != 4).any()) else None

    def resize_sinc(y: torch.Tensor) -> torch.Tensor:
        y = _interp(y, lr_hw, d.final_mode)
        return y if sinc is None else filter_batch(y, sinc)

    x = jpeg(resize_sinc(x), d.jpeg2) if d.sinc_first else resize_sinc(jpeg(x, d.jpeg2))
    return quantize(x)


def degrade_batch(hr: torch.Tensor, s: DegradationSettings, seed: int, iteration: int | str,
                  samples: list[int] | None = None) -> tuple[torch.Tensor, Draws]:
    """HR (B, 3, H, W) in [0, 1] -> LR (B, 3, H/scale, W/scale) in [0, 1] (8-bit values) and the draws. Sample i's
    degradation depends only on (seed, iteration, samples[i]) and the batch-level draws of (seed, iteration)
    (default samples: 0..B-1; DDP ranks pass their global indices)."""
    samples = list(range(hr.shape[0])) if samples is None else list(samples)
    if len(samples) != hr.shape[0]:
        raise DegradationError(f"{len(samples)} sample indices for a batch of {hr.shape[0]}")
    d, gens = draw(s, seed, iteration, samples)
    return apply(hr, s, d, gens), d


