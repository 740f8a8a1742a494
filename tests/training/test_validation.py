"""Training validation (srgan_lib.training.validation) against the evaluation's inference path: the slim whole-image
forward gives the same uint8 SR, and so the same PSNR-Y, as `srgan evaluate`'s GeneratorMethod (the Upscaler)."""

from __future__ import annotations

import numpy as np
import torch

from srgan_lib.data.resize import downsample, modcrop
from srgan_lib.evaluation.methods import GeneratorMethod
from srgan_lib.hardware import ComputeFormat
from srgan_lib.metrics.psnr_ssim import psnr
from srgan_lib.models import build_model, output_range
from srgan_lib.training.validation import Validator, super_resolve
from tests.conftest import BENCHMARKS


def _lists(tmp_path):
    from srgan_lib.data.lists import build_lists

    build_lists([], {"Set5": BENCHMARKS / "Set5"}, tmp_path / "lists", min_size=64, test_min_size=16)
    return tmp_path / "lists" / "Set5.json"


def test_validation_forward_equals_the_evaluations_generator_method(tmp_path):
    torch.manual_seed(0)
    for name in ("srresnet", "rrdbnet"):
        opts = {"num_block": 1, "num_feat": 8} if name == "srresnet" else {"num_block": 1, "num_feat": 8,
                                                                             "num_grow_ch": 4}
        model = build_model(name, **opts).eval()
        val = Validator(str(_lists(tmp_path)), 2, 48, 4)
        assert [n for n, _, _ in val.pairs] == ["baby", "bird"] and val.pairs[0][2].shape == (48, 48, 3)
        method = GeneratorMethod(model, "cpu", value_range=output_range(name), tile=0, precision="fp32",
                                 guard_db=0)
        levers = ComputeFormat("fp32", True)
        for _, lr, hr in val.pairs:
            ours, theirs = super_resolve(model, lr, output_range(name), torch.device("cpu"), levers), method(lr)
            assert ours.dtype == np.uint8 and ours.shape == hr.shape
            assert np.array_equal(ours, theirs), name
        scores, picture = val.run(model, output_range(name), torch.device("cpu"), levers)
        expected = np.mean([psnr(method(lr), hr, space="y", shave=4) for _, lr, hr in val.pairs])
        assert scores["psnr_y"] == expected and picture.shape == (48, 48 * 3 + 8, 3)


def test_validation_pairs_are_the_centre_crop_and_its_matlab_bicubic(tmp_path):
    from srgan_lib.io.images import read_image

    val = Validator(str(_lists(tmp_path)), 1, 64, 4)
    hr = modcrop(read_image(BENCHMARKS / "Set5" / "HR" / "baby.png"), 4)  # 512x512
    y = x = (512 - 64) // 2 // 4 * 4
    assert np.array_equal(val.pairs[0][2], hr[y:y + 64, x:x + 64])
    assert np.array_equal(val.pairs[0][1], downsample(hr[y:y + 64, x:x + 64], 4, "matlab"))
