"""Unsharp-masked targets (Real-ESRGAN's USMSharp)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def usm_sharp(x: torch.Tensor, weight: float = 0.5, radius: int = 50, threshold: float = 10.0) -> torch.Tensor:
    """Unsharp-masked targets (Real-ESRGAN's USMSharp): img + weight (img - blur) where |img - blur| * 255 >
    threshold, blended through a blurred mask; radius 50 -> a 101-tap Gaussian with OpenCV's sigma for that size."""
    size = 2 * radius + 1
    sigma = 0.3 * ((size - 1) * 0.5 - 1) + 0.8
    r = torch.arange(size, dtype=torch.float64) - radius
    k1 = torch.exp(-0.5 * (r / sigma) ** 2)
    k1 = (k1 / k1.sum()).to(x)

    def blur(y: torch.Tensor) -> torch.Tensor:
        c = y.shape[1]
        pad = min(radius, y.shape[-1] - 1, y.shape[-2] - 1)
        k = k1[radius - pad:radius + pad + 1]
        k = k / k.sum()
        y = F.conv2d(F.pad(y, (pad, pad, 0, 0), mode="reflect"), k.view(1, 1, 1, -1).repeat(c, 1, 1, 1), groups=c)
        return F.conv2d(F.pad(y, (0, 0, pad, pad), mode="reflect"), k.view(1, 1, -1, 1).repeat(c, 1, 1, 1),
                        groups=c)

    residual = x - blur(x)
    mask = (residual.abs() * 255 > threshold).to(x)
    soft = blur(mask)
    sharp = (x + weight * residual).clamp(0, 1)
    return soft * sharp + (1 - soft) * x
