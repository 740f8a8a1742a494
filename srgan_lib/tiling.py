"""Tiles of the production upscaler: the grid, the memory bound, and the tile size measured on this machine.

The memory rule (:func:`auto_tile`) bounds a tile by a quarter of the free memory. How fast a tile runs is another
matter: on CPU the convolutions slow down per pixel once a tile's activations leave the caches, and every tile pays
for its ``pad`` pixels of context, so the fastest side lies in between and depends on the network, the device, the
precision and the threads. :func:`tuned_tile` measures it once on a short probe (random input, one warm-up and one
timed forward per candidate side, within a time budget) and caches the answer in the user's cache directory, keyed by
all of those (and the torch version); ``--tile N`` still wins.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import torch

from srgan_lib.hardware import cpu_name
from srgan_lib.imageio import atomic_path
from srgan_lib.models import Generator

log = logging.getLogger(__name__)

# Largest automatic tile per device under the memory rule. On CPU the 23-block RRDBNet on 384x384 ran 1.51x faster in
# tiles of 192 than in one pass, padding included (2 cores, benchmarks/results/upscale-rrdbnet-384-cpu.json).
MAX_AUTO_TILE = {"cpu": 512, "cuda": 2048}
# Sides the tuner tries (input pixels), smallest first, up to the memory bound and the device's largest.
TUNE_SIDES = (64, 96, 128, 192, 256, 384, 512, 768, 1024, 1536, 2048)
MAX_TUNE_TILE = {"cpu": 1024, "cuda": 2048}
TUNE_BUDGET_S = 30.0  # the probe stops trying larger sides after this much time (a CPU and a 23-block RRDBNet)
CACHE_VERSION = 1


def tile_grid(height: int, width: int, tile: int) -> Iterator[tuple[int, int, int, int]]:
    """``(y0, y1, x0, x1)`` of the tiles covering an image, row by row; ``tile <= 0`` means one tile."""
    if tile <= 0:
        yield 0, height, 0, width
        return
    for y0 in range(0, height, tile):
        for x0 in range(0, width, tile):
            yield y0, min(y0 + tile, height), x0, min(x0 + tile, width)


def available_bytes(device: torch.device) -> int:
    """Free memory of the device (CUDA: free device memory; CPU: MemAvailable; 4 GiB when it cannot be read)."""
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 4 << 30


def bytes_per_lr_pixel(generator: Generator) -> int:
    """A generous estimate of the activation memory per input pixel of one forward pass (no grad, fp32); an unknown
    architecture is costed as the paper's RRDBNet."""
    name, options = generator.arch
    feat = options.get("num_feat", 64)
    scale = generator.scale
    widest = feat + 4 * options.get("num_grow_ch", 32) if name == "rrdbnet" else 2 * feat
    return 4 * (6 * widest + 3 * feat * scale * scale + 8 * scale * scale)


def memory_side(generator: Generator, device: torch.device, pad: int) -> int:
    """The largest tile side (multiple of 32, at least 64) whose padded forward pass fits a quarter of free memory."""
    side = int(math.sqrt(available_bytes(device) // 4 / bytes_per_lr_pixel(generator))) - 2 * pad
    return max(64, side // 32 * 32)


def auto_tile(generator: Generator, device: torch.device, height: int, width: int, pad: int) -> int:
    """The memory rule: the largest tile (multiple of 32, from 64 to the device's :data:`MAX_AUTO_TILE`) whose forward
    pass fits in a quarter of the free memory; 0 (no tiling) when the whole image fits in that budget and the cap."""
    budget = available_bytes(device) // 4
    cap = MAX_AUTO_TILE.get(device.type, 2048)
    if height * width * bytes_per_lr_pixel(generator) <= budget and max(height, width) <= cap + 2 * pad:
        return 0
    return min(cap, memory_side(generator, device, pad))


def cache_path() -> Path:
    """Where tuned tiles are kept: ``$SRGAN_CACHE_DIR/tiles.json``, else ``$XDG_CACHE_HOME/srgan/``, else
    ``~/.cache/srgan/``."""
    if os.environ.get("SRGAN_CACHE_DIR"):
        return Path(os.environ["SRGAN_CACHE_DIR"]) / "tiles.json"
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "srgan" / "tiles.json"


def device_name(device: torch.device) -> str:
    """The GPU's or the CPU's model name."""
    return torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_name()


def tune_key(generator: Generator, device: torch.device, precision: str, layout: str, pad: int) -> str:
    """What the fastest tile depends on: network, device, precision, memory format, threads, context, torch."""
    options = ",".join(f"{k}={v}" for k, v in sorted(generator.options.items()))
    threads = torch.get_num_threads() if device.type == "cpu" else 0
    return (f"{generator.architecture}({options}) x{generator.scale} | {device_name(device)} | {precision} {layout} | "
            f"threads {threads} | pad {pad} | torch {torch.__version__}")


def _read_cache(path: Path) -> dict[str, dict]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data.get("tiles", {}) if isinstance(data, dict) and data.get("version") == CACHE_VERSION else {}


def measure_sides(forward: Callable[[torch.Tensor], torch.Tensor], device: torch.device,
                  memory_format: torch.memory_format, pad: int, largest: int,
                  budget_s: float = TUNE_BUDGET_S, repeats: int = 3) -> dict[int, float]:
    """Seconds per input pixel of one padded tile of each side in :data:`TUNE_SIDES` up to ``largest``: one warm-up
    and the fastest of ``repeats`` timed forwards of random input each (the minimum: other load only adds time),
    stopping after ``budget_s`` or two sides in a row slower than the best one by 15 %."""
    results: dict[int, float] = {}
    spent, worse = 0.0, 0

    def timed(x: torch.Tensor) -> float:
        start = time.perf_counter()
        forward(x)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return time.perf_counter() - start

    for side in (s for s in TUNE_SIDES if s <= largest):
        x = torch.rand(1, 3, side + 2 * pad, side + 2 * pad, device=device).contiguous(memory_format=memory_format)
        times = [timed(x) for _ in range(1 + repeats)]  # the first: oneDNN / cuDNN choose kernels for this shape
        results[side] = min(times[1:]) / side**2
        spent += sum(times)
        best = min(results.values())
        worse = worse + 1 if results[side] > 1.15 * best else 0
        if worse >= 2 or spent > budget_s:
            break
    return results


@dataclass(frozen=True)
class TunedTile:
    """The measured tile side, and whether larger sides were still getting faster when the probe's time budget ran
    out (then an image that fits in memory as a whole runs whole: the 23-block RRDBNet on 2 cores stopped at 192
    while 256x256 ran 10 % faster untiled)."""

    side: int
    still_faster: bool


def tuned_tile(generator: Generator, device: torch.device, precision: str, memory_format: torch.memory_format,
               pad: int, forward: Callable[[torch.Tensor], torch.Tensor]) -> TunedTile:
    """The fastest tile side for this network on this device, measured once (:func:`measure_sides`) and cached
    (:func:`cache_path`); never above the memory bound of the moment."""
    layout = "channels_last" if memory_format == torch.channels_last else "contiguous"
    key = tune_key(generator, device, precision, layout, pad)
    bound = memory_side(generator, device, pad)
    path = cache_path()
    entry = _read_cache(path).get(key)
    if entry is None:
        largest = min(bound, MAX_TUNE_TILE.get(device.type, 2048))
        log.info("measuring the fastest tile once for %s (cached in %s)", key, path)
        per_px = measure_sides(forward, device, memory_format, pad, largest)
        fastest = min(per_px.values())  # the largest side within 5 % of the fastest: fewer tiles, less padding
        tile = max(side for side, t in per_px.items() if t <= 1.05 * fastest)
        last = max(per_px)  # the probe stopped early (time budget) while its largest side was still the fastest
        still = per_px[last] == fastest and last < max((s for s in TUNE_SIDES if s <= largest), default=last)
        entry = {"tile": tile, "still_faster": still, "measured": time.strftime("%Y-%m-%d %H:%M:%S"),
                 "seconds_per_mpx": {str(s): round(v * 1e6, 4) for s, v in per_px.items()}}
        try:
            cache = _read_cache(path)
            cache[key] = entry
            with atomic_path(path) as tmp:
                tmp.write_text(json.dumps({"version": CACHE_VERSION, "tiles": cache}, indent=1), encoding="utf-8")
        except OSError as exc:  # a read-only home: tune again next time, say why once
            log.warning("could not cache the tuned tile in %s (%s); set SRGAN_CACHE_DIR", path, exc)
    return TunedTile(min(int(entry["tile"]), bound), bool(entry.get("still_faster", False)))
