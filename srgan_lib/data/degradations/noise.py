"""Per-sample Gaussian and Poisson noise (each sample's field from its own generator) and the real JPEG round trip."""

from __future__ import annotations

import warnings

import torch

from srgan_lib.data.degradations.draws import NoiseDraws

POISSON_LEVELS = 256.0  # intensity quantisation of Poisson noise: Var = scale^2 * I / 256 (I in [0, 1])


def noise_fields(x: torch.Tensor, n: NoiseDraws, gens: list[torch.Generator]) -> torch.Tensor:
    """Each sample's noise, from its own generator: Gaussian N(0, (value/255)^2) or Poisson (Poisson(I * 256) / 256
    - I) * value, so Var = value^2 I / 256; a gray sample has one field for all its channels (Poisson: on its BT.601
    luma), a colour sample one per channel."""
    b, c, h, w = x.shape
    out = []
    for i in range(b):
        if n.gaussian[i]:
            field = torch.randn((1 if n.gray[i] else c, h, w), generator=gens[i]) * (float(n.value[i]) / 255.0)
        else:
            img = x[i].detach().clamp(0, 1).cpu().float()
            base = (0.299 * img[0] + 0.587 * img[1] + 0.114 * img[2]).unsqueeze(0) if n.gray[i] else img
            field = (torch.poisson(base * POISSON_LEVELS, generator=gens[i]) / POISSON_LEVELS - base) * float(
                n.value[i])
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

        u8 = (x.detach().clamp(0, 1) * 255.0).round().to(torch.uint8).cpu()
        out = [decode_jpeg(encode_jpeg(u8[i], quality=int(quality[i]))) for i in range(u8.shape[0])]
    return torch.stack(out).to(x.device, x.dtype) / 255.0
