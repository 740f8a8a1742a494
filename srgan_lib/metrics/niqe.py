"""NIQE, the Natural Image Quality Evaluator (Mittal, Soundararajan and Bovik 2013), MATLAB-compatible.

A no-reference metric: the distance between a multivariate Gaussian fitted to natural-scene-statistics features of the
image's 96x96 blocks (at two scales) and the pristine-image model shipped with the original release. Lower is better.
The implementation follows the authors' published algorithm and is vectorised over blocks; it is calibrated against
MATLAB R2021a (5.72957338 on BasicSR's ``baboon.png``, see ``tests/metrics/test_metrics.py``). The model parameters in
``data/niqe_pris_params.npz`` come from BasicSR (Apache-2.0, license beside the file).
"""

from __future__ import annotations

import logging
from functools import lru_cache
from importlib import resources

import numpy as np
from scipy import ndimage
from scipy.special import gamma as gamma_fn

from srgan_lib.data.resize import imresize
from srgan_lib.metrics.psnr_ssim import matlab_luma

log = logging.getLogger(__name__)

BLOCK = 96
CALIBRATION = {"image": "baboon_basicsr.png", "matlab_r2021a": 5.72957338}
_SHIFTS = ((0, 1), (1, 0), (1, 1), (1, -1))  # MATLAB circshift offsets for the pairwise-product features
_GAM = np.arange(0.2, 10.001, 0.001)
_R_GAM = gamma_fn(2.0 / _GAM) ** 2 / (gamma_fn(1.0 / _GAM) * gamma_fn(3.0 / _GAM))


@lru_cache(maxsize=1)
def pristine_model() -> dict[str, np.ndarray]:
    """The pristine NIQE model: ``mu`` (36,), ``cov`` (36, 36) and the 7x7 ``window``."""
    ref = resources.files("srgan_lib.metrics") / "data" / "niqe_pris_params.npz"
    with resources.as_file(ref) as path, np.load(path) as z:
        return {
            "mu": z["mu_pris_param"].reshape(-1).astype(np.float64),
            "cov": z["cov_pris_param"].astype(np.float64),
            "window": z["gaussian_window"].astype(np.float64),
        }


def aggd_params(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Asymmetric generalised Gaussian fit (alpha, beta_left, beta_right) of each row of ``x`` (moment matching).

    Rows with no negative (or no positive) samples give NaN betas, as in MATLAB; those blocks drop out of the
    covariance and are ignored by the mean, like ``nanmean`` / ``nancov``.
    """
    neg, pos = x < 0, x > 0
    sq = x * x
    with np.errstate(invalid="ignore", divide="ignore"):
        left_std = np.sqrt((sq * neg).sum(axis=1) / neg.sum(axis=1))
        right_std = np.sqrt((sq * pos).sum(axis=1) / pos.sum(axis=1))
        gamma_hat = left_std / right_std
        r_hat = np.abs(x).mean(axis=1) ** 2 / sq.mean(axis=1)
        r_hat_norm = r_hat * (gamma_hat**3 + 1) * (gamma_hat + 1) / (gamma_hat**2 + 1) ** 2
    # nearest tabulated ratio; an all-NaN row picks the first entry, as MATLAB's min does
    diff = (_R_GAM[None, :] - r_hat_norm[:, None]) ** 2
    diff = np.where(np.isnan(diff), np.inf, diff)
    alpha = _GAM[np.argmin(diff, axis=1)]
    scale = np.sqrt(gamma_fn(1.0 / alpha) / gamma_fn(3.0 / alpha))
    return alpha, left_std * scale, right_std * scale


def block_features(blocks: np.ndarray) -> np.ndarray:
    """The 18 NIQE features of each block in an (N, b, b) array of normalised (MSCN) coefficients."""
    n = blocks.shape[0]
    flat = blocks.reshape(n, -1)
    alpha, bl, br = aggd_params(flat)
    feats = [alpha, (bl + br) / 2.0]
    for shift in _SHIFTS:
        shifted = np.roll(blocks, shift, axis=(1, 2)).reshape(n, -1)
        a, bl, br = aggd_params(flat * shifted)
        mean = (br - bl) * gamma_fn(2.0 / a) / gamma_fn(1.0 / a)
        feats += [a, mean, bl, br]
    return np.stack(feats, axis=1)


def _mscn(img: np.ndarray, window: np.ndarray) -> np.ndarray:
    """Mean-subtracted, contrast-normalised coefficients; replicate borders (MATLAB ``imfilter(..., 'replicate')``)."""
    mu = ndimage.correlate(img, window, mode="nearest")
    sigma = np.sqrt(np.abs(ndimage.correlate(img * img, window, mode="nearest") - mu * mu))
    return (img - mu) / (sigma + 1.0)


def _blocks(img: np.ndarray, size: int) -> np.ndarray:
    h, w = img.shape
    return img.reshape(h // size, size, w // size, size).transpose(0, 2, 1, 3).reshape(-1, size, size)


def niqe_fits(img: np.ndarray, *, shave: int = 0) -> bool:
    """Whether an image holds the two BLOCK x BLOCK blocks NIQE needs, after ``shave``."""
    h, w = (n - 2 * shave for n in img.shape[:2])
    return (h // BLOCK) * (w // BLOCK) >= 2


def niqe_luma(y: np.ndarray) -> float:
    """NIQE of a 2-D luma array on the 0-255 scale (float)."""
    model = pristine_model()
    h, w = y.shape
    nbh, nbw = h // BLOCK, w // BLOCK
    if not niqe_fits(y):
        raise ValueError(f"NIQE needs at least two {BLOCK}x{BLOCK} blocks; the image is {w}x{h}")
    img = np.asarray(y, dtype=np.float64)[: nbh * BLOCK, : nbw * BLOCK]
    feats = []
    for scale in (1, 2):
        feats.append(block_features(_blocks(_mscn(img, model["window"]), BLOCK // scale)))
        if scale == 1:
            img = imresize(img, 0.5, padding="symmetric")  # R2021a's imresize mirrors at the border
    dist = np.concatenate(feats, axis=1)
    mu = np.nanmean(dist, axis=0)
    complete = dist[~np.isnan(dist).any(axis=1)]
    if len(complete) < 2 or not np.isfinite(mu).all():
        # flat (textureless) images have undefined block statistics: NIQE is undefined, not an error
        log.warning("NIQE is undefined for this %dx%d image (too few textured blocks); reporting NaN", w, h)
        return float("nan")
    cov = np.cov(complete, rowvar=False)
    d = model["mu"] - mu
    return float(np.sqrt(d @ np.linalg.pinv((model["cov"] + cov) / 2.0) @ d))


def niqe(img: np.ndarray, *, shave: int = 0) -> float:
    """NIQE of an RGB (HxWx3) or greyscale (HxW) image on the 0-255 scale.

    RGB is reduced to MATLAB's ``rgb2ycbcr`` luma, rounded to integers as MATLAB does for uint8 images; ``shave``
    removes a border first (PIRM 2018's perceptual index shaves the scale factor).
    """
    return niqe_luma(matlab_luma(img, shave))
