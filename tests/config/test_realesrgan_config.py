"""configs/realesrgan.yaml: Real-ESRGAN x4plus's published settings (train_realesrnet_x4plus.yml /
train_realesrgan_x4plus.yml, as ../shared/DESIGN.md section 10 lists them, written here by hand), resolved through
its overlay chain (paper.yaml, params.yaml), and runnable: one training step of each recipe at toy sizes."""

from __future__ import annotations

import pytest
import torch

from srgan_lib.config.paramfile import apply_overrides, read_params
from srgan_lib.config.params import validate
from srgan_lib.data.degradations import DegradationSettings
from srgan_lib.models import build_model, count_parameters
from srgan_lib.training.distributed import Dist
from srgan_lib.training.trainer import Trainer
from tests.conftest import REPO

CONFIG = REPO / "configs" / "realesrgan.yaml"


def _params(overrides: list[str] | None = None):
    return validate(apply_overrides(read_params(CONFIG), overrides or []), folders=False)


def test_the_published_x4plus_settings():
    p = _params()
    assert p.recipes.finetuned == {"srgan": "srresnet", "esrgan": "rrdbnet", "realesrnet": "rrdbnet",
                                   "realesrgan": "realesrnet"}
    net, gan = p.stage("realesrnet"), p.stage("realesrgan")
    for r in (net, gan):
        assert r.generator == "rrdbnet" and r.generator_options == {"num_block": 23, "num_feat": 64, "num_grow_ch": 32}
        assert r.degradation == "realworld" and (r.batch_size, r.hr_size) == (48, 256)  # 12 per GPU x 4 GPUs, GT 256
        assert r.betas == [0.9, 0.99] and r.ema_decay == 0.999 and r.pixel.model_dump() == {
            "type": "l1", "weight": 1.0, "usm": True}
    assert (net.lr, net.iterations, net.milestones, net.init_from) == (2e-4, 1_000_000, [1_000_000],
                                                                       "models/rrdbnet.pth")
    assert net.discriminator == "none" and net.perceptual.type == "none" and net.gan.type == "none"
    assert (gan.lr, gan.d_lr, gan.iterations, gan.init_from) == (1e-4, 1e-4, 400_000, "models/realesrnet.pth")
    assert gan.perceptual.layer == {"conv1_2": 0.1, "conv2_2": 0.1, "conv3_4": 1.0, "conv4_4": 1.0, "conv5_4": 1.0}
    assert (gan.perceptual.type, gan.perceptual.weight, gan.perceptual.usm) == ("l1", 1.0, True)
    assert gan.gan.model_dump() == {"type": "vanilla", "weight": 0.1, "usm": False}  # no USM for the GAN term
    assert gan.discriminator == "unet_discriminator_sn"
    assert count_parameters(build_model(gan.discriminator, **gan.discriminator_options)) == 4_376_897
    assert p.degradation.settings(4) == DegradationSettings()  # the x4plus chain


@pytest.mark.parametrize("recipe", ["realesrnet", "realesrgan"])
def test_each_recipe_takes_a_training_step(recipe):
    tiny = [f"{recipe}.generator_options={{num_block: 1, num_feat: 8, num_grow_ch: 4}}", f"{recipe}.batch_size=2",
            f"{recipe}.hr_size=32", f"{recipe}.init_from=none", "train.vgg_weights=random", "train.amp=none",
            f"{recipe}.discriminator_options={{num_feat: 8}}" if recipe == "realesrgan" else "train.seed=0"]
    trainer = Trainer(recipe, _params(tiny), torch.device("cpu"), Dist())
    hr = torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8)
    terms = trainer.step(hr[:, :, ::4, ::4], hr, iteration=1)
    expected = {"pixel", "total_g"} | ({"perceptual", "gan_g", "gan_d"} if recipe == "realesrgan" else set())
    assert expected <= set(terms) and all(torch.isfinite(v) for v in terms.values())
    assert trainer.last_draws is not None  # the real-world chain made its LR
