"""The features of Ma's score (:mod:`srgan_lib.metrics.ma`): local frequency (DCT statistics over a Gaussian
pyramid), global spatial (a divisively normalised complex steerable pyramid) and spatial discontinuity (singular values
of patch matrices), following the paper and the authors' MATLAB as published.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from scipy.fft import dctn
from scipy.special import gammaln

from srgan_lib.data.resize import imresize_to
from srgan_lib.metrics.psnr_ssim import ssim_map

N_FEATURES = (18, 45, 75)
MIN_SIZE = 64  # the second steerable-pyramid scale, less its guard band, must still hold an 11x11 SSIM window


_GGD_SHAPES = np.arange(0.03, 10.0 + 1e-9, 0.001)
# rho(gamma) = var / E|x - mean|^2 of a generalised Gaussian of shape gamma; strictly decreasing in gamma
_GGD_RHO = np.exp(gammaln(1.0 / _GGD_SHAPES) + gammaln(3.0 / _GGD_SHAPES) - 2.0 * gammaln(2.0 / _GGD_SHAPES))


def ggd_shape(x: np.ndarray) -> np.ndarray:
    """Moment-matching generalised-Gaussian shape of each row of ``x`` (2 for a Gaussian, 1 for a Laplacian).

    ``rho = var / mean(|x - mean|)^2`` is matched to the nearest tabulated shape in 0.03:0.001:10, as the authors'
    ``gama_gen_gauss``; the table is monotone, so the nearest entry is found by bisection rather than a full scan.
    """
    x = np.atleast_2d(np.asarray(x, dtype=np.float64))
    centred = x - x.mean(axis=1, keepdims=True)
    var = centred.var(axis=1, ddof=1)
    mean_abs = np.abs(centred).mean(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return shape_from_ratio(var / mean_abs**2)


def shape_from_ratio(rho: np.ndarray) -> np.ndarray:
    """The tabulated shape whose ``rho(gamma)`` is nearest to each ``rho`` (NaN where ``rho`` is not finite)."""
    rho = np.asarray(rho, dtype=np.float64)
    rev = _GGD_RHO[::-1]  # increasing
    pos = np.clip(np.searchsorted(rev, rho), 1, len(rev) - 1)
    nearer_left = np.abs(rho - rev[pos - 1]) <= np.abs(rev[pos] - rho)
    idx_rev = np.where(nearer_left, pos - 1, pos)
    shape = _GGD_SHAPES[len(rev) - 1 - idx_rev]
    return np.where(np.isfinite(rho), shape, np.nan)


def coefficient_of_variation(x: np.ndarray) -> np.ndarray:
    """``std(|x|) / mean(|x|)`` of each row (unbiased std), the authors' ``gama_dct`` spread statistic."""
    a = np.abs(np.atleast_2d(np.asarray(x, dtype=np.float64)))
    with np.errstate(divide="ignore", invalid="ignore"):
        return a.std(axis=1, ddof=1) / a.mean(axis=1)


def _pool_low(values: np.ndarray) -> tuple[float, float]:
    """(mean of the lowest 10 %, mean of all): the shape statistic's pooling (low shape = heavy-tailed, sharp)."""
    v = np.sort(values[np.isfinite(values)])
    return float(v[: math.ceil(0.1 * len(v)) + 1].mean()), float(v.mean())


def _pool_high(values: np.ndarray) -> tuple[float, float]:
    """(mean of the highest 10 %, mean of all): the spread statistics' pooling."""
    v = np.sort(values[np.isfinite(values)])
    return float(v[math.floor(0.9 * len(v)):].mean()), float(v.mean())


# ----------------------------------------------------------------------------------- 1. local frequency features


def gaussian_pyramid(img: np.ndarray, levels: int = 2) -> list[np.ndarray]:
    """``img`` and ``levels`` reductions: 3x3 Gaussian (sigma 0.5, zero border as ``imfilter``), keep ``2:2:end``."""
    g = np.exp(-(np.arange(-1, 2) ** 2) / (2 * 0.5**2))
    kernel = np.outer(g, g) / np.outer(g, g).sum()
    pyramid = [img]
    for _ in range(levels):
        img = ndimage.correlate(img, kernel, mode="constant")[1::2, 1::2]
        pyramid.append(img)
    return pyramid


def dct_blocks(img: np.ndarray) -> np.ndarray:
    """(N, 7, 7) orthonormal 2-D DCTs of the 7x7 neighbourhood of every 3x3 block, zero outside the image
    (``blkproc(im, [3 3], [2 2], @dct2)``; the image is zero-padded to a multiple of 3 first, as ``blkproc`` does)."""
    h, w = img.shape
    ph, pw = -h % 3, -w % 3
    padded = np.pad(img, ((2, 2 + ph), (2, 2 + pw)))
    win = np.lib.stride_tricks.sliding_window_view(padded, (7, 7))[::3, ::3]
    return dctn(win.reshape(-1, 7, 7), axes=(1, 2), norm="ortho")


# The three orientation regions of a 7x7 DCT block (row, first column ... last column), from the authors' code:
# horizontal-ish frequencies above the diagonal band, the diagonal band, vertical-ish frequencies below it.
_ORIENTATIONS: tuple[tuple[tuple[int, int, int], ...], ...] = (
    ((0, 1, 7), (1, 2, 7), (2, 4, 7), (3, 5, 7)),
    ((1, 1, 2), (2, 2, 4), (3, 2, 5), (4, 3, 7), (5, 4, 7), (6, 4, 7)),
)


def _orientation_masks() -> list[np.ndarray]:
    masks = []
    for region in _ORIENTATIONS:
        m = np.zeros((7, 7), dtype=bool)
        for row, c0, c1 in region:
            m[row, c0:c1] = True
        masks.append(m)
    masks.append(masks[0].T.copy())  # the vertical region mirrors the horizontal one
    return masks


ORIENTATION_MASKS = _orientation_masks()


def frequency_features(img: np.ndarray) -> np.ndarray:
    """The six local-frequency statistics of one pyramid level."""
    blocks = dct_blocks(img)
    ac = blocks.reshape(len(blocks), -1)[:, 1:]
    feats = [*_pool_low(ggd_shape(ac)), *_pool_high(coefficient_of_variation(ac))]
    cv = np.stack([coefficient_of_variation(blocks[:, m]) for m in ORIENTATION_MASKS], axis=1)
    feats += _pool_high(cv.var(axis=1, ddof=1))
    return np.asarray(feats)


# ------------------------------------------------------------------------------- 2. global (steerable pyramid)


def _raised_cosine(width: float = 1.0, position: float = -0.5) -> tuple[np.ndarray, np.ndarray]:
    """matlabPyrTools' ``rcosFn(width, position, [0 1])``: a cos^2 ramp from 0 to 1 over ``width`` octaves."""
    sz = 256
    x = np.pi * np.arange(-sz - 1, 2) / (2 * sz)
    y = np.cos(x) ** 2
    y[0], y[-1] = y[1], y[-2]
    return position + (2 * width / np.pi) * (x + np.pi / 4), y


def _point_op(values: np.ndarray, table_x: np.ndarray, table_y: np.ndarray) -> np.ndarray:
    """``pointOp``: piecewise-linear lookup on a uniform table (the tables used here are flat at both ends)."""
    return np.interp(values, table_x, table_y)


@dataclass
class SteerablePyramid:
    """A complex steerable pyramid: real high-pass residual, ``bands[scale][orientation]`` (complex), low-pass."""

    highpass: np.ndarray
    bands: list[list[np.ndarray]]
    lowpass: np.ndarray


def steerable_pyramid(img: np.ndarray, height: int = 2, nbands: int = 6) -> SteerablePyramid:
    """matlabPyrTools' ``buildSCFpyr(im, height, nbands - 1)``, built in the Fourier domain."""
    dims = np.array(img.shape)
    ctr = np.ceil((dims + 0.5) / 2).astype(int) - 1  # zero-based centre (where fftshift puts DC)
    xr = (np.arange(dims[1]) - ctr[1]) / (dims[1] / 2)
    yr = (np.arange(dims[0]) - ctr[0]) / (dims[0] / 2)
    xramp, yramp = np.meshgrid(xr, yr)
    angle = np.arctan2(yramp, xramp)
    rad = np.sqrt(xramp**2 + yramp**2)
    rad[ctr[0], ctr[1]] = rad[ctr[0], ctr[1] - 1]
    log_rad = np.log2(rad)
    xrcos, yrcos = _raised_cosine()
    yrcos = np.sqrt(yrcos)
    yircos = np.sqrt(np.abs(1.0 - yrcos**2))

    imdft = np.fft.fftshift(np.fft.fft2(img))
    highpass = np.real(np.fft.ifft2(np.fft.ifftshift(imdft * _point_op(log_rad, xrcos, yrcos))))
    lodft = imdft * _point_op(log_rad, xrcos, yircos)

    order = nbands - 1
    lut = 1024
    xcosn = np.pi * np.arange(-(2 * lut + 1), lut + 2) / lut
    const = 2 ** (2 * order) * math.factorial(order) ** 2 / (nbands * math.factorial(2 * order))
    alfa = np.mod(np.pi + xcosn, 2 * np.pi) - np.pi
    ycosn = 2 * np.sqrt(const) * np.cos(xcosn) ** order * (np.abs(alfa) < np.pi / 2)

    bands = []
    for _ in range(height):
        himask = _point_op(log_rad, xrcos, yrcos)
        level = []
        for b in range(nbands):
            anglemask = _point_op(angle - np.pi * b / nbands, xcosn, ycosn)
            banddft = (-1j) ** order * lodft * anglemask * himask
            level.append(np.fft.ifft2(np.fft.ifftshift(banddft)))
        bands.append(level)
        dims = np.array(lodft.shape)
        ctr = np.ceil((dims + 0.5) / 2).astype(int)
        lodims = np.ceil((dims - 0.5) / 2).astype(int)
        loctr = np.ceil((lodims + 0.5) / 2).astype(int)
        start = ctr - loctr
        sl = (slice(start[0], start[0] + lodims[0]), slice(start[1], start[1] + lodims[1]))
        log_rad, angle, lodft = log_rad[sl], angle[sl], lodft[sl]
        lodft = lodft * _point_op(log_rad, xrcos, yircos)
        log_rad = log_rad - 1
    lowpass = np.real(np.fft.ifft2(np.fft.ifftshift(lodft)))
    return SteerablePyramid(highpass, bands, lowpass)


def divisive_normalization(bands: list[list[np.ndarray]], guardband: int = 16) -> list[list[np.ndarray]]:
    """Gaussian-scale-mixture normalisation of every (real) subband by its 3x3 spatial neighbourhood, its parent
    (next coarser scale, same orientation) and the other orientations at the same position; then the guard band is
    cut off and the mean removed (the authors' ``norm_sender_normalized``)."""
    n_scales, n_or = len(bands), len(bands[0])
    real = [[np.real(b) for b in level] for level in bands]
    out: list[list[np.ndarray]] = []
    for s in range(n_scales):
        level_out = []
        for o in range(n_or):
            band = real[s][o]
            h, w = band.shape
            cols = [np.lib.stride_tricks.sliding_window_view(band, (3, 3)).reshape(h - 2, w - 2, 9)]
            n = 9
            if s + 1 < n_scales:
                parent = imresize_to(real[s + 1][o], (h, w))
                cols.append(parent[1:-1, 1:-1, None])
                n += 1
            cols += [real[s][k][1:-1, 1:-1, None] for k in range(n_or) if k != o]
            y = np.concatenate(cols, axis=2).reshape(-1, sum(c.shape[2] for c in cols))
            cov = y.T @ y / len(y)
            evals, evecs = np.linalg.eigh(cov)
            pos = evals * (evals > 0)
            total_pos = pos.sum()
            evals = pos * evals.sum() / (total_pos + (total_pos == 0))
            cov = evecs @ np.diag(evals) @ evecs.T
            z = np.sqrt(np.maximum(((y @ np.linalg.pinv(cov)) * y).sum(axis=1) / n, 0.0))
            centre = band[1:-1, 1:-1].reshape(-1)
            centre = centre - centre.mean()
            g = np.zeros_like(centre)
            np.divide(centre, z, out=g, where=z != 0)
            g = g.reshape(h - 2, w - 2)
            gb = guardband // 2**s
            g = g[gb:-gb, gb:-gb]
            level_out.append(g - g.mean())
        out.append(level_out)
    return out


def structural_similarity(a: np.ndarray, b: np.ndarray) -> float:
    """Mean SSIM (11x11 Gaussian, sigma 1.5, K = (0.01, 0.03), valid region) of two subband maps as they are, with the
    constants of a unit dynamic range (MATLAB's ``ssim`` default for double arrays); with 255 the constants would
    swamp the normalised coefficients and every value would be ~1."""
    return float(ssim_map(a, b, c1=0.01**2, c2=0.03**2).mean())


def global_features(img: np.ndarray) -> np.ndarray:
    """The 45 global statistics of the steerable-pyramid subbands of ``img`` (0-255 luma, float)."""
    pyr = steerable_pyramid(img, height=2, nbands=6)
    sub = divisive_normalization(pyr.bands)
    flat = [g for level in sub for g in level]
    feats = [float(ggd_shape(g.reshape(1, -1))[0]) for g in flat]  # 12: shape of each subband
    for o in range(len(sub[0])):  # 6: shape of each orientation across both scales
        both = np.concatenate([sub[0][o].reshape(-1), sub[1][o].reshape(-1)])
        feats.append(float(ggd_shape(both[None])[0]))
    hp = pyr.highpass
    feats += [structural_similarity(imresize_to(g, hp.shape), hp) for g in flat]  # 12: structure vs high-pass
    level0 = sub[0]
    feats += [structural_similarity(level0[i], level0[j])  # 15: structure between orientations
              for i in range(len(level0)) for j in range(i + 1, len(level0))]
    return np.asarray(feats)


# ------------------------------------------------------------------------------ 3. spatial discontinuity (SVD)


def svd_features(img: np.ndarray) -> np.ndarray:
    """Singular values (25) of the matrix whose rows are the non-overlapping 5x5 patches of ``img`` (zero-padded to a
    multiple of 5 at the bottom and right, MATLAB ``im2col(im, [5 5], 'distinct')``), largest first."""
    h, w = img.shape
    padded = np.pad(img, ((0, -h % 5), (0, -w % 5)))
    ph, pw = padded.shape
    patches = padded.reshape(ph // 5, 5, pw // 5, 5).transpose(0, 2, 1, 3).reshape(-1, 25)
    values = np.linalg.svd(patches, compute_uv=False)
    return np.pad(values, (0, 25 - len(values)))  # fewer than 25 patches: the remaining singular values are 0


# ------------------------------------------------------------------------------------------------ features


def ma_features(y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(local frequency 18, global 45, SVD 75) features of a 0-255 luma array."""
    y = np.asarray(y, dtype=np.float64)
    if min(y.shape) < MIN_SIZE:
        raise ValueError(f"Ma's score needs at least {MIN_SIZE}x{MIN_SIZE} pixels (after the shave); got "
                         f"{y.shape[1]}x{y.shape[0]}")
    pyramid = gaussian_pyramid(y / 255.0)
    f1 = np.concatenate([frequency_features(level) for level in pyramid])
    f2 = global_features(y)
    f3 = np.concatenate([svd_features(level) for level in pyramid])
    return f1, f2, f3
