"""PSNR / SSIM against hand-computed values and scikit-image; NIQE against MATLAB R2021a and known distributions."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from srgan_lib.data.resize import downsample, modcrop, upsample
from srgan_lib.io.images import read_image
from srgan_lib.metrics.niqe import CALIBRATION, aggd_params, niqe
from srgan_lib.metrics.psnr_ssim import colour_cast, psnr, psnr_torch, rgb_to_y, ssim, ssim_torch
from tests.conftest import BENCHMARKS, basicsr_baboon


@pytest.fixture(scope="module")
def pair() -> tuple[np.ndarray, np.ndarray]:
    """(bicubic SR, HR) of Set5 'butterfly': a realistic, imperfect reconstruction."""
    hr = modcrop(read_image(BENCHMARKS / "Set5" / "HR" / "butterfly.png"), 4)
    return upsample(downsample(hr, 4), 4), hr


def test_y_channel_hand_values():
    px = np.array([[[0, 0, 0], [255, 255, 255], [255, 0, 0]]], np.uint8)
    np.testing.assert_allclose(rgb_to_y(px)[0], [16.0, 235.0, 16.0 + 65.481])


def test_psnr_hand_computed():
    hr = np.full((20, 20, 3), 100, np.uint8)
    sr = hr + 5
    assert psnr(sr, hr, space="rgb") == pytest.approx(10 * math.log10(255**2 / 25))
    dy = 5 * (65.481 + 128.553 + 24.966) / 255  # a uniform RGB offset moves Y by 219/255 of it
    assert psnr(sr, hr, space="y") == pytest.approx(10 * math.log10(255**2 / dy**2))
    assert psnr(hr, hr) == math.inf


def test_psnr_agrees_with_skimage(pair):
    sr, hr = pair
    ours_y = psnr(sr, hr, space="y", shave=4)
    ref_y = peak_signal_noise_ratio(rgb_to_y(hr)[4:-4, 4:-4], rgb_to_y(sr)[4:-4, 4:-4], data_range=255)
    assert ours_y == pytest.approx(ref_y, abs=1e-10)
    ours_rgb = psnr(sr, hr, space="rgb", shave=4)
    ref_rgb = peak_signal_noise_ratio(hr[4:-4, 4:-4], sr[4:-4, 4:-4], data_range=255)
    assert ours_rgb == pytest.approx(ref_rgb, abs=1e-10)


def test_ssim_agrees_with_skimage(pair):
    """Same window (11x11 Gaussian, sigma 1.5), constants, population covariance and valid-region mean."""
    sr, hr = pair
    opts = {"gaussian_weights": True, "sigma": 1.5, "use_sample_covariance": False, "data_range": 255}
    ref_y = structural_similarity(rgb_to_y(sr)[4:-4, 4:-4], rgb_to_y(hr)[4:-4, 4:-4], **opts)
    assert ssim(sr, hr, space="y", shave=4) == pytest.approx(ref_y, abs=1e-9)
    ref_rgb = structural_similarity(
        sr[4:-4, 4:-4].astype(float), hr[4:-4, 4:-4].astype(float), channel_axis=2, **opts
    )
    assert ssim(sr, hr, space="rgb", shave=4) == pytest.approx(ref_rgb, abs=1e-9)
    assert ssim(hr, hr) == pytest.approx(1.0)


def test_torch_metrics_match_numpy(pair):
    sr, hr = pair
    flipped_sr, flipped_hr = sr[:, ::-1].copy(), hr[::-1].copy()

    def batch(*imgs):
        return torch.stack([torch.from_numpy(i).permute(2, 0, 1).float() / 255 for i in imgs])

    srs, hrs = batch(sr, flipped_sr), batch(hr, flipped_hr)
    for space in ("y", "rgb"):
        p = psnr_torch(srs, hrs, space=space, shave=4)
        s = ssim_torch(srs, hrs, space=space, shave=4)
        assert p[0].item() == pytest.approx(psnr(sr, hr, space=space, shave=4), abs=1e-5)
        assert p[1].item() == pytest.approx(psnr(flipped_sr, flipped_hr, space=space, shave=4), abs=1e-5)
        assert s[0].item() == pytest.approx(ssim(sr, hr, space=space, shave=4), abs=1e-6)
        assert s[1].item() == pytest.approx(ssim(flipped_sr, flipped_hr, space=space, shave=4), abs=1e-6)


def test_colour_cast_by_hand():
    rng = np.random.default_rng(0)
    hr = rng.integers(20, 200, (40, 40, 3)).astype(np.uint8)
    sr = hr.astype(np.int16) + np.array([3, 0, -2], np.int16)
    sr[:4] = 255  # a border that the shave removes
    assert colour_cast(sr.astype(np.uint8), hr, shave=4) == pytest.approx((3.0, 0.0, -2.0))
    assert colour_cast(hr, hr) == (0.0, 0.0, 0.0)


def test_metrics_reject_mismatched_shapes():
    with pytest.raises(ValueError, match="differ in shape"):
        psnr(np.zeros((8, 8, 3)), np.zeros((8, 9, 3)))
    with pytest.raises(ValueError, match="at least 11x11"):
        ssim(np.zeros((12, 12, 3)), np.zeros((12, 12, 3)), shave=2)


def test_niqe_matches_matlab_r2021a():
    img = basicsr_baboon()
    assert niqe(img) == pytest.approx(CALIBRATION["matlab_r2021a"], abs=1e-3)


def test_aggd_fit_recovers_known_distributions():
    """Moment matching: Gaussian -> alpha 2, beta = sqrt(2) sigma; Laplacian -> alpha 1, beta = scale."""
    rng = np.random.default_rng(0)
    gauss = rng.normal(0.0, 0.7, size=(1, 400_000))
    alpha, bl, br = aggd_params(gauss)
    assert alpha[0] == pytest.approx(2.0, abs=0.03)
    assert bl[0] == pytest.approx(math.sqrt(2) * 0.7, rel=0.02)
    assert br[0] == pytest.approx(math.sqrt(2) * 0.7, rel=0.02)
    lap = rng.laplace(0.0, 0.5, size=(1, 400_000))
    alpha, bl, br = aggd_params(lap)
    assert alpha[0] == pytest.approx(1.0, abs=0.03)
    assert bl[0] == pytest.approx(0.5, rel=0.03)
    # asymmetric: left half-Gaussian sigma 1, right half-Gaussian sigma 2 -> beta_r / beta_l = 2
    z = np.abs(rng.normal(size=400_000))
    asym = np.where(rng.random(400_000) < 0.5, -z, 2 * z)[None, :]
    alpha, bl, br = aggd_params(asym)
    assert br[0] / bl[0] == pytest.approx(2.0, rel=0.02)


def test_niqe_orders_quality_and_needs_two_blocks():
    hr = read_image(BENCHMARKS / "Set14" / "HR" / "baboon.png")
    blurry = upsample(downsample(hr, 4), 4, "nearest")
    assert niqe(blurry) > niqe(hr) + 2  # pixelated replicas are far from natural-scene statistics
    with pytest.raises(ValueError, match="two 96x96 blocks"):
        niqe(hr[:100, :150])


def test_niqe_of_a_flat_image_is_nan_not_a_crash():
    import math

    from srgan_lib.metrics.niqe import niqe

    assert math.isnan(niqe(np.full((200, 200, 3), 128, np.uint8)))
