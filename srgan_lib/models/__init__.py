"""The papers' networks, registered explicitly by name (paper configurations by default), and generator checkpoints:
loading them with ``weights_only=True`` and recognising their architecture from the state dict's keys and shapes (ours,
BasicSR's and Real-ESRGAN's x4 RRDBNet, the older ESRGAN layouts) without a config."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from srgan_lib.io.weights import load_weights
from srgan_lib.models import rrdbnet, srresnet, unet_discriminator
from srgan_lib.models.rrdbnet import convert_legacy_state_dict
from srgan_lib.models.spec import NetworkSpec

# The registry: every network the settings can name, each declared once in its own module (srgan_lib.models.spec).
SPECS: dict[str, NetworkSpec] = {s.name: s for s in (srresnet.SPEC, srresnet.DISCRIMINATOR_SPEC, rrdbnet.SPEC,
                                                      rrdbnet.DISCRIMINATOR_SPEC, unet_discriminator.SPEC)}
GENERATORS: tuple[str, ...] = tuple(n for n, s in SPECS.items() if s.role == "generator")
DISCRIMINATORS: tuple[str, ...] = tuple(n for n, s in SPECS.items() if s.role == "discriminator")


def spec(name: str) -> NetworkSpec:
    """The registered network ``name``; a clear error naming the registered ones otherwise."""
    try:
        return SPECS[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; available: {', '.join(SPECS)}") from None


def output_range(name: str) -> tuple[float, float]:
    """The value range of generator ``name``'s output (and of its pixel loss and its discriminator's input)."""
    rng = spec(name).output_range
    if rng is None:
        raise ValueError(f"{name!r} is not a generator")
    return rng


def build_model(name: str, **options: Any) -> nn.Module:
    """Construct a registered network; ``options`` override the paper configuration (e.g. ``num_block=4``)."""
    return spec(name).build(**options)


def to_unit(x: torch.Tensor, value_range: tuple[float, float]) -> torch.Tensor:
    """Map a tensor from ``value_range`` to [0, 1] (no clamping)."""
    lo, hi = value_range
    return x if (lo, hi) == (0.0, 1.0) else (x - lo) / (hi - lo)


def from_unit(x: torch.Tensor, value_range: tuple[float, float]) -> torch.Tensor:
    """Map a tensor from [0, 1] to ``value_range``."""
    lo, hi = value_range
    return x if (lo, hi) == (0.0, 1.0) else x * (hi - lo) + lo


def count_parameters(model: nn.Module) -> int:
    """Number of parameters (trainable or not; BN running statistics are buffers and not counted)."""
    return sum(p.numel() for p in model.parameters())


def load_generator_state(path: str | Path, prefer_ema: bool = True) -> dict[str, torch.Tensor]:
    """A generator state dict from a checkpoint file: ``{'params_ema'|'params': ...}`` (BasicSR, Real-ESRGAN, ours)
    or a bare state dict, older ESRGAN key layouts converted. Loaded with ``weights_only=True``: never runs code."""
    path = Path(path)
    obj = load_weights(path, "generator checkpoint")
    if isinstance(obj, dict):
        order = ("params_ema", "params") if prefer_ema else ("params", "params_ema")
        for key in order:
            if isinstance(obj.get(key), dict):
                obj = obj[key]
                break
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ValueError(f"'{path}' holds no generator state dict (expected tensors, 'params' or 'params_ema')")
    return convert_legacy_state_dict(obj)


def infer_architecture(state: dict[str, torch.Tensor]) -> tuple[str, dict[str, Any]]:
    """(model name, constructor options) of a generator state dict, asked of each registered generator's spec; a
    clear error for anything else."""
    for name in GENERATORS:
        options = SPECS[name].detect(state)  # type: ignore[misc]
        if options is not None:
            return name, options
    sample = ", ".join(list(state)[:4])
    raise ValueError(f"not an SRResNet or RRDBNet generator state dict (keys start with {sample})")


@dataclass(frozen=True)
class Generator:
    """A generator and what it is, as read from its weights: what inference needs to know, instead of attributes
    patched onto the module."""

    module: nn.Module
    architecture: str  # a name of SPECS
    options: dict[str, Any]  # its constructor options (empty: the paper configuration)
    scale: int
    value_range: tuple[float, float]  # of its output: SRResNet's tanh [-1, 1], RRDBNet's [0, 1]
    precisions: tuple[str, ...]
    source: str = ""  # the file it came from ("" for a module built in memory)

    @property
    def arch(self) -> tuple[str, dict[str, Any]]:
        return self.architecture, self.options


def as_generator(model: nn.Module | Generator, value_range: tuple[float, float] | None = None) -> Generator:
    """A :class:`Generator` for a module built in memory (its architecture read from its state dict), or the one
    given; ``value_range`` overrides the architecture's. A module that is not a registered generator (a wrapper, a
    compiled module) needs ``value_range``; its scale is its ``scale`` attribute, else 4."""
    if isinstance(model, Generator):
        return model if value_range is None else replace(model, value_range=value_range)
    try:
        name, options = infer_architecture(model.state_dict())
    except ValueError:
        if value_range is None:
            raise ValueError(f"{type(model).__name__} is not a registered generator: pass its output value_range "
                             "(SRResNet (-1, 1), RRDBNet (0, 1))") from None
        return Generator(model, "unknown", {}, int(getattr(model, "scale", 4)), value_range, ("fp32", "bf16", "fp16"))
    return Generator(model, name, options, int(options.get("scale", 4)), value_range or output_range(name),
                     SPECS[name].precisions)


def load_generator(path: str | Path, *, prefer_ema: bool = True, device: str | torch.device = "cpu") -> Generator:
    """The generator stored in ``path`` (EMA weights when present), in eval mode on ``device``."""
    state = load_generator_state(path, prefer_ema=prefer_ema)
    name, options = infer_architecture(state)
    model = build_model(name, **options)
    model.load_state_dict(state, strict=True)
    return Generator(model.eval().to(device), name, options, int(options.get("scale", 4)), output_range(name),
                     SPECS[name].precisions, str(path))


def checkpoint_meta(path: str | Path) -> dict[str, Any]:
    """The ``meta`` record a checkpoint of this project carries (what trained it, or which interpolation it is);
    empty for checkpoints from elsewhere."""
    obj = load_weights(path, "generator checkpoint")
    meta = obj.get("meta") if isinstance(obj, dict) else None
    return dict(meta) if isinstance(meta, dict) else {}


def describe_meta(meta: dict[str, Any]) -> str:
    """One line saying which configuration a checkpoint is (for tables and reports)."""
    if not meta:
        return "external checkpoint"
    if "alpha" in meta:
        return f"network interpolation alpha {meta['alpha']:g} between {meta['psnr']} and {meta['gan']}"
    opts = ", ".join(f"{k} {v}" for k, v in meta.get("generator_options", {}).items())
    losses = " + ".join(v for v in meta.get("losses", {}).values() if v != "none")
    text = (f"{meta['generator']} ({opts}; {meta.get('parameters', 0):,} parameters), {meta['iterations']} "
            f"iterations, batch {meta['batch_size']}, HR {meta['hr_size']}, lr {meta['lr']:g} {meta['schedule']}, "
            f"{losses}")
    if meta.get("vgg_weights", "unused") != "unused":
        text += f", VGG {meta['vgg_weights']}"
    if meta.get("ema_decay"):
        text += f", EMA {meta['ema_decay']:g}"
    if meta.get("train_images"):
        text += f", {meta['train_images']} training images"
    return text


def summarize(name: str, **options: Any) -> dict[str, Any]:
    """Architecture summary of a registered network: parameters, output shape for its reference input, layers."""
    model = build_model(name, **options).eval()
    h, w = spec(name).input_size
    if "input_size" in options:  # a discriminator built for another crop
        h = w = int(options["input_size"])
    with torch.no_grad():
        out = model(torch.zeros(1, 3, h, w))
    top = [(child_name, type(child).__name__, count_parameters(child)) for child_name, child in model.named_children()]
    return {
        "name": name,
        "class": type(model).__name__,
        "parameters": count_parameters(model),
        "paper_parameters": spec(name).paper_parameters,
        "options": options,
        "input_shape": [1, 3, h, w],
        "output_shape": list(out.shape),
        "children": [{"name": n, "type": t, "parameters": p} for n, t, p in top],
    }
