"""The training sections of ``params.yaml``: ``train`` (shared by every recipe) and one :class:`Recipe` per
recipe (the same keys for every recipe: one trainer, configured). Networks, criteria and GAN types are the
registries' names."""

import re
from typing import Annotated, Any

from pydantic import BeforeValidator, model_validator

from srgan_lib.config.fields import Bool, Choice, Int, ListOf, Number, Options, Section, Text, fail
from srgan_lib.losses import CRITERIA, GAN_TYPES
from srgan_lib.models import DISCRIMINATORS as REGISTERED_DISCRIMINATORS
from srgan_lib.models import GENERATORS
from srgan_lib.training.optim import SCHEDULES

DISCRIMINATORS = ("none", *REGISTERED_DISCRIMINATORS)
LOSS_TYPES = ("none", *CRITERIA)
COMPILE_MODES = ("none", "default", "reduce-overhead", "max-autotune")  # torch.compile (reduce-overhead: CUDA graphs)
AMP_MODES = ("none", "auto", "bf16", "fp16")
VGG_LAYER_PATTERN = r"(conv|relu)[1-5]_[1-4]|pool[1-5]"
DELIVERIES = ("last", "psnr_y", "niqe")  # last | the validation with the highest PSNR-Y | the lowest NIQE
DEGRADATIONS = ("bicubic", "realworld")  # the degrade stage's LR (bicubic, or a folder's own) | params' degradation


class LossTerm(Section):
    """A pixel loss: criterion and weight in L_G."""

    type: Choice(LOSS_TYPES)
    weight: Number(0)
    usm: Bool  # compare with the unsharp-masked HR (Real-ESRGAN's targets) instead of the HR


def _vgg_layers(value: Any) -> str | dict[str, float]:
    ok = lambda name: isinstance(name, str) and re.fullmatch(VGG_LAYER_PATTERN, name)  # noqa: E731
    if ok(value):
        return value
    if isinstance(value, dict) and value and all(ok(k) and isinstance(w, int | float) and not isinstance(w, bool)
                                                 and w >= 0 for k, w in value.items()):
        return {k: float(w) for k, w in value.items()}
    raise fail(f"must be a VGG19 layer such as relu5_4 or conv5_4, or a mapping of layers to weights >= 0 such as "
               f"{{conv1_2: 0.1, conv5_4: 1}}, got {value!r}")


VGGLayers = Annotated[str | dict[str, float], BeforeValidator(_vgg_layers)]


class Perceptual(Section):
    """The VGG19 feature loss: criterion, layer (or layers with weights: Real-ESRGAN's five), weight, and the features'
    rescaling (SRGAN's 1/12.75)."""

    type: Choice(LOSS_TYPES)
    layer: VGGLayers
    weight: Number(0)
    feature_scale: Number(0, exclusive_min=True)
    usm: Bool


class Adversarial(Section):
    """The generator's adversarial term: GAN type (vanilla: SRGAN, ragan: ESRGAN) and weight."""

    type: Choice(("none", *GAN_TYPES))
    weight: Number(0)
    usm: Bool  # the discriminator's real images unsharp-masked (Real-ESRGAN: false)


class Recipe(Section):
    """One training recipe (a section that params.yaml's ``recipes`` names): networks, data, optimiser and
    schedule, losses, cadence."""

    generator: Choice(GENERATORS)
    generator_options: Options
    discriminator: Choice(DISCRIMINATORS)
    discriminator_options: Options
    init_from: Text  # a generator checkpoint to start from, or 'none'
    init_d_from: Text = "none"  # a GAN recipe's discriminator file to start from (Real-ESRGAN's netD layout), or 'none'
    deliver: Choice(DELIVERIES) = "last"  # the delivered generator: the last, or the best validated by this metric
    degradation: Choice(DEGRADATIONS)  # how the training LR is made
    batch_size: Int(minimum=1)
    hr_size: Int(minimum=8)
    augment: Bool
    iterations: Int(minimum=1)
    lr: Number(0, exclusive_min=True)
    d_lr: Number(0, exclusive_min=True)
    betas: ListOf(Number(0, 1))
    schedule: Choice(SCHEDULES)
    warmup: Int(minimum=0)
    milestones: ListOf(Int(minimum=1), non_empty=False)
    gamma: Number(0, exclusive_min=True)
    lr_min: Number(0)
    d_steps: Int(minimum=1)
    ema_decay: Number(0, 1)
    grad_clip: Number(0) = 0.0  # the generator's gradients clipped to this global L2 norm before Adam (0: off)
    pixel: LossTerm
    perceptual: Perceptual
    gan: Adversarial
    val_every: Int(minimum=0)
    ckpt_every: Int(minimum=1)
    log_every: Int(minimum=1)

    @model_validator(mode="after")
    def _consistent(self) -> "Recipe":
        """What no single key shows: each error names the key to change."""

        def bad(key: str, msg: str) -> Exception:
            return fail(f"'{key}': {msg}")  # the loader prefixes the stage: 'esrgan.warmup': ...

        if len(self.betas) != 2 or not all(0 <= b < 1 for b in self.betas):
            raise bad("betas", f"Adam needs two betas in [0, 1), got {self.betas}")
        if self.milestones != sorted(set(self.milestones)):
            raise bad("milestones", f"must be strictly increasing iterations, got {self.milestones}")
        if self.warmup >= self.iterations:
            raise bad("warmup", f"{self.warmup} warm-up iterations leave none of the {self.iterations} iterations")
        if self.schedule == "cosine" and self.lr_min >= self.lr:
            raise bad("lr_min", f"the cosine schedule decays from lr {self.lr} to lr_min, which must be smaller, got "
                      f"{self.lr_min}")
        if self.ema_decay >= 1:
            raise bad("ema_decay", f"must be in [0, 1) (0 turns EMA off), got {self.ema_decay}")
        if all(t.type == "none" for t in (self.pixel, self.perceptual, self.gan)):
            raise bad("pixel", "every loss is 'none': set at least one of pixel/perceptual/gan.type")
        if self.gan.type != "none" and self.discriminator == "none":
            raise bad("discriminator", f"gan.type is {self.gan.type!r}, so a discriminator is needed")
        if self.discriminator == "esrgan_discriminator":
            size = self.discriminator_options.get("input_size", 128)
            if size != self.hr_size:
                raise bad("discriminator_options", f"input_size {size} must equal hr_size {self.hr_size} (the "
                          "VGG-style discriminator has a fixed input size)")
        if self.init_d_from != "none" and self.discriminator == "none":
            raise bad("init_d_from", "there is no discriminator to initialise (discriminator: none)")
        if self.deliver != "last" and not self.val_every:
            raise bad("deliver", f"{self.deliver!r} picks among validations during the run: set val_every > 0")
        if self.val_every and self.val_every > self.iterations:
            raise bad("val_every", f"{self.val_every} is beyond iterations ({self.iterations}); use 0 to validate "
                      "only at the end")
        return self

    @property
    def has_gan(self) -> bool:
        """Trained with an adversarial term (and therefore a discriminator)."""
        return self.gan.type != "none"


class Train(Section):
    """``train``: device, speed settings, places; shared by every training recipe."""

    device: Text = "auto"
    seed: Int(minimum=0) = 0
    threads: Int(minimum=0) = 0
    dist_timeout: Int(minimum=1) = 600
    amp: Choice(AMP_MODES) = "bf16"
    channels_last: Bool = True
    fused_adam: Bool = True
    ema_foreach: Bool = True
    compile: Choice(COMPILE_MODES) = "none"
    sync_every: Int(minimum=1) = 1
    workers: Int(minimum=0) = 0
    vgg_weights: Text = "imagenet"
    train_list: Text = "data/lists/train.json"
    lr_dir: Text = "data/lr/train"
    store: Text = "data/store/train"
    val_list: Text = "data/lists/Set5.json"
    val_list_realworld: Text = "data/realworld/lists/Set5-RW.json"  # the validation of `degradation: realworld` recipes
    val_images: Int(minimum=0) = 5
    val_crop: Int(minimum=0) = 128
    out: Text = "runs"
    models: Text = "models"
    keep_checkpoints: Int(minimum=1) = 2
    precise_bn: Int(minimum=0) = 50
    log_degradations: Bool = False  # debug: every sample's real-world draws in <out>/<recipe>/degradations.jsonl
