"""Per-sample Gaussian and Poisson noise (each sample's field from its own generator) and the real JPEG round trip."""

from __future__ import annotations

import math
import warnings

import torch

from srgan_lib.data.degradations.draws import NoiseDraws

GRAY = (0.2989, 0.587, 0.114)  # torchvision's rgb_to_grayscale, which the published chain uses


def to_uint8(x: torch.Tensor) -> torch.Tensor:
    """An image in [0, 1] (any shape) as 8-bit integers: clamped, rounded to nearest."""
    return (x.detach().clamp(0, 1) * 255.0).round().to(torch.uint8)


def quantize(x: torch.Tensor) -> torch.Tensor:
    """``x`` in [0, 1] with 8-bit values (clamped and rounded), kept in its dtype: what a saved image would hold."""
    return (x.clamp(0, 1) * 255.0).round() / 255.0


def poisson_levels(img: torch.Tensor) -> float:
    """The photon-count scale of Poisson noise on ``img`` (8-bit values in [0, 1]), as the published chain sets it:
    2^ceil(log2(number of distinct values)): 256 for most photographs, fewer for flat crops (stronger noise)."""
    return float(2 ** math.ceil(math.log2(max(int(torch.unique(img).numel()), 1))))


def noise_fields(x: torch.Tensor, n: NoiseDraws, gens: list[torch.Generator]) -> torch.Tensor:
    """Each sample's noise, from its own generator: Gaussian N(0, (value/255)^2), or Poisson on the image rounded to
    8 bits, (Poisson(I L) / L - I) * value with L = :func:`poisson_levels` (Var = value^2 I / L), as BasicSR's
    ``generate_poisson_noise_pt``; a gray sample has one field for all its channels (Poisson: on its luma), a colour
    sample one per channel."""
    b, c, h, w = x.shape
    out = []
    for i in range(b):
        if n.gaussian[i]:
            field = torch.randn((1 if n.gray[i] else c, h, w), generator=gens[i]) * (float(n.value[i]) / 255.0)
        else:
            img = x[i].detach().cpu().float()
            base = quantize(sum(w * img[k] for k, w in enumerate(GRAY)).unsqueeze(0) if n.gray[i] else img)
            levels = poisson_levels(base)
            field = (torch.poisson(base * levels, generator=gens[i]) / levels - base) * float(n.value[i])
        out.append(field.expand(c, h, w))
    return torch.stack(out).to(x)


def gaussian_noise(x: torch.Tensor, sigma: torch.Tensor, gray: torch.Tensor,
                   gens: list[torch.Generator]) -> torch.Tensor:
    """``x`` plus Gaussian noise, ``sigma`` per sample on the 0-255 scale (:func:`noise_fields`)."""
    return x + noise_fields(x, NoiseDraws(torch.ones_like(gray, dtype=torch.bool), sigma, gray), gens)


def poisson_noise(x: torch.Tensor, scale: torch.Tensor, gray: torch.Tensor,
                  gens: list[torch.Generator]) -> torch.Tensor:
    """``x`` plus Poisson noise, ``scale`` per sample (:func:`noise_fields`)."""
    return x + noise_fields(x, NoiseDraws(torch.zeros_like(gray, dtype=torch.bool), scale, gray), gens)


def jpeg(x: torch.Tensor, quality: torch.Tensor | list[int]) -> torch.Tensor:
    """A real JPEG round trip per sample (libjpeg through torchvision.io on CPU; 4:2:0 chroma as Pillow's default),
    at its own quality: the codec's rounding and blocks, not an approximation of them."""

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # torchvision.io's codecs point to TorchCodec
        from torchvision.io import decode_jpeg, encode_jpeg

        u8 = to_uint8(x).cpu()
        out = [decode_jpeg(encode_jpeg(u8[i], quality=int(quality[i]))) for i in range(u8.shape[0])]
    return torch.stack(out).to(x.device, x.dtype) / 255.0
