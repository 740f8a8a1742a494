"""Real-ESRGAN's U-Net discriminator with spectral normalization: a logit per pixel, the published state-dict
layout, spectral normalization holding (the largest singular value of every normalised weight, by
torch.linalg.matrix_norm(ord=2), ~1 after a few training steps), and a GAN recipe training with it."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from srgan_lib import losses
from srgan_lib.models import build_model
from srgan_lib.training.stage import train_stage
from tests.conftest import micro_params


def test_one_logit_per_pixel_and_the_published_key_layout():
    d = build_model("unet_discriminator_sn", num_feat=16)
    assert d(torch.rand(2, 3, 40, 24)).shape == (2, 1, 40, 24)
    keys = set(build_model("unet_discriminator_sn").state_dict())
    # RealESRGAN_x4plus_netD.pth's keys: plain conv0 / conv9, spectral-normed conv1..8 (weight_orig, _u, _v)
    assert {"conv0.weight", "conv0.bias", "conv9.weight", "conv9.bias"} <= keys
    assert all({f"conv{i}.weight_orig", f"conv{i}.weight_u", f"conv{i}.weight_v"} <= keys for i in range(1, 9))
    with pytest.raises(ValueError, match="divisible by 8"):
        d(torch.rand(1, 3, 30, 32))


def test_spectral_normalization_holds_after_training_steps():
    torch.manual_seed(0)
    d = build_model("unet_discriminator_sn", num_feat=16)
    opt = torch.optim.Adam(d.parameters(), lr=1e-3)
    for _ in range(40):  # each training forward runs one power iteration
        real, fake = torch.rand(4, 3, 32, 32), torch.rand(4, 3, 32, 32) * 0.5
        loss = losses.discriminator_loss("vanilla", d(real), d(fake))
        opt.zero_grad()
        loss.backward()
        opt.step()
    d(torch.rand(1, 3, 32, 32))  # the weights as the last forward normalised them
    normed = [m for m in d.modules() if isinstance(m, nn.Conv2d) and hasattr(m, "weight_orig")]
    assert len(normed) == 8
    raws = []
    for m in normed:
        sigma = torch.linalg.matrix_norm(m.weight.detach().reshape(m.weight.shape[0], -1), ord=2)
        raws.append(float(torch.linalg.matrix_norm(m.weight_orig.detach().reshape(m.weight.shape[0], -1), ord=2)))
        assert float(sigma) == pytest.approx(1.0, abs=0.02)
    print("unnormalised sigmas", [round(r, 3) for r in raws])
    assert max(abs(r - 1) for r in raws) > 0.1  # the raw weights are not unit-norm: the normalisation does the work


def test_a_gan_recipe_trains_with_the_unet_discriminator(micro_data, tmp_path):
    params = micro_params(micro_data, tmp_path, "esrgan", **{"esrgan.discriminator": "unet_discriminator_sn",
                                                           "esrgan.discriminator_options": '{"num_feat": 8}',
                                                           "esrgan.gan.type": "vanilla"})
    res = train_stage(params, "esrgan", progress=False)
    assert res.iterations == 6 and {"gan_g", "gan_d"} <= set(res.final_losses)
    assert all(v == v for v in res.final_losses.values())
