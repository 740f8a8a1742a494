"""The GAN step's semantics against a reference written from the papers' formulas with plain torch (SRGAN eq. 2-6,
ESRGAN eq. 1-3): which logits are "real" and which "fake" in each loss, the generator's gradient through a discriminator
that is not updated by it, the discriminator trained on the detached SR batch, and ``d_steps`` updates per step. A
swapped pair of arguments, a missing detach or a discriminator updated on the generator's loss changes the weights
after one step, which is what is compared here."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from srgan_lib.models import from_unit, to_unit
from srgan_lib.training.distributed import Dist
from srgan_lib.training.trainer import Trainer
from tests.conftest import micro_params


def _bce(logits: torch.Tensor, target: float) -> torch.Tensor:
    return F.binary_cross_entropy_with_logits(logits, torch.full_like(logits, target))


def _reference_step(trainer: Trainer, lr_u8: torch.Tensor, hr_u8: torch.Tensor, d_steps: int):
    """One iteration as the papers define it, on copies of the trainer's networks (plain Adam, fp32)."""
    cfg = trainer.cfg
    g, d = copy.deepcopy(trainer.net_g), copy.deepcopy(trainer.net_d)
    opt_g = torch.optim.Adam(g.parameters(), lr=cfg.lr, betas=tuple(cfg.betas), foreach=False)
    opt_d = torch.optim.Adam(d.parameters(), lr=cfg.d_lr, betas=tuple(cfg.betas), foreach=False)
    lr, hr01 = lr_u8.float() / 255, hr_u8.float() / 255
    hr = from_unit(hr01, trainer.out_range)
    pix = {"l1": F.l1_loss, "mse": F.mse_loss}

    sr = g(lr)
    loss_g = sr.new_zeros(())
    if cfg.pixel.type != "none":
        loss_g = loss_g + cfg.pixel.weight * pix[cfg.pixel.type](sr, hr)
    if cfg.perceptual.type != "none":
        phi, s = trainer.perceptual.extractor, cfg.perceptual.feature_scale
        loss_g = loss_g + cfg.perceptual.weight * pix[cfg.perceptual.type](
            s * phi(to_unit(sr, trainer.out_range)), s * phi(hr01).detach())
    fake = d(sr)
    if cfg.gan.type == "vanilla":  # SRGAN: -log D(G(x))
        adv = _bce(fake, 1.0)
    else:  # ESRGAN eq. 3: L_G = -E[log(1 - D_Ra(xr, xf))] - E[log D_Ra(xf, xr)]
        real = d(hr).detach()
        adv = _bce(real - fake.mean(), 0.0) + _bce(fake - real.mean(), 1.0)
    loss_g = loss_g + cfg.gan.weight * adv
    opt_g.zero_grad()
    loss_g.backward()
    opt_g.step()  # only G moves: D's gradients from this loss are discarded below

    sr = sr.detach()
    for _ in range(d_steps):
        real, fake = d(hr), d(sr)
        if cfg.gan.type == "vanilla":  # SRGAN eq. 2: max log D(y) + log(1 - D(G(x)))
            loss_d = _bce(real, 1.0) + _bce(fake, 0.0)
        else:  # ESRGAN eq. 2: L_D = -E[log D_Ra(xr, xf)] - E[log(1 - D_Ra(xf, xr))]
            loss_d = _bce(real - fake.mean(), 1.0) + _bce(fake - real.mean(), 0.0)
        opt_d.zero_grad()
        loss_d.backward()
        opt_d.step()
    return g, d, float(loss_g), float(loss_d)


@pytest.mark.parametrize(("stage", "d_steps"), [("srgan", 1), ("esrgan", 1), ("esrgan", 2)])
def test_one_gan_step_is_the_papers_update(stage, d_steps, micro_data, tmp_path):
    params = micro_params(micro_data, tmp_path, stage, **{
        "train.amp": "none", "train.channels_last": "false", "train.fused_adam": "false",
        f"{stage}.ema_decay": 0, f"{stage}.d_steps": d_steps})
    trainer = Trainer(stage, params, torch.device("cpu"), Dist())
    trainer.set_lr(1)
    gen = torch.Generator().manual_seed(3)
    hr_u8 = torch.randint(0, 256, (4, 3, 32, 32), generator=gen, dtype=torch.uint8)
    lr_u8 = F.avg_pool2d(hr_u8.float(), 4).round().to(torch.uint8)
    g_ref, d_ref, loss_g, loss_d = _reference_step(trainer, lr_u8, hr_u8, d_steps)
    d_before = copy.deepcopy(trainer.net_d.state_dict())

    terms = trainer.step(lr_u8, hr_u8)

    assert float(terms["total_g"]) == pytest.approx(loss_g, rel=1e-5)
    assert float(terms["gan_d"]) == pytest.approx(loss_d, rel=1e-5)
    for name, ref in (("generator", g_ref), ("discriminator", d_ref)):
        net = trainer.net_g if name == "generator" else trainer.net_d
        for (key, a), b in zip(net.state_dict().items(), ref.state_dict().values(), strict=True):
            if a.is_floating_point():
                torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6, msg=f"{stage} {name} {key}")
    moved = [k for k, v in trainer.net_d.state_dict().items()
             if v.is_floating_point() and not torch.equal(v, d_before[k])]
    assert moved  # the discriminator was trained
