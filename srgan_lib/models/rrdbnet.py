"""RRDBNet, the ESRGAN generator (Wang et al. 2018), and ESRGAN's VGG-style discriminator.

Parameter names follow BasicSR / Real-ESRGAN (``conv_first``, ``body.N.rdb1.conv1``, ``conv_body``, ``conv_up1``, ...),
so the community checkpoints load with ``strict=True``; :func:`convert_legacy_state_dict` maps the two older ESRGAN
layouts onto them.
"""

from __future__ import annotations

import re
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from srgan_lib.models.spec import NetworkSpec


def _scaled_kaiming_(module: nn.Module, scale: float = 0.1) -> None:
    """Kaiming-normal init scaled by ``scale`` (ESRGAN: 0.1 eases training of very deep residual networks)."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight)
            m.weight.data.mul_(scale)
            if m.bias is not None:
                m.bias.data.zero_()


class ResidualDenseBlock(nn.Module):
    """Five densely connected 3x3 convs (growth ``num_grow_ch``), LeakyReLU 0.2, residual scaled by 0.2."""

    def __init__(self, num_feat: int = 64, num_grow_ch: int = 32) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(num_feat, num_grow_ch, 3, 1, 1)
        self.conv2 = nn.Conv2d(num_feat + num_grow_ch, num_grow_ch, 3, 1, 1)
        self.conv3 = nn.Conv2d(num_feat + 2 * num_grow_ch, num_grow_ch, 3, 1, 1)
        self.conv4 = nn.Conv2d(num_feat + 3 * num_grow_ch, num_grow_ch, 3, 1, 1)
        self.conv5 = nn.Conv2d(num_feat + 4 * num_grow_ch, num_feat, 3, 1, 1)
        self.lrelu = nn.LeakyReLU(0.2, inplace=True)
        _scaled_kaiming_(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1 = self.lrelu(self.conv1(x))
        x2 = self.lrelu(self.conv2(torch.cat((x, x1), 1)))
        x3 = self.lrelu(self.conv3(torch.cat((x, x1, x2), 1)))
        x4 = self.lrelu(self.conv4(torch.cat((x, x1, x2, x3), 1)))
        x5 = self.conv5(torch.cat((x, x1, x2, x3, x4), 1))
        return x + 0.2 * x5


class RRDB(nn.Module):
    """Residual-in-residual dense block: three RDBs, the whole again residual-scaled by 0.2."""

    def __init__(self, num_feat: int = 64, num_grow_ch: int = 32) -> None:
        super().__init__()
        self.rdb1 = ResidualDenseBlock(num_feat, num_grow_ch)
        self.rdb2 = ResidualDenseBlock(num_feat, num_grow_ch)
        self.rdb3 = ResidualDenseBlock(num_feat, num_grow_ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + 0.2 * self.rdb3(self.rdb2(self.rdb1(x)))


class RRDBNet(nn.Module):
    """ESRGAN generator: conv_first, ``num_block`` RRDBs, conv_body + long skip, 2x (nearest x2, conv, LReLU), head.

    No batch norm. Input and output are RGB in [0, 1] (unclamped output). ``scale`` 2 and 1 are Real-ESRGAN's
    x2plus / x1 layouts: the input is pixel-unshuffled by 4 / scale first (``conv_first`` takes 12 or 48 channels),
    after a reflection pad to a multiple of that factor that is cropped off the output again.
    """

    def __init__(self, num_block: int = 23, num_feat: int = 64, num_grow_ch: int = 32, scale: int = 4) -> None:
        super().__init__()
        if scale not in (1, 2, 4):
            raise ValueError(f"RRDBNet is built for x4 (x2 and x1 by pixel-unshuffled input), got scale {scale}")
        self.scale = scale
        self.unshuffle = 4 // scale
        self.conv_first = nn.Conv2d(3 * self.unshuffle**2, num_feat, 3, 1, 1)
        self.body = nn.Sequential(*(RRDB(num_feat, num_grow_ch) for _ in range(num_block)))
        self.conv_body = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.conv_up1 = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.conv_up2 = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.conv_hr = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.conv_last = nn.Conv2d(num_feat, 3, 3, 1, 1)
        self.lrelu = nn.LeakyReLU(0.2, inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        if self.unshuffle > 1:
            f = self.unshuffle
            x = F.pixel_unshuffle(F.pad(x, (0, -w % f, 0, -h % f), mode="reflect") if (h % f or w % f) else x, f)
        feat = self.conv_first(x)
        feat = feat + self.conv_body(self.body(feat))
        feat = self.lrelu(self.conv_up1(F.interpolate(feat, scale_factor=2, mode="nearest")))
        feat = self.lrelu(self.conv_up2(F.interpolate(feat, scale_factor=2, mode="nearest")))
        out = self.conv_last(self.lrelu(self.conv_hr(feat)))
        return out[..., : h * self.scale, : w * self.scale] if self.unshuffle > 1 else out


class VGGStyleDiscriminator(nn.Module):
    """ESRGAN's discriminator for 128x128 input: conv0_0, then (3x3 s1, 4x4 s2) pairs with BN, two linear layers."""

    def __init__(self, num_feat: int = 64, input_size: int = 128) -> None:
        super().__init__()
        if input_size % 32:
            raise ValueError(f"VGGStyleDiscriminator needs an input size divisible by 32, got {input_size}")
        self.conv0_0 = nn.Conv2d(3, num_feat, 3, 1, 1, bias=True)
        self.conv0_1 = nn.Conv2d(num_feat, num_feat, 4, 2, 1, bias=False)
        self.bn0_1 = nn.BatchNorm2d(num_feat)
        widths = [num_feat, num_feat * 2, num_feat * 4, num_feat * 8, num_feat * 8]
        for i in range(1, 5):
            setattr(self, f"conv{i}_0", nn.Conv2d(widths[i - 1], widths[i], 3, 1, 1, bias=False))
            setattr(self, f"bn{i}_0", nn.BatchNorm2d(widths[i]))
            setattr(self, f"conv{i}_1", nn.Conv2d(widths[i], widths[i], 4, 2, 1, bias=False))
            setattr(self, f"bn{i}_1", nn.BatchNorm2d(widths[i]))
        spatial = input_size // 32
        self.linear1 = nn.Linear(widths[4] * spatial * spatial, 100)
        self.linear2 = nn.Linear(100, 1)
        self.lrelu = nn.LeakyReLU(0.2, inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feat = self.lrelu(self.conv0_0(x))
        feat = self.lrelu(self.bn0_1(self.conv0_1(feat)))
        for i in range(1, 5):
            feat = self.lrelu(getattr(self, f"bn{i}_0")(getattr(self, f"conv{i}_0")(feat)))
            feat = self.lrelu(getattr(self, f"bn{i}_1")(getattr(self, f"conv{i}_1")(feat)))
        return self.linear2(self.lrelu(self.linear1(feat.flatten(1))))


_ESRGAN_REPO_NAMES = (
    (r"^RRDB_trunk\.(\d+)\.RDB(\d)\.", r"body.\1.rdb\2."),
    (r"^trunk_conv\.", "conv_body."),
    (r"^upconv1\.", "conv_up1."),
    (r"^upconv2\.", "conv_up2."),
    (r"^HRconv\.", "conv_hr."),
)


def convert_legacy_state_dict(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Map the ESRGAN repository's RRDBNet keys (``RRDB_trunk.N.RDB1.conv1``...) and the oldest sequential layout
    (``model.0``, ``model.1.sub.N.RDBk.convj.0``, ...) to BasicSR names; BasicSR names pass through unchanged."""
    if any(k.startswith("model.") for k in state):
        blocks = {int(m.group(1)) for k in state if (m := re.match(r"^model\.1\.sub\.(\d+)\.RDB", k))}
        trunk = max(blocks) + 1 if blocks else 0
        fixed = {"model.0.": "conv_first.", f"model.1.sub.{trunk}.": "conv_body.", "model.3.": "conv_up1.",
                 "model.6.": "conv_up2.", "model.8.": "conv_hr.", "model.10.": "conv_last."}
        out = {}
        for key, value in state.items():
            new = key
            m = re.match(r"^model\.1\.sub\.(\d+)\.RDB(\d)\.conv(\d)\.0\.(weight|bias)$", key)
            if m:
                new = f"body.{m.group(1)}.rdb{m.group(2)}.conv{m.group(3)}.{m.group(4)}"
            else:
                for old, repl in fixed.items():
                    if key.startswith(old):
                        new = repl + key[len(old):]
                        break
            out[new] = value
        return out
    out = {}
    for key, value in state.items():
        new = key
        for pattern, repl in _ESRGAN_REPO_NAMES:
            new = re.sub(pattern, repl, new)
        out[new] = value
    return out


_INPUT_SCALES = {3: 4, 12: 2, 48: 1}  # conv_first's input channels: RGB x4; Real-ESRGAN's pixel-unshuffled x2 / x1


def _detect(state: dict[str, torch.Tensor]) -> dict[str, Any] | None:
    """RRDBNet's options from its state dict (None when the keys are another network's); Real-ESRGAN's x2plus / x1
    layouts (pixel-unshuffled input) give their scale."""
    if "conv_first.weight" not in state or "body.0.rdb1.conv1.weight" not in state:
        return None
    in_ch = state["conv_first.weight"].shape[1]
    if in_ch not in _INPUT_SCALES:
        raise ValueError(f"an RRDBNet whose conv_first takes {in_ch} input channels: neither RGB x4 (3) nor "
                         "Real-ESRGAN's pixel-unshuffle x2 (12) / x1 (48); not supported")
    blocks = {int(m.group(1)) for k in state if (m := re.match(r"body\.(\d+)\.", k))}
    options: dict[str, Any] = {"num_block": len(blocks), "num_feat": state["conv_first.weight"].shape[0],
                               "num_grow_ch": state["body.0.rdb1.conv1.weight"].shape[0]}
    if _INPUT_SCALES[in_ch] != 4:
        options["scale"] = _INPUT_SCALES[in_ch]
    return options


SPEC = NetworkSpec("rrdbnet", "RRDBNet", RRDBNet, "generator", input_size=(32, 32), paper_parameters=16_697_987,
                   output_range=(0.0, 1.0), precisions=("fp32", "bf16", "fp16"), detect=_detect,
                   widest=lambda options: options.get("num_feat", 64) + 4 * options.get("num_grow_ch", 32))
DISCRIMINATOR_SPEC = NetworkSpec("esrgan_discriminator", "ESRGAN (VGG-style) discriminator", VGGStyleDiscriminator,
                                 "discriminator", input_size=(128, 128))
