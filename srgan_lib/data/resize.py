"""Image resizing for SR data: MATLAB-compatible bicubic ``imresize`` and Pillow's bicubic.

The SR literature's LR images are MATLAB ``imresize(HR, 1/4, 'bicubic')``: a cubic kernel with a = -0.5, widened by
1/scale when downsampling (antialiasing), out-of-range indices clamped to the edge (MATLAB's ``contributions``
"replicates end-points") and, for uint8 input, rounding to uint8 after each one-dimensional pass. With exactly these
rules the distributed ``LR_bicubic/X4`` files of Set5 and Set14 are reproduced bit for bit
(``tests/data/test_resize.py``).
MATLAB R2021a, which calibrates NIQE, mirrors at the border instead (``padding="symmetric"``, also BasicSR's port);
that differs from the distributed files by up to 10 grey levels within 2 pixels of the border. Pillow's BICUBIC (the
PyTorch tutorial's choice) is close but not the same, so both kernels are offered and MATLAB's is the default.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Literal

import numpy as np
from PIL import Image

Kernel = Literal["matlab", "pil"]
KERNELS: tuple[str, ...] = ("matlab", "pil")
Padding = Literal["replicate", "symmetric"]


def cubic(x: np.ndarray) -> np.ndarray:
    """Keys' cubic convolution kernel with a = -0.5 (MATLAB's ``cubic``)."""
    ax = np.abs(x)
    ax2, ax3 = ax * ax, ax * ax * ax
    inner = (1.5 * ax3 - 2.5 * ax2 + 1.0) * (ax <= 1)
    outer = (-0.5 * ax3 + 2.5 * ax2 - 4.0 * ax + 2.0) * ((ax > 1) & (ax <= 2))
    return inner + outer


@lru_cache(maxsize=64)
def resize_matrix(
    in_len: int, out_len: int, scale: float, antialiasing: bool = True, padding: Padding = "replicate"
) -> np.ndarray:
    """Dense (out_len, in_len) matrix applying MATLAB's 1-D bicubic resampling along one axis.

    Same contributions as MATLAB's ``imresize``: output pixel ``x`` (1-based) samples input coordinate
    ``u = x / scale + 0.5 * (1 - 1 / scale)``; weights are normalised to sum to one; indices beyond the border are
    clamped to the edge (``replicate``, MATLAB) or mirrored as ``[1..n, n..1]`` (``symmetric``).
    """
    kernel_width = 4.0
    if scale < 1 and antialiasing:
        kernel_width /= scale

        def weight(d: np.ndarray) -> np.ndarray:
            return scale * cubic(scale * d)
    else:
        weight = cubic
    x = np.arange(1, out_len + 1, dtype=np.float64)
    u = x / scale + 0.5 * (1.0 - 1.0 / scale)
    left = np.floor(u - kernel_width / 2.0)
    taps = int(np.ceil(kernel_width)) + 2
    idx = left[:, None] + np.arange(taps)[None, :]  # 1-based input positions
    w = weight(u[:, None] - idx)
    w /= w.sum(axis=1, keepdims=True)
    zero_based = idx.astype(np.int64) - 1
    if padding == "replicate":
        src = np.clip(zero_based, 0, in_len - 1)
    elif padding == "symmetric":
        src = np.mod(zero_based, 2 * in_len)
        src = np.where(src < in_len, src, 2 * in_len - 1 - src)
    else:
        raise ValueError(f"unknown padding {padding!r}; choose 'replicate' or 'symmetric'")
    mat = np.zeros((out_len, in_len), dtype=np.float64)
    rows = np.broadcast_to(np.arange(out_len)[:, None], src.shape)
    np.add.at(mat, (rows, src), w)
    mat.setflags(write=False)
    return mat


def _output_size(in_len: int, scale: float) -> int:
    return int(np.ceil(in_len * scale))


def round_half_up_uint8(x: np.ndarray) -> np.ndarray:
    """MATLAB's conversion of doubles to uint8: round half away from zero, saturate to [0, 255]."""
    return np.clip(np.floor(x + 0.5), 0, 255).astype(np.uint8)


def imresize(
    img: np.ndarray, scale: float, *, antialiasing: bool = True, padding: Padding = "replicate"
) -> np.ndarray:
    """Resize an HxW or HxWxC array by ``scale`` exactly as MATLAB's ``imresize(img, scale, 'bicubic')``.

    uint8 input gives uint8 output and is rounded after each pass, as MATLAB does for integer classes; float input
    stays float (no rounding, no clipping), which is what NIQE's second scale and float pipelines need. The axis with
    the smaller scale is resized first (MATLAB's order; rows first on a tie).
    """
    if scale <= 0:
        raise ValueError(f"scale must be positive, got {scale}")
    if img.ndim not in (2, 3):
        raise ValueError(f"expected an HxW or HxWxC array, got shape {img.shape}")
    is_uint8 = img.dtype == np.uint8
    if not is_uint8 and not np.issubdtype(img.dtype, np.floating):
        raise TypeError(f"imresize supports uint8 and float arrays, got {img.dtype}")
    out = img.astype(np.float64)
    for axis in (0, 1):  # equal scales on both axes: MATLAB's stable sort keeps rows first
        in_len = out.shape[axis]
        mat = resize_matrix(in_len, _output_size(in_len, scale), float(scale), antialiasing, padding)
        out = np.moveaxis(np.tensordot(mat, out, axes=([1], [axis])), 0, axis)
        if is_uint8:
            out = round_half_up_uint8(out).astype(np.float64)
    return out.astype(np.uint8) if is_uint8 else out.astype(img.dtype, copy=False)


def imresize_to(img: np.ndarray, size: tuple[int, int], *, padding: Padding = "replicate") -> np.ndarray:
    """Resize a float HxW(xC) array to ``size`` = (rows, cols) as MATLAB's ``imresize(img, [rows cols], 'bicubic')``:
    each axis gets its own scale ``out / in``, antialiased when shrinking."""
    out = np.asarray(img, dtype=np.float64)
    for axis, out_len in enumerate(size):
        in_len = out.shape[axis]
        if in_len != out_len:
            mat = resize_matrix(in_len, out_len, out_len / in_len, True, padding)
            out = np.moveaxis(np.tensordot(mat, out, axes=([1], [axis])), 0, axis)
    return out


def modcrop(img: np.ndarray, scale: int) -> np.ndarray:
    """Crop the bottom/right so height and width are multiples of ``scale`` (the literature's top-left crop)."""
    h, w = img.shape[:2]
    return img[: h - h % scale, : w - w % scale]


def pil_bicubic(img: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Pillow's BICUBIC resize of a uint8 HxWx3 array to ``size`` = (width, height) (the PyTorch tutorial's way)."""
    return np.asarray(Image.fromarray(img).resize(size, Image.Resampling.BICUBIC))


def downsample(hr: np.ndarray, scale: int, kernel: Kernel = "matlab") -> np.ndarray:
    """LR image from a uint8 HR image: modcrop to a multiple of ``scale``, then bicubic /scale with ``kernel``."""
    hr = modcrop(hr, scale)
    if kernel == "matlab":
        return imresize(hr, 1.0 / scale)
    if kernel == "pil":
        h, w = hr.shape[:2]
        return pil_bicubic(hr, (w // scale, h // scale))
    raise ValueError(f"unknown kernel {kernel!r}; choose one of {', '.join(KERNELS)}")


Upsampling = Literal["bicubic", "nearest", "pil_bicubic"]


def upsample(lr: np.ndarray, scale: int, method: Upsampling = "bicubic") -> np.ndarray:
    """Upscale a uint8 LR image by an integer ``scale``: MATLAB bicubic (the papers' baseline), nearest, or Pillow."""
    if method == "bicubic":
        return imresize(lr, float(scale))
    if method == "nearest":
        return np.repeat(np.repeat(lr, scale, axis=0), scale, axis=1)
    if method == "pil_bicubic":
        h, w = lr.shape[:2]
        return pil_bicubic(lr, (w * scale, h * scale))
    raise ValueError(f"unknown upsampling method {method!r}")
