"""SRResNet generator and SRGAN discriminator (Ledig et al. 2017, Fig. 4), with the paper's layer layout.

The generator maps LR images in [0, 1] to SR images in [-1, 1] (tanh), as the paper and the PyTorch tutorial do.
"""

from __future__ import annotations

import re
from typing import Any

import torch
from torch import nn

from srgan_lib.models.spec import NetworkSpec


class ResidualBlock(nn.Module):
    """conv3x3-BN-PReLU-conv3x3-BN with an identity skip (the paper's B residual blocks)."""

    def __init__(self, num_feat: int = 64) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.bn1 = nn.BatchNorm2d(num_feat)
        self.prelu = nn.PReLU()
        self.conv2 = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.bn2 = nn.BatchNorm2d(num_feat)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.bn2(self.conv2(self.prelu(self.bn1(self.conv1(x)))))


class SubPixelUpsample(nn.Module):
    """conv (C -> 4C), PixelShuffle(2), PReLU: one x2 sub-pixel convolution step."""

    def __init__(self, num_feat: int = 64) -> None:
        super().__init__()
        self.conv = nn.Conv2d(num_feat, num_feat * 4, 3, 1, 1)
        self.shuffle = nn.PixelShuffle(2)
        self.prelu = nn.PReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.prelu(self.shuffle(self.conv(x)))


class SRResNet(nn.Module):
    """The SRResNet / SRGAN generator: 9x9 head, B residual blocks, long skip, log2(scale) sub-pixel steps, 9x9 tail."""

    def __init__(self, num_block: int = 16, num_feat: int = 64, scale: int = 4,
                 zero_init_residual: bool = False) -> None:
        """``zero_init_residual``: start every residual block as the identity (its last BatchNorm's scale at 0, as
        torchvision's ResNet option and Goyal et al. 2017), so the skip carries the image from the first update; the
        paper's network and parameter count are unchanged (off by default: PyTorch's initialisation)."""
        super().__init__()
        if scale not in (2, 4, 8):
            raise ValueError(f"SRResNet upsamples by powers of two (2, 4, 8), got scale {scale}")
        self.scale = scale
        self.conv_first = nn.Conv2d(3, num_feat, 9, 1, 4)
        self.prelu = nn.PReLU()
        self.body = nn.Sequential(*(ResidualBlock(num_feat) for _ in range(num_block)))
        self.conv_body = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.bn_body = nn.BatchNorm2d(num_feat)
        self.upsample = nn.Sequential(*(SubPixelUpsample(num_feat) for _ in range(scale.bit_length() - 1)))
        self.conv_last = nn.Conv2d(num_feat, 3, 9, 1, 4)
        if zero_init_residual:
            for block in self.body:
                nn.init.zeros_(block.bn2.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feat = self.prelu(self.conv_first(x))
        feat = feat + self.bn_body(self.conv_body(self.body(feat)))
        return torch.tanh(self.conv_last(self.upsample(feat)))


class SRGANDiscriminator(nn.Module):
    """The SRGAN discriminator: 8 conv blocks (k3, n64..512, s1/s2), LeakyReLU 0.2, dense 1024, one logit.

    For other input sizes than 96x96 an adaptive average pool brings the features to the paper's 6x6 first (an identity
    at 96x96, so the paper configuration is unchanged).
    """

    def __init__(self, num_feat: int = 64, pooled: int = 6) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        in_ch = 3
        for i in range(8):
            out_ch = num_feat * 2 ** (i // 2)
            layers.append(nn.Conv2d(in_ch, out_ch, 3, 1 + i % 2, 1))
            if i > 0:
                layers.append(nn.BatchNorm2d(out_ch))
            layers.append(nn.LeakyReLU(0.2, inplace=True))
            in_ch = out_ch
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(pooled)
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Linear(in_ch * pooled * pooled, num_feat * 16), nn.LeakyReLU(0.2, inplace=True),
            nn.Linear(num_feat * 16, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.pool(self.features(x)))


def _detect(state: dict[str, torch.Tensor]) -> dict[str, Any] | None:
    """SRResNet's options from its state dict (None when the keys are another network's)."""
    if "conv_first.weight" not in state or "body.0.bn1.weight" not in state:
        return None
    blocks = {int(m.group(1)) for k in state if (m := re.match(r"body\.(\d+)\.", k))}
    ups = {int(m.group(1)) for k in state if (m := re.match(r"upsample\.(\d+)\.", k))}
    return {"num_block": len(blocks), "num_feat": state["conv_first.weight"].shape[0], "scale": 2 ** len(ups)}


SPEC = NetworkSpec("srresnet", "SRResNet", SRResNet, "generator", input_size=(24, 24), paper_parameters=1_549_462,
                   output_range=(-1.0, 1.0), precisions=("fp32", "bf16", "fp16"), detect=_detect,
                   widest=lambda options: 2 * options.get("num_feat", 64))
DISCRIMINATOR_SPEC = NetworkSpec("srgan_discriminator", "SRGAN discriminator", SRGANDiscriminator, "discriminator",
                                 input_size=(96, 96), paper_parameters=23_565_505)
