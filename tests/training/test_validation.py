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


def test_realworld_validation_uses_the_sets_own_lr_and_reports_niqe(tmp_path):
    """A real-world list (Set5-RW): the LR crop is the matching window of the set's own degraded LR file (not a
    bicubic of the HR), and with crops of two NIQE blocks the scores carry the evaluation's NIQE of the SR."""
    from srgan_lib.data.degradations import DegradationSettings
    from srgan_lib.data.realworld import write_realworld_sets
    from srgan_lib.evaluation.measure import measure, test_set_from_list
    from srgan_lib.io.images import read_image

    _lists(tmp_path)
    write_realworld_sets(tmp_path / "lists", ["Set5"], tmp_path / "rw", DegradationSettings(), seed=0)
    rw = tmp_path / "rw" / "lists" / "Set5-RW.json"
    val = Validator(str(rw), 2, 200, 4)
    _, images = test_set_from_list(rw, 4)
    for (name, lr, hr), img in zip(val.pairs, images, strict=False):
        full_hr, full_lr = modcrop(read_image(img.hr), 4), read_image(img.lr)
        y, x = (full_hr.shape[0] - 200) // 2 // 4 * 4, (full_hr.shape[1] - 200) // 2 // 4 * 4
        assert name == img.name and hr.shape == (200, 200, 3) and lr.shape == (50, 50, 3)
        assert np.array_equal(hr, full_hr[y : y + 200, x : x + 200])
        assert np.array_equal(lr, full_lr[y // 4 : y // 4 + 50, x // 4 : x // 4 + 50])
        assert not np.array_equal(lr, downsample(hr, 4, "matlab"))  # degraded, not bicubic
    model = torch.nn.Upsample(scale_factor=4, mode="bicubic")  # textured output (NIQE is undefined on flat images)
    levers = ComputeFormat("fp32", True)
    scores, _ = val.run(model, (0.0, 1.0), torch.device("cpu"), levers)
    sr = [super_resolve(model, lr, (0.0, 1.0), torch.device("cpu"), levers) for _, lr, _ in val.pairs]
    expected = [measure(s, hr, 4) for s, (_, _, hr) in zip(sr, val.pairs, strict=True)]
    assert scores["niqe"] == np.mean([e["niqe"] for e in expected])
    assert scores["psnr_y"] == np.mean([e["psnr_y"] for e in expected])
    assert "niqe" not in Validator(str(rw), 2, 128, 4).run(model, (0.0, 1.0), torch.device("cpu"), levers)[0]
