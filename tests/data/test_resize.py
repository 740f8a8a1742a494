"""MATLAB-compatible bicubic: hand-computed kernel values and the literature's distributed LR files."""

from __future__ import annotations

import numpy as np
import pytest

from srgan_lib.data.resize import cubic, downsample, imresize, modcrop, resize_matrix, upsample
from srgan_lib.io.images import read_image
from tests.conftest import BENCHMARKS

PAIRS = sorted(BENCHMARKS.glob("Set*/HR/*.png"))


def _lr_of(hr_path):
    return hr_path.parent.parent / "LR_bicubic" / "X4" / hr_path.name


def test_cubic_kernel_hand_values():
    # Keys' kernel, a = -0.5: 1.5|x|^3 - 2.5|x|^2 + 1 on [0, 1]; -0.5|x|^3 + 2.5|x|^2 - 4|x| + 2 on (1, 2]
    x = np.array([0.0, 0.5, 1.0, 1.5, 2.0, 2.5, -0.5])
    np.testing.assert_allclose(cubic(x), [1.0, 0.5625, 0.0, -0.0625, 0.0, 0.0, 0.5625])


def test_resize_matrix_rows_sum_to_one_and_taps():
    down = resize_matrix(32, 8, 0.25)
    np.testing.assert_allclose(down.sum(axis=1), 1.0)
    # antialiased /4 kernel spans 16 input pixels: an interior output pixel uses 16 of them
    assert np.count_nonzero(down[4]) == 16
    up = resize_matrix(8, 32, 4.0)
    np.testing.assert_allclose(up.sum(axis=1), 1.0)
    assert np.count_nonzero(up[16]) == 4


def test_constant_image_is_preserved():
    img = np.full((40, 24, 3), 137, np.uint8)
    assert (imresize(img, 0.25) == 137).all()
    assert (imresize(img, 4.0) == 137).all()
    assert imresize(img, 0.25).shape == (10, 6, 3)


def test_modcrop_and_sizes():
    img = np.zeros((103, 66, 3), np.uint8)
    assert modcrop(img, 4).shape == (100, 64, 3)
    assert downsample(img, 4).shape == (25, 16, 3)
    assert downsample(img, 4, "pil").shape == (25, 16, 3)
    assert upsample(np.zeros((5, 7, 3), np.uint8), 4).shape == (20, 28, 3)
    assert upsample(np.zeros((5, 7, 3), np.uint8), 4, "nearest").shape == (20, 28, 3)


def test_float_input_stays_float_and_linear():
    rng = np.random.default_rng(0)
    a, b = rng.random((48, 40)), rng.random((48, 40))
    out = imresize(2.0 * a + b, 0.5)
    assert out.dtype == np.float64
    np.testing.assert_allclose(out, 2.0 * imresize(a, 0.5) + imresize(b, 0.5), atol=1e-12)


@pytest.mark.parametrize("hr_path", PAIRS, ids=lambda p: f"{p.parent.parent.name}-{p.stem}")
def test_generated_lr_matches_distributed_lr_bit_exactly(hr_path):
    """Measured agreement with the literature's LR_bicubic/X4: identical on all 19 Set5/Set14 images."""
    ours = downsample(read_image(hr_path), 4)
    ref = read_image(_lr_of(hr_path))
    assert ours.shape == ref.shape
    diff = np.abs(ours.astype(int) - ref.astype(int))
    assert diff.max() == 0, f"max abs difference {diff.max()}, {np.mean(diff > 0):.4%} of values differ"


def test_symmetric_padding_differs_only_at_the_border():
    """The mirror padding of R2021a / BasicSR: measured at most 10 grey levels, only within 2 px of the border."""
    worst, interior = 0, 0
    for hr_path in PAIRS:
        hr = modcrop(read_image(hr_path), 4)
        ours = imresize(hr, 0.25, padding="symmetric").astype(int)
        diff = np.abs(ours - read_image(_lr_of(hr_path)).astype(int))
        worst = max(worst, int(diff.max()))
        interior += int(np.count_nonzero(diff[2:-2, 2:-2]))
    assert 0 < worst <= 10
    assert interior == 0


def test_pil_kernel_is_close_but_not_matlab():
    hr = read_image(BENCHMARKS / "Set5" / "HR" / "baby.png")
    matlab, pil = downsample(hr, 4, "matlab").astype(int), downsample(hr, 4, "pil").astype(int)
    mad = np.abs(matlab - pil).mean()
    assert 0 < mad < 3


def test_rejects_bad_arguments():
    with pytest.raises(ValueError, match="scale must be positive"):
        imresize(np.zeros((8, 8), np.uint8), 0)
    with pytest.raises(TypeError):
        imresize(np.zeros((8, 8), np.int32), 0.5)
    with pytest.raises(ValueError, match="unknown kernel"):
        downsample(np.zeros((8, 8, 3), np.uint8), 4, "lanczos")  # type: ignore[arg-type]
