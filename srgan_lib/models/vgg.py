"""Frozen VGG19 feature extractor for perceptual losses, cut at any named layer, before or after its activation.

SRGAN's content loss uses ``relu5_4`` (after the activation); ESRGAN's perceptual loss uses ``conv5_4`` (before it).
Input is RGB in [0, 1]; ImageNet mean/std normalisation happens inside.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

import torch
from torch import nn

from srgan_lib.io.weights import load_weights

log = logging.getLogger(__name__)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _meta_vgg19() -> nn.Module:
    """torchvision's VGG19 on the meta device: its structure without allocating or initialising 143 M weights."""
    from torchvision.models import vgg19  # here, not at import: torchvision.models pulls in torch._dynamo (3.5 s)

    with torch.device("meta"):
        return vgg19()


@lru_cache(maxsize=1)
def vgg19_layer_names() -> tuple[str, ...]:
    """Names of ``torchvision.models.vgg19().features`` children: conv1_1, relu1_1, ..., pool5."""
    names, block, index = [], 1, 1
    for layer in _meta_vgg19().features:
        if isinstance(layer, nn.Conv2d):
            names.append(f"conv{block}_{index}")
        elif isinstance(layer, nn.ReLU):
            names.append(f"relu{block}_{index}")
            index += 1
        else:
            names.append(f"pool{block}")
            block, index = block + 1, 1
    return tuple(names)


class VGGWeightsMissing(FileNotFoundError):
    """ImageNet VGG19 weights were asked for but are neither cached nor downloadable."""


def _imagenet_state() -> dict[str, torch.Tensor]:
    from torchvision.models import VGG19_Weights

    weights = VGG19_Weights.IMAGENET1K_V1
    filename = Path(weights.url).name
    cache = Path(torch.hub.get_dir()) / "checkpoints" / filename
    try:
        return weights.get_state_dict(progress=False, check_hash=True)
    except Exception as exc:  # URLError, HTTP errors, SSL errors: all mean "no file and no network"
        raise VGGWeightsMissing(
            f"VGG19 ImageNet weights '{filename}' are not cached at {cache} and could not be downloaded "
            f"({type(exc).__name__}: {exc}). Download {weights.url} on a machine with internet and copy it to "
            f"{cache} (or set TORCH_HOME), or pass the path of a local vgg19 state dict file as the weights."
        ) from None


class VGGFeatureExtractor(nn.Module):
    """VGG19 ``features`` up to ``layer`` (e.g. ``relu5_4``, ``conv5_4``), frozen and in eval mode.

    ``weights``: ``"imagenet"`` (torchvision's IMAGENET1K_V1 through its cache), a path to a state dict file, or
    ``"random"`` (only for tests and smoke runs; logged loudly, and ``self.weights_source`` says so).
    """

    def __init__(self, layer: str | Sequence[str] = "relu5_4", weights: str = "imagenet") -> None:
        super().__init__()
        names = vgg19_layer_names()
        taps = [layer] if isinstance(layer, str) else list(layer)
        for name in taps:
            if name not in names:
                raise ValueError(f"unknown VGG19 layer {name!r}; choose one of {', '.join(names)}")
        self.taps = None if isinstance(layer, str) else {names.index(t): t for t in taps}  # several: a dict out
        layer = max(taps, key=names.index)
        # only the feature layers up to the (deepest) cut are materialised; the 120 M-parameter classifier never is
        features = _meta_vgg19().features[: names.index(layer) + 1].to_empty(device="cpu")
        if weights == "imagenet":
            state = _imagenet_state()
        elif weights == "random":
            log.warning("VGG19 uses RANDOM weights: perceptual losses are not the papers' (tests / smoke runs only)")
            state = None
            for m in features.modules():
                if isinstance(m, nn.Conv2d):  # torchvision's VGG initialisation
                    nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                    nn.init.zeros_(m.bias)
        else:
            path = Path(weights)
            if not path.is_file():
                raise VGGWeightsMissing(f"VGG19 weights file '{path}' not found; give a torchvision vgg19 state dict")
            state = load_weights(path, "VGG19 weights file")
        if state is not None:
            wanted = {k.removeprefix("features."): v for k, v in state.items() if k.startswith("features.")}
            features.load_state_dict({k: wanted[k] for k in features.state_dict()}, strict=True)
        self.layer = layer
        self.weights_source = weights
        self.features = features
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))
        for p in self.parameters():
            p.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> VGGFeatureExtractor:
        """Always stays in eval mode: the extractor is frozen."""
        return super().train(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor | dict[str, torch.Tensor]:
        """The features at the cut, or (several layers asked for) a dict layer -> features from one pass."""
        x = (x - self.mean) / self.std
        if self.taps is None:
            return self.features(x)
        out, modules = {}, list(self.features)
        for i, module in enumerate(modules):
            x = module(x)
            if i in self.taps:  # a conv tap before an in-place ReLU (torchvision's) must be kept as it was
                nxt = modules[i + 1] if i + 1 < len(modules) else None
                out[self.taps[i]] = x.clone() if getattr(nxt, "inplace", False) else x
        return out
