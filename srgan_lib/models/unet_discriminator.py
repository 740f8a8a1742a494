"""Real-ESRGAN's U-Net discriminator with spectral normalization (Wang et al., ICCVW 2021, sec. 3.4,
``UNetDiscriminatorSN``): a real/fake logit per pixel, so the generator hears *where* an output looks wrong, which
ESRGAN's VGG-style discriminator (one logit per image) cannot say over the larger real-world degradation space.

conv0 3->64 (3x3, bias); three spectral-normed 4x4 stride-2 convs 64->128->256->512 (no bias); three bilinear x2
upsamplings, each followed by a spectral-normed 3x3 conv 512->256->128->64 (no bias) plus the matching encoder
features (skips); two spectral-normed 3x3 convs 64->64; a 3x3 conv to one logit per pixel; LeakyReLU 0.2. With
num_feat 64: 4,376,897 parameters. Spectral normalization is ``torch.nn.utils.spectral_norm`` (one power iteration
per training forward), whose state-dict keys (``weight_orig``, ``weight_u``, ``weight_v``) are those of the published
``RealESRGAN_x4plus_netD.pth``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import spectral_norm

from srgan_lib.models.spec import NetworkSpec


class UNetDiscriminatorSN(nn.Module):
    """The U-Net discriminator; input H and W divisible by 8 (three stride-2 levels), output N x 1 x H x W logits."""

    def __init__(self, num_in_ch: int = 3, num_feat: int = 64, skip_connection: bool = True) -> None:
        super().__init__()
        self.skip_connection = skip_connection
        f = num_feat
        self.conv0 = nn.Conv2d(num_in_ch, f, 3, 1, 1)
        self.conv1 = spectral_norm(nn.Conv2d(f, f * 2, 4, 2, 1, bias=False))  # encoder
        self.conv2 = spectral_norm(nn.Conv2d(f * 2, f * 4, 4, 2, 1, bias=False))
        self.conv3 = spectral_norm(nn.Conv2d(f * 4, f * 8, 4, 2, 1, bias=False))
        self.conv4 = spectral_norm(nn.Conv2d(f * 8, f * 4, 3, 1, 1, bias=False))  # decoder
        self.conv5 = spectral_norm(nn.Conv2d(f * 4, f * 2, 3, 1, 1, bias=False))
        self.conv6 = spectral_norm(nn.Conv2d(f * 2, f, 3, 1, 1, bias=False))
        self.conv7 = spectral_norm(nn.Conv2d(f, f, 3, 1, 1, bias=False))  # extra
        self.conv8 = spectral_norm(nn.Conv2d(f, f, 3, 1, 1, bias=False))
        self.conv9 = nn.Conv2d(f, 1, 3, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-2] % 8 or x.shape[-1] % 8:
            raise ValueError(f"UNetDiscriminatorSN needs H and W divisible by 8, got {tuple(x.shape[-2:])}")
        act = lambda t: F.leaky_relu(t, 0.2)  # noqa: E731
        x0 = act(self.conv0(x))
        x1 = act(self.conv1(x0))
        x2 = act(self.conv2(x1))
        x3 = act(self.conv3(x2))
        up = lambda t: F.interpolate(t, scale_factor=2, mode="bilinear", align_corners=False)  # noqa: E731
        x4 = act(self.conv4(up(x3)))
        x4 = x4 + x2 if self.skip_connection else x4
        x5 = act(self.conv5(up(x4)))
        x5 = x5 + x1 if self.skip_connection else x5
        x6 = act(self.conv6(up(x5)))
        x6 = x6 + x0 if self.skip_connection else x6
        return self.conv9(act(self.conv8(act(self.conv7(x6)))))


SPEC = NetworkSpec("unet_discriminator_sn", "U-Net discriminator (SN)", UNetDiscriminatorSN, "discriminator",
                   input_size=(256, 256), paper_parameters=4_376_897)
