"""Losses against hand-computed values (-log(sigmoid) written out with math), schedules and EMA against arithmetic."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from srgan_lib import losses
from srgan_lib.models.vgg import VGGFeatureExtractor
from srgan_lib.training.optim import EMA, learning_rate, multistep_lr


def softplus(x: float) -> float:
    """-log(sigmoid(-x)) = log(1 + e^x): BCE of logit x against label 0; BCE against 1 is softplus(-x)."""
    return math.log1p(math.exp(x))


def t(*values: float) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float64).view(-1, 1)


def test_pixel_losses():
    sr, hr = torch.tensor([0.0, 1.0, 0.5, 0.5]), torch.tensor([1.0, 1.0, 0.0, 0.5])
    assert losses.PixelLoss("mse")(sr, hr).item() == pytest.approx((1 + 0 + 0.25 + 0) / 4)
    assert losses.PixelLoss("l1")(sr, hr).item() == pytest.approx((1 + 0 + 0.5 + 0) / 4)
    with pytest.raises(ValueError, match="choose one of mse, l1"):
        losses.PixelLoss("huber")


def test_standard_gan_losses_equal_hand_computed_values():
    fake, real = t(0.0, 2.0), t(1.0, -3.0)
    # SRGAN generator: -log D(G(x)) = BCE(C(G(x)), 1)
    expected_g = (softplus(-0.0) + softplus(-2.0)) / 2
    assert losses.generator_adversarial_loss("vanilla", fake).item() == pytest.approx(expected_g)
    # discriminator: -log D(y) - log(1 - D(G(x)))
    expected_d = (softplus(-1.0) + softplus(3.0)) / 2 + (softplus(0.0) + softplus(2.0)) / 2
    assert losses.discriminator_loss("vanilla", real, fake).item() == pytest.approx(expected_d)


def test_ragan_losses_equal_hand_computed_values():
    real, fake = t(1.0, 3.0), t(0.0, -2.0)  # E[C(xr)] = 2, E[C(xf)] = -1
    rel_real = [1.0 - (-1.0), 3.0 - (-1.0)]  # C(xr) - E[C(xf)]
    rel_fake = [0.0 - 2.0, -2.0 - 2.0]  # C(xf) - E[C(xr)]
    # ESRGAN eq. 2: L_D = -E[log D_Ra(xr, xf)] - E[log(1 - D_Ra(xf, xr))]
    expected_d = sum(softplus(-v) for v in rel_real) / 2 + sum(softplus(v) for v in rel_fake) / 2
    assert losses.discriminator_loss("ragan", real, fake).item() == pytest.approx(expected_d)
    # ESRGAN eq. 3 (symmetric): L_G = -E[log(1 - D_Ra(xr, xf))] - E[log D_Ra(xf, xr)]
    expected_g = sum(softplus(v) for v in rel_real) / 2 + sum(softplus(-v) for v in rel_fake) / 2
    assert losses.generator_adversarial_loss("ragan", fake, real).item() == pytest.approx(expected_g)
    # the same two numbers written out (softplus by hand: ln(1 + e^x)), so a slip in the formulas above cannot hide
    assert losses.discriminator_loss("ragan", real, fake).item() == pytest.approx(0.1450779, abs=1e-6)
    assert losses.generator_adversarial_loss("ragan", fake, real).item() == pytest.approx(6.1450779, abs=1e-6)


def test_ragan_generator_loss_does_not_train_through_real_logits():
    real = t(1.0, 3.0).requires_grad_()
    fake = t(0.0, -2.0).requires_grad_()
    losses.generator_adversarial_loss("ragan", fake, real).backward()
    assert real.grad is None and fake.grad is not None and fake.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="needs the discriminator's logits on real"):
        losses.generator_adversarial_loss("ragan", fake)


def test_perceptual_feature_scale_is_the_papers_1_over_12_75():
    sr, hr = torch.rand(2, 3, 4, 4), torch.rand(2, 3, 4, 4)
    plain = losses.PerceptualLoss(nn.Identity(), "mse")(sr, hr)
    scaled = losses.PerceptualLoss(nn.Identity(), "mse", losses.SRGAN_FEATURE_SCALE)(sr, hr)
    assert scaled.item() == pytest.approx(plain.item() / 12.75**2)  # ~0.006 x, the paper's "rescaling factor"
    assert losses.PerceptualLoss(nn.Identity(), "l1")(sr, hr).item() == pytest.approx((sr - hr).abs().mean().item())


def test_perceptual_loss_on_vgg_equals_feature_mse_and_only_differentiates_sr():
    torch.manual_seed(0)
    ext = VGGFeatureExtractor("conv5_4", weights="random")
    sr = torch.rand(1, 3, 32, 32, requires_grad=True)
    hr = torch.rand(1, 3, 32, 32, requires_grad=True)
    loss = losses.PerceptualLoss(ext, "l1")(sr, hr)
    with torch.no_grad():
        expected = (ext(sr) - ext(hr)).abs().mean()
    torch.testing.assert_close(loss.detach(), expected)
    loss.backward()
    assert sr.grad is not None and hr.grad is None


def test_real_esrgans_five_layer_perceptual_loss_is_the_weighted_sum_over_torchvision_slices():
    """Real-ESRGAN x4plus: L1 on pre-activation conv1_2 0.1, conv2_2 0.1, conv3_4 1, conv4_4 1, conv5_4 1, from one
    VGG pass; each layer's features computed here by torchvision's vgg19().features cut at that layer (a conv layer
    output, before its in-place ReLU), with the same weights."""
    from torchvision.models import vgg19

    from srgan_lib.models.vgg import vgg19_layer_names

    torch.manual_seed(0)
    weights = {"conv1_2": 0.1, "conv2_2": 0.1, "conv3_4": 1.0, "conv4_4": 1.0, "conv5_4": 1.0}
    loss_fn = losses.perceptual_loss("l1", weights, 1.0, "random")
    reference = vgg19().features.eval()
    reference.load_state_dict(loss_fn.extractor.features.state_dict(), strict=True)  # (relu5_4, pool5: no weights)
    sr, hr = torch.rand(1, 3, 32, 32, requires_grad=True), torch.rand(1, 3, 32, 32)
    loss = loss_fn(sr, hr)
    names = vgg19_layer_names()
    mean, std = loss_fn.extractor.mean, loss_fn.extractor.std
    with torch.no_grad():
        expected = 0.0
        for layer, w in weights.items():
            cut = reference[: names.index(layer) + 1]
            expected += w * (cut((sr - mean) / std) - cut((hr - mean) / std)).abs().mean()
    torch.testing.assert_close(loss.detach(), expected)
    loss.backward()
    assert sr.grad is not None and float(sr.grad.abs().sum()) > 0


def test_multistep_schedules_of_the_papers():
    # SRGAN: 1e-4 for 1e5 updates then 1e-5
    assert multistep_lr(1e-4, [100_000], 0.1, 100_000) == 1e-4
    assert multistep_lr(1e-4, [100_000], 0.1, 100_001) == pytest.approx(1e-5)
    # ESRGAN: halved at 50k, 100k, 200k, 300k
    ms = [50_000, 100_000, 200_000, 300_000]
    assert [multistep_lr(1e-4, ms, 0.5, i) for i in (1, 50_001, 150_000, 250_000, 400_000)] == pytest.approx(
        [1e-4, 5e-5, 2.5e-5, 1.25e-5, 6.25e-6]
    )


def test_warmup_and_cosine_schedule_by_hand():
    # linear warm-up over 100 updates, then half a cosine from 2e-3 to 0 at update 1000
    lr = lambda i: learning_rate(2e-3, i, schedule="cosine", iterations=1000, warmup=100)  # noqa: E731
    assert lr(1) == pytest.approx(2e-5) and lr(50) == pytest.approx(1e-3) and lr(100) == pytest.approx(2e-3)
    assert lr(550) == pytest.approx(1e-3)  # half way through the cosine: (1 + cos(pi / 2)) / 2
    assert lr(325) == pytest.approx(2e-3 * (1 + math.cos(math.pi / 4)) / 2)
    assert lr(1000) == pytest.approx(0.0, abs=1e-15)
    floor = learning_rate(1e-4, 1000, schedule="cosine", iterations=1000, lr_min=1e-6)
    assert floor == pytest.approx(1e-6)
    assert all(lr(i) >= lr(i + 1) for i in range(100, 1000))  # monotone after the warm-up
    # warm-up in front of the papers' steps; the steps themselves unchanged
    step = lambda i: learning_rate(1e-4, i, schedule="multistep", iterations=400, warmup=10,  # noqa: E731
                                   milestones=[200], gamma=0.5)
    assert step(5) == pytest.approx(5e-5) and step(200) == 1e-4 and step(201) == pytest.approx(5e-5)
    with pytest.raises(ValueError, match="unknown schedule"):
        learning_rate(1e-4, 1, schedule="linear", iterations=10)


def test_ema_is_the_running_average():
    model = nn.Linear(1, 1, bias=False)
    nn.init.zeros_(model.weight)
    ema = EMA(model, decay=0.9)
    with torch.no_grad():
        model.weight.fill_(1.0)
    ema.update(model)
    assert ema.model.weight.item() == pytest.approx(0.1)
    ema.update(model)
    assert ema.model.weight.item() == pytest.approx(0.19)  # 0.9 * 0.1 + 0.1 * 1
    assert not ema.model.weight.requires_grad
