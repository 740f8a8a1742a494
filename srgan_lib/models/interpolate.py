"""ESRGAN's network interpolation: ``theta = (1 - alpha) * theta_PSNR + alpha * theta_GAN`` (ESRGAN section 3.4).

Both checkpoints must hold the same architecture (same keys, same shapes); anything else is refused with the keys
that differ. Integer buffers (BatchNorm's ``num_batches_tracked``) are taken from the GAN network.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from srgan_lib.io.weights import save_generator_safetensors, save_torch
from srgan_lib.models import load_generator_state


class ArchitectureMismatch(ValueError):
    """The two checkpoints are not the same network."""


def interpolate_states(
    psnr: dict[str, torch.Tensor], gan: dict[str, torch.Tensor], alpha: float
) -> dict[str, torch.Tensor]:
    """The interpolated state dict; ``alpha`` 0 gives the PSNR network, 1 the GAN network."""
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    only_psnr, only_gan = sorted(set(psnr) - set(gan)), sorted(set(gan) - set(psnr))
    if only_psnr or only_gan:
        raise ArchitectureMismatch(
            f"the checkpoints are different networks: keys only in the PSNR one {only_psnr[:5]}, "
            f"only in the GAN one {only_gan[:5]}"
        )
    shapes = [f"{k}: {tuple(psnr[k].shape)} vs {tuple(gan[k].shape)}" for k in psnr if psnr[k].shape != gan[k].shape]
    if shapes:
        raise ArchitectureMismatch(f"the checkpoints have different shapes ({'; '.join(shapes[:3])})")
    out = {}
    for key, a in psnr.items():
        b = gan[key]
        out[key] = torch.lerp(a.float(), b.float(), alpha).to(a.dtype) if a.is_floating_point() else b.clone()
    return out


def interpolate_files(psnr_path: str | Path, gan_path: str | Path, alphas: Sequence[float],
                      out_dir: str | Path, prefer_ema: bool = True, fmt: str = "pth") -> list[Path]:
    """Write ``<out_dir>/interp_<alpha>.pth`` (``{'params': ...}``; ``fmt`` safetensors: ``.safetensors``) for each
    alpha; return the paths."""
    if fmt not in ("pth", "safetensors"):
        raise ValueError(f"format must be pth or safetensors, got {fmt!r}")
    psnr, gan = load_generator_state(psnr_path, prefer_ema), load_generator_state(gan_path, prefer_ema)
    paths = []
    for alpha in alphas:
        checkpoint = {"params": interpolate_states(psnr, gan, alpha),
                      "meta": {"alpha": alpha, "psnr": str(psnr_path), "gan": str(gan_path)}}
        path = Path(out_dir) / f"interp_{alpha:.2f}.{fmt}"
        if fmt == "safetensors":
            save_generator_safetensors(checkpoint, path)
        else:
            save_torch({**checkpoint, "alpha": alpha}, path)
        paths.append(path)
    return paths
