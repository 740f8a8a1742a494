"""The papers' losses (SRGAN sec. 2.2, ESRGAN sec. 3): pixel, perceptual (VGG features), adversarial (GAN, RaGAN).

Conventions:
- ``C(x)`` is the discriminator's raw logit; every adversarial loss is written with ``BCEWithLogits`` on logits, which
  is the numerically stable form of ``-log(sigmoid(.))``.
- RaGAN (ESRGAN eq. 1-3) uses the *sum* of its two terms for both players, as the paper writes it. BasicSR averages
  them (x0.5), which halves the effective adversarial weight; with BasicSR's numbers use twice our ``gan.weight``.
- SRGAN's content loss scales the VGG feature maps by 1/12.75 before the MSE (paper, section 3.2.2), i.e. the loss is
  multiplied by 1/12.75^2 ~ 0.00615.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch
import torch.nn.functional as F
from torch import nn

Criterion = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
CRITERIA: dict[str, Criterion] = {"mse": F.mse_loss, "l1": F.l1_loss}
GAN_TYPES = ("vanilla", "ragan")
SRGAN_FEATURE_SCALE = 1 / 12.75


def criterion(name: str) -> Criterion:
    """The elementwise criterion ``mse`` or ``l1`` (mean reduction)."""
    try:
        return CRITERIA[name]
    except KeyError:
        raise ValueError(f"unknown criterion {name!r}; choose one of {', '.join(CRITERIA)}") from None


class PixelLoss(nn.Module):
    """Mean pixel loss between SR and HR (SRResNet: MSE on [-1, 1]; RRDBNet/ESRGAN: L1 on [0, 1])."""

    def __init__(self, kind: str = "mse") -> None:
        super().__init__()
        self.kind = kind
        self.fn = criterion(kind)

    def forward(self, sr: torch.Tensor, hr: torch.Tensor) -> torch.Tensor:
        return self.fn(sr, hr)


class PerceptualLoss(nn.Module):
    """``criterion(s * phi(SR), s * phi(HR))``: ``phi`` a frozen VGG cut (inputs in [0, 1]), ``s`` a feature scale.

    The HR features carry no graph (they are a target), so only the SR branch is differentiated.
    """

    def __init__(self, extractor: nn.Module, kind: str = "mse", feature_scale: float = 1.0,
                 layer_weights: Mapping[str, float] | None = None) -> None:
        """``layer_weights``: with an extractor of several layers (a dict out), the weighted sum over them
        (Real-ESRGAN: conv1_2 0.1, conv2_2 0.1, conv3_4 1, conv4_4 1, conv5_4 1), as BasicSR's PerceptualLoss."""
        super().__init__()
        self.extractor = extractor
        self.kind = kind
        self.fn = criterion(kind)
        self.feature_scale = float(feature_scale)
        self.layer_weights = dict(layer_weights or {})

    def _term(self, feats: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if self.feature_scale != 1.0:
            feats, target = feats * self.feature_scale, target * self.feature_scale
        return self.fn(feats, target)

    def forward(self, sr: torch.Tensor, hr: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            target = self.extractor(hr)
        feats = self.extractor(sr)
        if not self.layer_weights:
            return self._term(feats, target)
        return sum(w * self._term(feats[k], target[k]) for k, w in self.layer_weights.items())


def perceptual_loss(kind: str, layer: str | Mapping[str, float], feature_scale: float, vgg_weights: str
                    ) -> PerceptualLoss:
    """The perceptual loss of a recipe: one VGG19 layer, or several with their weights from one pass; a missing
    VGG weights file is an error naming ``train.vgg_weights``."""
    from srgan_lib.models.vgg import VGGFeatureExtractor, VGGWeightsMissing

    try:
        extractor = VGGFeatureExtractor(layer if isinstance(layer, str) else list(layer), vgg_weights)
    except VGGWeightsMissing as exc:
        raise VGGWeightsMissing(f"{exc} (params: train.vgg_weights)") from None
    return PerceptualLoss(extractor, kind, feature_scale, None if isinstance(layer, str) else layer)


def _bce(logits: torch.Tensor, target: float) -> torch.Tensor:
    return F.binary_cross_entropy_with_logits(logits, torch.full_like(logits, target))


def generator_adversarial_loss(kind: str, fake: torch.Tensor, real: torch.Tensor | None = None) -> torch.Tensor:
    """The generator's adversarial loss from the logits of SR (``fake``) and, for RaGAN, HR (``real``) images.

    vanilla: ``BCE(C(G(x)), 1)`` (SRGAN's ``-log D(G(x))``).
    ragan:   ``BCE(C(xr) - E[C(xf)], 0) + BCE(C(xf) - E[C(xr)], 1)`` with ``C(xr)`` detached (ESRGAN eq. 3).
    """
    if kind == "vanilla":
        return _bce(fake, 1.0)
    if kind == "ragan":
        if real is None:
            raise ValueError("the RaGAN generator loss needs the discriminator's logits on real images")
        real = real.detach()
        return _bce(real - fake.mean(), 0.0) + _bce(fake - real.mean(), 1.0)
    raise ValueError(f"unknown GAN type {kind!r}; choose one of {', '.join(GAN_TYPES)}")


def discriminator_loss(kind: str, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """The discriminator's loss from logits on HR (``real``) and detached SR (``fake``) images.

    vanilla: ``BCE(C(y), 1) + BCE(C(G(x)), 0)``.
    ragan:   ``BCE(C(xr) - E[C(xf)], 1) + BCE(C(xf) - E[C(xr)], 0)`` (ESRGAN eq. 2).
    """
    if kind == "vanilla":
        return _bce(real, 1.0) + _bce(fake, 0.0)
    if kind == "ragan":
        return _bce(real - fake.mean(), 1.0) + _bce(fake - real.mean(), 0.0)
    raise ValueError(f"unknown GAN type {kind!r}; choose one of {', '.join(GAN_TYPES)}")
