"""PSNR and SSIM with the SR papers' conventions, in NumPy and batched torch.

Conventions (docs/evaluation.md, "Conventions"): inputs are RGB on the 0-255 scale (uint8 or float); ``y`` means the
luma of ITU-R BT.601 YCbCr with 16-235 range, ``Y = 16 + (65.481 R + 128.553 G + 24.966 B) / 255``, in float with
no rounding;
``shave`` pixels are removed at every border before measuring (the papers shave ``scale``). SSIM uses an 11x11
Gaussian window (sigma 1.5), K1 = 0.01, K2 = 0.03, L = 255, and averages over the valid region only; RGB SSIM is the
mean of the three per-channel SSIMs. ``psnr_rgb`` / ``ssim_rgb`` are what BasicSR's model zoo reports, ``psnr_y`` /
``ssim_y`` what the papers' tables report: every result in this project says which.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage

Space = Literal["y", "rgb"]
Y_WEIGHTS = (65.481, 128.553, 24.966)
SSIM_SIGMA = 1.5
SSIM_WIN = 11
C1 = (0.01 * 255) ** 2
C2 = (0.03 * 255) ** 2


def rgb_to_y(img: np.ndarray) -> np.ndarray:
    """BT.601 luma (16-235) of an HxWx3 RGB array on the 0-255 scale, as float64, not rounded."""
    img = np.asarray(img, dtype=np.float64)
    if img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"rgb_to_y expects an HxWx3 array, got shape {img.shape}")
    return 16.0 + img @ np.asarray(Y_WEIGHTS) / 255.0


def matlab_luma(img: np.ndarray, shave: int = 0) -> np.ndarray:
    """MATLAB ``rgb2ycbcr`` luma of a uint8 RGB image, rounded as MATLAB does for uint8 (a greyscale HxW array is used
    as it is), with ``shave`` pixels cut at every border: the input of NIQE and Ma's score (PIRM 2018)."""
    arr = np.asarray(img)
    if arr.ndim == 3:
        y = np.floor(rgb_to_y(arr) + 0.5)
    elif arr.ndim == 2:
        y = arr.astype(np.float64)
    else:
        raise ValueError(f"expected an HxW or HxWx3 image, got shape {arr.shape}")
    return y[shave:-shave, shave:-shave] if shave else y


def _prepare(img: np.ndarray, space: Space, shave: int) -> np.ndarray:
    arr = np.asarray(img)
    if arr.ndim == 2:
        arr = np.repeat(arr[:, :, None], 3, axis=2)
    out = rgb_to_y(arr)[:, :, None] if space == "y" else arr.astype(np.float64)
    if shave:
        out = out[shave:-shave, shave:-shave]
    return out


def _check_pair(sr: np.ndarray, hr: np.ndarray) -> None:
    if np.shape(sr) != np.shape(hr):
        raise ValueError(f"images differ in shape: {np.shape(sr)} vs {np.shape(hr)}")


def _mse(sr: np.ndarray, hr: np.ndarray, space: Space, shave: int) -> float:
    _check_pair(sr, hr)
    return float(np.mean((_prepare(sr, space, shave) - _prepare(hr, space, shave)) ** 2))


def psnr(sr: np.ndarray, hr: np.ndarray, *, space: Space = "y", shave: int = 0) -> float:
    """Peak signal-to-noise ratio in dB (peak 255) between two RGB images on the 0-255 scale."""
    mse = _mse(sr, hr, space, shave)
    return float("inf") if mse == 0 else 10.0 * np.log10(255.0**2 / mse)


def rmse(sr: np.ndarray, hr: np.ndarray, *, space: Space = "y", shave: int = 0) -> float:
    """Root-mean-square error (0-255 scale): the distortion axis of the PIRM perception-distortion plane."""
    return float(np.sqrt(_mse(sr, hr, space, shave)))


def colour_cast(sr: np.ndarray, hr: np.ndarray, *, shave: int = 0) -> tuple[float, float, float]:
    """Mean of ``SR - HR`` per RGB channel (grey levels, 0-255 scale): a colour cast or brightness shift that PSNR
    folds into one number (a broken GAN's tint shows here first); 0 for an unbiased method."""
    _check_pair(sr, hr)
    diff = _prepare(sr, "rgb", shave) - _prepare(hr, "rgb", shave)
    r, g, b = diff.reshape(-1, 3).mean(axis=0)
    return float(r), float(g), float(b)


@lru_cache(maxsize=4)
def gaussian_1d(size: int = SSIM_WIN, sigma: float = SSIM_SIGMA) -> np.ndarray:
    """Normalised 1-D Gaussian of ``size`` taps."""
    x = np.arange(size, dtype=np.float64) - (size - 1) / 2.0
    g = np.exp(-(x**2) / (2.0 * sigma**2))
    g /= g.sum()
    g.setflags(write=False)
    return g


def gaussian_window(size: int = SSIM_WIN, sigma: float = SSIM_SIGMA) -> np.ndarray:
    """Normalised 2-D Gaussian window (outer product of the 1-D one)."""
    g = gaussian_1d(size, sigma)
    return np.outer(g, g)


def ssim_map(a: np.ndarray, b: np.ndarray, c1: float = C1, c2: float = C2) -> np.ndarray:
    """SSIM map over the valid region of two 2-D float64 arrays (constants of a 0-255 range unless given)."""
    g = gaussian_1d()  # separable filtering

    def filt(x: np.ndarray) -> np.ndarray:
        y = ndimage.correlate1d(x, g, axis=0, mode="constant")
        y = ndimage.correlate1d(y, g, axis=1, mode="constant")
        r = SSIM_WIN // 2
        return y[r:-r, r:-r]  # valid region only

    mu_a, mu_b = filt(a), filt(b)
    var_a = filt(a * a) - mu_a**2
    var_b = filt(b * b) - mu_b**2
    cov = filt(a * b) - mu_a * mu_b
    num = (2 * mu_a * mu_b + c1) * (2 * cov + c2)
    den = (mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2)
    return num / den


def ssim(sr: np.ndarray, hr: np.ndarray, *, space: Space = "y", shave: int = 0) -> float:
    """Structural similarity (Wang et al. 2004) with the papers' window, constants and valid-region averaging."""
    _check_pair(sr, hr)
    a, b = _prepare(sr, space, shave), _prepare(hr, space, shave)
    if min(a.shape[:2]) < SSIM_WIN:
        raise ValueError(f"SSIM needs images of at least {SSIM_WIN}x{SSIM_WIN} after shaving, got {a.shape[:2]}")
    return float(np.mean([ssim_map(a[:, :, c], b[:, :, c]).mean() for c in range(a.shape[2])]))


# ----------------------------------------------------------------------------------------------------------------------
# Batched torch versions, for validation during training (tensors N x 3 x H x W on the 0-1 or 0-255 scale).


def rgb_to_y_torch(x: torch.Tensor, *, data_range: float = 1.0) -> torch.Tensor:
    """BT.601 luma (16-235 scale) of an N x 3 x H x W RGB tensor whose values span ``[0, data_range]``."""
    w = torch.tensor(Y_WEIGHTS, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return 16.0 + (x * (255.0 / data_range) * w).sum(dim=1, keepdim=True) / 255.0


def _prepare_pair_torch(
    sr: torch.Tensor, hr: torch.Tensor, space: Space, shave: int, data_range: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Both batches in float64 on the 0-255 scale (Y or RGB), border shaved."""
    if sr.shape != hr.shape:
        raise ValueError(f"batches differ in shape: {tuple(sr.shape)} vs {tuple(hr.shape)}")

    def prep(x: torch.Tensor) -> torch.Tensor:
        x = x.to(torch.float64)
        x = rgb_to_y_torch(x, data_range=data_range) if space == "y" else x * (255.0 / data_range)
        return x[..., shave:-shave, shave:-shave] if shave else x

    return prep(sr), prep(hr)


def psnr_torch(
    sr: torch.Tensor, hr: torch.Tensor, *, space: Space = "y", shave: int = 0, data_range: float = 1.0
) -> torch.Tensor:
    """Per-image PSNR (dB) of two N x 3 x H x W batches; same definition as :func:`psnr` (values not quantised)."""
    a, b = _prepare_pair_torch(sr, hr, space, shave, data_range)
    mse = ((a - b) ** 2).flatten(1).mean(dim=1)
    return 10.0 * torch.log10(255.0**2 / mse)


def ssim_torch(
    sr: torch.Tensor, hr: torch.Tensor, *, space: Space = "y", shave: int = 0, data_range: float = 1.0
) -> torch.Tensor:
    """Per-image SSIM of two N x 3 x H x W batches; same definition as :func:`ssim`."""
    a, b = _prepare_pair_torch(sr, hr, space, shave, data_range)
    c = a.shape[1]
    win = torch.from_numpy(gaussian_window()).to(a).expand(c, 1, SSIM_WIN, SSIM_WIN)

    def filt(x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, win, groups=c)  # no padding: valid region

    mu_a, mu_b = filt(a), filt(b)
    var_a = filt(a * a) - mu_a**2
    var_b = filt(b * b) - mu_b**2
    cov = filt(a * b) - mu_a * mu_b
    smap = ((2 * mu_a * mu_b + C1) * (2 * cov + C2)) / ((mu_a**2 + mu_b**2 + C1) * (var_a + var_b + C2))
    return smap.flatten(2).mean(dim=2).mean(dim=1)
