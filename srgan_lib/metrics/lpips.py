"""LPIPS v0.1 (Zhang et al., CVPR 2018, "The Unreasonable Effectiveness of Deep Features as a Perceptual Metric").

Both images go through an ImageNet classifier (AlexNet, the authors' recommended forward metric, or VGG16); at five
ReLU taps the features are unit-normalised along the channels, their squared difference is weighted per channel by
the authors' learned linear layer (1x1 convolution, non-negative), averaged over space and summed over taps.
Lower is better; 0 for identical images.

Two weight files are needed, both real and checksum-verified, never estimated: the authors' linear layers (BSD-2
licence; ``alex.pth``/``vgg.pth`` of their v0.1 release, also shipped in the ``lpips`` wheel) and torchvision's
ImageNet backbone (its cache, as VGG19 for the perceptual loss). Missing either, LPIPS is recorded as unavailable
with the reason (:class:`LPIPSUnavailable`).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from torch import nn

from srgan_lib import UserError
from srgan_lib.io.images import file_sha256
from srgan_lib.io.weights import load_weights

NETS = ("alex", "vgg")
# features[:i] end at the ReLU after conv1..conv5 (AlexNet) / after conv1_2, 2_2, 3_3, 4_3, 5_3 (VGG16)
TAPS = {"alex": (2, 5, 8, 10, 12), "vgg": (4, 9, 16, 23, 30)}
CHANNELS = {"alex": (64, 192, 384, 256, 256), "vgg": (64, 128, 256, 512, 512)}
# the authors' v0.1 linear layers (github.com/richzhang/PerceptualSimilarity, lpips/weights/v0.1/<net>.pth)
LINEAR_SHA256 = {"alex": "df73285e35b22355a2df87cdb6b70b343713b667eddbda73e1977e0c860835c0",
                 "vgg": "a78928a0af1e5f0fcb1f3b9e8f8c3a2a5a3de244d830ad5c1feddc79b8432868"}
LINEAR_URL = "https://github.com/richzhang/PerceptualSimilarity/raw/master/lpips/weights/v0.1/{net}.pth"
# the input scaling of v0.1: images in [-1, 1], shifted and scaled per channel
SHIFT = (-0.030, -0.088, -0.188)
SCALE = (0.458, 0.448, 0.450)
EPS = 1e-10


class LPIPSUnavailable(UserError, FileNotFoundError):
    """A weight file LPIPS needs is missing or not the expected one: the message says which and where to put it."""


def _backbone(net: str) -> tuple[nn.Module, object]:
    from torchvision.models import AlexNet_Weights, VGG16_Weights, alexnet, vgg16

    with torch.device("meta"):
        model = alexnet() if net == "alex" else vgg16()
    weights = AlexNet_Weights.IMAGENET1K_V1 if net == "alex" else VGG16_Weights.IMAGENET1K_V1
    return model.features[: TAPS[net][-1]].to_empty(device="cpu"), weights


def backbone_state(net: str, backbone: str = "imagenet") -> dict[str, torch.Tensor]:
    """The ImageNet ``features`` weights of AlexNet / VGG16: torchvision's cached file (downloaded when the machine
    is online), or a local state dict file."""
    _, weights = _backbone(net)
    if backbone != "imagenet":
        path = Path(backbone)
        if not path.is_file():
            raise LPIPSUnavailable(f"LPIPS backbone weights '{path}' not found (a torchvision {net} state dict)")
        state = load_weights(path, f"LPIPS {net} backbone")
    else:
        cache = Path(torch.hub.get_dir()) / "checkpoints" / Path(weights.url).name  # type: ignore[attr-defined]
        try:
            state = weights.get_state_dict(progress=False, check_hash=True)  # type: ignore[attr-defined]
        except Exception as exc:  # no file and no network (URLError, HTTP or SSL errors)
            raise LPIPSUnavailable(
                f"LPIPS needs torchvision's ImageNet {net} weights: not cached at {cache} and not downloadable "
                f"({type(exc).__name__}). Copy {weights.url} there (or set TORCH_HOME)"  # type: ignore[attr-defined]
            ) from None
    return {k.removeprefix("features."): v for k, v in state.items() if k.startswith("features.")}


def linear_state(net: str, path: str | Path, sha256: str | None = None) -> dict[str, torch.Tensor]:
    """The authors' linear layers from ``path``, checked against their published file's SHA-256."""
    p = Path(path)
    if not p.is_file():
        raise LPIPSUnavailable(f"LPIPS linear weights not found: {p}; put the authors' v0.1 '{net}.pth' there "
                               f"({LINEAR_URL.format(net=net)}, or lpips/weights/v0.1/ of the lpips wheel)")
    expected = (sha256 or LINEAR_SHA256[net]).lower()
    digest = file_sha256(p)
    if digest != expected:
        raise LPIPSUnavailable(f"LPIPS linear weights {p} have sha256 {digest}, expected {expected} (the authors' "
                               f"v0.1 {net}.pth): refusing to use them")
    state = load_weights(p, "LPIPS linear weights")
    return {f"{i}": state[f"lin{i}.model.1.weight"] for i in range(len(CHANNELS[net]))}


class LPIPS(nn.Module):
    """LPIPS between two batches of RGB images in [0, 1] (N x 3 x H x W): one distance per image pair."""

    def __init__(self, net: str, linear: dict[str, torch.Tensor], backbone: dict[str, torch.Tensor]) -> None:
        super().__init__()
        if net not in NETS:
            raise ValueError(f"LPIPS network must be one of {', '.join(NETS)}, got {net!r}")
        self.net = net
        self.features, _ = _backbone(net)
        self.features.load_state_dict(backbone, strict=True)
        for m in self.features.modules():
            if isinstance(m, nn.ReLU):
                m.inplace = False  # the taps are read after the ReLU and the next layer must not overwrite them
        self.linear = nn.ParameterList([nn.Parameter(linear[str(i)].float(), requires_grad=False)
                                        for i in range(len(CHANNELS[net]))])
        self.register_buffer("shift", torch.tensor(SHIFT).view(1, 3, 1, 1))
        self.register_buffer("scale", torch.tensor(SCALE).view(1, 3, 1, 1))
        for p in self.parameters():
            p.requires_grad_(False)
        self.eval()

    def _taps(self, x: torch.Tensor) -> list[torch.Tensor]:
        out, start = [], 0
        for end in TAPS[self.net]:
            for layer in self.features[start:end]:
                x = layer(x)
            out.append(x)
            start = end
        return out

    @torch.no_grad()
    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        fx = self._taps(((x * 2 - 1) - self.shift) / self.scale)
        fy = self._taps(((y * 2 - 1) - self.shift) / self.scale)
        total = torch.zeros(x.shape[0], device=x.device)
        for a, b, w in zip(fx, fy, self.linear, strict=True):
            a = a / (a.pow(2).sum(dim=1, keepdim=True).sqrt() + EPS)
            b = b / (b.pow(2).sum(dim=1, keepdim=True).sqrt() + EPS)
            total += nn.functional.conv2d((a - b).pow(2), w).mean(dim=(1, 2, 3))
        return total


@dataclass(frozen=True)
class LPIPSMetric:
    """A ready LPIPS model and where its weights came from (recorded beside the numbers)."""

    model: LPIPS
    net: str
    linear: str
    backbone: str

    def score(self, sr: np.ndarray, hr: np.ndarray, shave: int = 0) -> float:
        """LPIPS of two H x W x 3 uint8 images, ``shave`` pixels cropped at each border first."""
        if shave:
            sr, hr = sr[shave:-shave, shave:-shave], hr[shave:-shave, shave:-shave]

        def tensor(a: np.ndarray) -> torch.Tensor:
            return torch.from_numpy(np.ascontiguousarray(a)).permute(2, 0, 1)[None].float() / 255.0

        return float(self.model(tensor(sr), tensor(hr))[0])


@lru_cache(maxsize=4)
def resolve_lpips(net: str, linear: str, sha256: str = "", backbone: str = "imagenet") -> LPIPSMetric:
    """LPIPS with the authors' linear layers at ``linear`` and the ImageNet backbone; :class:`LPIPSUnavailable`
    with the reason when a file is missing or wrong (the caller records it; nothing is estimated)."""
    if net not in NETS:
        raise ValueError(f"LPIPS network must be one of {', '.join(NETS)}, got {net!r}")
    model = LPIPS(net, linear_state(net, linear, sha256 or None), backbone_state(net, backbone))
    return LPIPSMetric(model, net, str(linear), backbone)
