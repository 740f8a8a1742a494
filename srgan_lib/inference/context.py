"""How much context a tile needs: measured on the network, not assumed from its layout.

A deep network's receptive field is far wider than any practical pad (the 23-block RRDBNet's reaches hundreds of
pixels), yet its output depends less and less on pixels further away. :func:`measure_context` runs a noise image
whole and its centre alone, in fp32, and records how far the crop's output is from the whole one by the distance of
each pixel from the crop's edge (:class:`ContextProfile`, cached per architecture and weights). Each tile side then
gets the smallest pad whose tiled output stays within a stated PSNR (:data:`DEFAULT_TILE_DB`) of the whole-image
output on that worst-case content.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

from srgan_lib.inference.cache import cache_path, read_cache, weights_fingerprint, write_entry
from srgan_lib.models import Generator

log = logging.getLogger(__name__)
# The context probe (:func:`measure_context`): a CONTEXT_CROP square of noise run alone against the same pixels inside a
# whole input with CONTEXT_MARGIN more on each side; pads are tried in steps of PAD_STEP up to MAX_PAD
CONTEXT_MARGIN, CONTEXT_CROP = 48, 128
PAD_STEP, MAX_PAD = 4, 64
# The tiles' accuracy bound: a tiled output this close (PSNR on [0, 1], fp32) to the whole-image output on the
# probe's noise, the worst content measured (Real-ESRGAN x4plus at tile 64: pad 16 gives 45 dB on noise; photographs
# are closer). 50 dB is an RMS error of 0.8 grey levels, well inside the 40 dB precision guard.
DEFAULT_TILE_DB = 50.0


@dataclass(frozen=True)
class ContextProfile:
    """How far a tile's output is from the whole image's by how much real context a pixel has: ``mse[D]`` is the
    mean squared error (output in [0, 1]) of the output pixels whose input pixel lies ``D`` pixels from the padded
    tile's edge (measured on noise, fp32: :func:`measure_context`). A tile of side T with pad p has its interior's
    rings at D = p .. p + T/2; beyond the measured range the last value stands (the error only falls with D)."""

    mse: tuple[float, ...]

    def tile_psnr(self, tile: int, pad: int) -> float:
        """The expected PSNR (dB) of an interior tile's output against the whole-image output."""
        last, total = len(self.mse) - 1, 0.0
        for d in range((tile + 1) // 2):
            ring = 4 * (tile - 2 * d) - 4 if tile - 2 * d > 1 else 1
            total += ring * self.mse[min(pad + d, last)]
        mse = total / tile**2
        return math.inf if mse <= 0 else 10 * math.log10(1 / mse)

    def pad_for(self, tile: int, bound_db: float, warn: bool = False) -> int:
        """The smallest pad (a multiple of :data:`PAD_STEP`) that keeps a tile of this side within ``bound_db`` of
        the whole-image output; :data:`MAX_PAD` when none does (with ``warn``, saying so)."""
        pad = next((p for p in range(0, MAX_PAD + 1, PAD_STEP) if self.tile_psnr(tile, p) >= bound_db), MAX_PAD)
        if warn and self.tile_psnr(tile, pad) < bound_db:
            log.warning("tiles of %d stay %.1f dB from the whole-image output even with a pad of %d (bound %.1f dB): "
                        "use a larger --tile or --tile 0", tile, self.tile_psnr(tile, pad), pad, bound_db)
        return pad


def context_key(generator: Generator) -> str:
    """What the context profile depends on: the network, its weights, the probe's geometry."""
    options = ",".join(f"{k}={v}" for k, v in sorted(generator.options.items()))
    return (f"{generator.architecture}({options}) x{generator.scale} | weights {weights_fingerprint(generator.module)}"
            f" | probe {CONTEXT_CROP}+2x{CONTEXT_MARGIN}")


def measure_context(forward: Callable[[torch.Tensor], torch.Tensor], device: torch.device,
                    memory_format: torch.memory_format, scale: int) -> ContextProfile:
    """Run a seeded uniform-noise input of :data:`CONTEXT_CROP` + 2 :data:`CONTEXT_MARGIN` pixels whole and its
    centre alone (``forward``: fp32, output in [0, 1]) and average the squared difference of the two outputs by
    each pixel's distance (input pixels) from the crop's edge."""
    m, crop = CONTEXT_MARGIN, CONTEXT_CROP
    x = torch.rand(1, 3, crop + 2 * m, crop + 2 * m, generator=torch.Generator().manual_seed(0))
    x = x.to(device).contiguous(memory_format=memory_format)
    with torch.no_grad():
        whole = forward(x)[..., m * scale:(m + crop) * scale, m * scale:(m + crop) * scale]
        alone = forward(x[..., m:m + crop, m:m + crop].contiguous(memory_format=memory_format))
    err = (alone - whole).double().square().mean(dim=(0, 1)).cpu()
    n = err.shape[-1]
    edge = torch.minimum(torch.arange(n), n - 1 - torch.arange(n)) // scale
    ring = torch.minimum(edge[:, None], edge[None, :]).reshape(-1)
    sums = torch.bincount(ring, weights=err.reshape(-1), minlength=crop // 2)
    counts = torch.bincount(ring, minlength=crop // 2).clamp_min(1)
    return ContextProfile(tuple(float(v) for v in (sums / counts)[: crop // 2]))


def context_profile(generator: Generator, device: torch.device, memory_format: torch.memory_format,
                    forward: Callable[[torch.Tensor], torch.Tensor]) -> ContextProfile:
    """The cached :class:`ContextProfile` of this network and weights (:func:`context_key`), measured once."""
    key, path = context_key(generator), cache_path()
    entry = read_cache(path, "context").get(key)
    if entry is not None:
        return ContextProfile(tuple(entry["mse"]))
    log.info("measuring how much context the tiles of %s need (cache: %s)", key, path)
    profile = measure_context(forward, device, memory_format, generator.scale)
    write_entry(path, key, {"mse": list(profile.mse), "measured": time.strftime("%Y-%m-%d %H:%M:%S")}, "context")
    return profile
