"""Tiles of the production upscaler: the grid, the memory bound, and the tile size measured on this machine.

The memory rule (:func:`auto_tile`) bounds a tile by a quarter of the free memory. How fast a tile runs is another
matter: on CPU the convolutions slow down per pixel once a tile's activations leave the caches, and every tile pays
for its ``pad`` pixels of context, so the fastest side lies in between and depends on the network, the device, the
precision and the threads. :func:`tuned_tile` measures it once on a short probe (random input, one warm-up and one
timed forward per candidate side, within a time budget) and caches the answer in the user's cache directory, keyed by
all of those (and the torch version); ``--tile N`` still wins.

A probe can be spoilt by load (another process on the same cores): only a probe of at least :data:`MIN_SIDES` sides
that found the fastest side (larger sides ran slower) or tried every side is cached; one cut short by its time budget
while larger sides were still getting faster is used for that run only. A cached side is checked in use: when an
image's full tiles run :data:`STALE_FACTOR` times slower per pixel than the entry recorded, the entry is marked stale
and the next image measures again (``srgan upscale --retune`` forces it).
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
from srgan_lib.io.images import atomic_path
from srgan_lib.models import SPECS, Generator

log = logging.getLogger(__name__)

# Largest automatic tile per device under the memory rule. On CPU the 23-block RRDBNet on 384x384 ran 1.51x faster in
# tiles of 192 than in one pass, padding included (2 cores, benchmarks/results/upscale-rrdbnet-384-cpu.json).
MAX_AUTO_TILE = {"cpu": 512, "cuda": 2048}
# Sides the tuner tries (input pixels), smallest first, up to the memory bound and the device's largest.
TUNE_SIDES = (64, 96, 128, 192, 256, 384, 512, 768, 1024, 1536, 2048)
MAX_TUNE_TILE = {"cpu": 1024, "cuda": 2048}
# The probe stops trying larger sides after this much time in timed forwards (a CPU and a 23-block RRDBNet); warm-ups
# (kernel selection for each new shape) are not counted, but everything together stops at TUNE_WALL_S
TUNE_BUDGET_S = 30.0
TUNE_WALL_S = 120.0
TUNE_REPEATS = 2  # timed forwards per side after its warm-up; the fastest counts (load only adds time)
MIN_SIDES = 3  # fewer measured sides are not cached (unless there were no more to try)
STALE_FACTOR = 2.0  # full tiles this much slower per pixel than the cache recorded: the entry is re-measured
CACHE_VERSION = 2  # 2: entries record why the probe stopped; version-1 entries (possibly one-side probes) are ignored


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
    known = SPECS.get(name)
    widest = (known.widest if known and known.widest else SPECS["rrdbnet"].widest)(options)  # type: ignore[misc]
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


@dataclass(frozen=True)
class Probe:
    """Seconds per input pixel of each measured side, and why the probe stopped: ``slower`` (two sides in a row more
    than 15 % slower than the best: the fastest was found), ``largest`` (every side up to the bound was tried) or
    ``budget`` (time ran out: larger sides were never tried)."""

    seconds_per_px: dict[int, float]
    stopped: str

    @property
    def turned(self) -> bool:
        """Whether a side larger than the fastest was measured and ran slower (by more than the 5 % the choice
        tolerates): the probe saw the minimum of the curve, whatever stopped it."""
        per_px = self.seconds_per_px
        return bool(per_px) and per_px[max(per_px)] > 1.05 * min(per_px.values())

    @property
    def cacheable(self) -> bool:
        """Whether this probe may stand for later runs: at least :data:`MIN_SIDES` sides (unless there were no more
        to try), and it found the fastest side (two slower sides, or the budget after the curve turned) or tried
        them all. A budget stop while larger sides were still getting faster (a busy machine: one slow side) is
        used for its run only."""
        if len(self.seconds_per_px) < MIN_SIDES:
            return self.stopped == "largest"
        return self.stopped != "budget" or self.turned

    @property
    def still_faster(self) -> bool:
        """Whether the time budget stopped the probe while its largest side was the fastest (larger sides untried:
        an image that fits in memory then runs whole)."""
        per_px = self.seconds_per_px
        return self.stopped == "budget" and bool(per_px) and per_px[max(per_px)] == min(per_px.values())

    def describe(self) -> str:
        n = len(self.seconds_per_px)
        why = "its time budget" if self.stopped == "budget" else "two slower sides" if self.stopped == "slower" \
            else "the largest side"
        return f"probe stopped at {n} side{'s' if n != 1 else ''} ({why})"


def measure_sides(forward: Callable[[torch.Tensor], torch.Tensor], device: torch.device,
                  memory_format: torch.memory_format, pad: int, largest: int,
                  budget_s: float = TUNE_BUDGET_S, repeats: int = TUNE_REPEATS, wall_s: float = TUNE_WALL_S) -> Probe:
    """Seconds per input pixel of one padded tile of each side in :data:`TUNE_SIDES` up to ``largest``: one warm-up
    (oneDNN / cuDNN choose kernels for a new shape: not counted against the budget) and the fastest of ``repeats``
    timed forwards of random input each, stopping after ``budget_s`` of timed forwards (or ``wall_s`` in all), or two
    sides in a row slower than the best one by 15 %."""
    results: dict[int, float] = {}
    spent, worse, stopped, start = 0.0, 0, "largest", time.perf_counter()

    def timed(x: torch.Tensor) -> float:
        begin = time.perf_counter()
        forward(x)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return time.perf_counter() - begin

    for side in (s for s in TUNE_SIDES if s <= largest):
        if results and (spent > budget_s or time.perf_counter() - start > wall_s):
            stopped = "budget"
            break
        x = torch.rand(1, 3, side + 2 * pad, side + 2 * pad, device=device).contiguous(memory_format=memory_format)
        timed(x)  # warm-up
        times = [timed(x) for _ in range(repeats)]
        results[side] = min(times) / side**2
        spent += sum(times)
        best = min(results.values())
        worse = worse + 1 if results[side] > 1.15 * best else 0
        if worse >= 2:
            stopped = "slower"
            break
    return Probe(results, stopped)


@dataclass(frozen=True)
class TunedTile:
    """The measured tile side; whether larger sides were still getting faster when the probe stopped (then an image
    that fits in memory as a whole runs whole: the 23-block RRDBNet on 2 cores stopped at 192 while 256x256 ran 10 %
    faster untiled); where it came from (``reason``, for the summary line); and what a full tile of that side
    should cost per input pixel (the in-use check, :func:`check_tile_speed`)."""

    side: int
    still_faster: bool
    reason: str = ""
    key: str = ""
    seconds_per_px: float = 0.0
    cached: bool = True


def _write_entry(path: Path, key: str, entry: dict | None) -> None:
    """Set (or with None remove) one entry of the cache file, atomically; a read-only cache is a warning."""
    try:
        cache = _read_cache(path)
        if entry is None:
            cache.pop(key, None)
        else:
            cache[key] = entry
        with atomic_path(path) as tmp:
            tmp.write_text(json.dumps({"version": CACHE_VERSION, "tiles": cache}, indent=1), encoding="utf-8")
    except OSError as exc:  # a read-only home: tune again next time, say why once
        log.warning("could not write the tuned tile to %s (%s); set SRGAN_CACHE_DIR", path, exc)


def tuned_tile(generator: Generator, device: torch.device, precision: str, memory_format: torch.memory_format,
               pad: int, forward: Callable[[torch.Tensor], torch.Tensor], *, retune: bool = False) -> TunedTile:
    """The fastest tile side for this network on this device: the cache entry (:func:`cache_path`, key
    :func:`tune_key`) when there is a sound one, else measured (:func:`measure_sides`) and cached if the probe is
    :attr:`Probe.cacheable`; ``retune`` measures again whatever the cache holds. Never above the memory bound."""
    layout = "channels_last" if memory_format == torch.channels_last else "contiguous"
    key = tune_key(generator, device, precision, layout, pad)
    bound = memory_side(generator, device, pad)
    path = cache_path()
    entry = _read_cache(path).get(key)
    why = "--retune" if retune else "stale: " + entry.get("stale", "") if entry and entry.get("stale") else ""
    if entry is not None and not why:
        side = min(int(entry["tile"]), bound)
        per_px = entry.get("seconds_per_mpx", {}).get(str(entry["tile"]), 0.0) / 1e6
        return TunedTile(side, bool(entry.get("still_faster", False)), f"tuned {entry['tile']}", key, per_px)
    largest = min(bound, MAX_TUNE_TILE.get(device.type, 2048))
    log.info("measuring the fastest tile for %s%s (cache: %s)", key, f" ({why})" if why else "", path)
    probe = measure_sides(forward, device, memory_format, pad, largest)
    per_px = probe.seconds_per_px
    fastest = min(per_px.values())  # the largest side within 5 % of the fastest: fewer tiles, less padding
    tile = max(side for side, t in per_px.items() if t <= 1.05 * fastest)
    still = probe.still_faster
    if probe.cacheable:
        _write_entry(path, key, {"tile": tile, "still_faster": still, "stopped": probe.stopped,
                                 "measured": time.strftime("%Y-%m-%d %H:%M:%S"),
                                 "seconds_per_mpx": {str(s): round(v * 1e6, 4) for s, v in per_px.items()}})
        reason = f"tuned {tile}" + (f" (re-measured: {why})" if why else "")
    else:
        log.warning("the tile probe stopped at %d side(s) (%s): tile %d is used for this run only, not cached; "
                    "`srgan upscale --retune` measures again", len(per_px), probe.stopped, tile)
        reason = f"tuned this run only: {probe.describe()}"
    return TunedTile(min(tile, bound), still, reason, key, per_px[tile], probe.cacheable)


def check_tile_speed(tuned: TunedTile, seconds_per_px: float) -> bool:
    """The in-use check of a cached side: ``seconds_per_px`` measured on an image's full tiles against what the entry
    recorded. More than :data:`STALE_FACTOR` times slower marks the entry stale (the next image measures again) and
    returns False; True when the entry holds (or there is nothing to check against)."""
    if not tuned.cached or not tuned.key or tuned.seconds_per_px <= 0:
        return True
    ratio = seconds_per_px / tuned.seconds_per_px
    if ratio <= STALE_FACTOR:
        return True
    path = cache_path()
    entry = _read_cache(path).get(tuned.key)
    if entry is not None:
        entry["stale"] = (f"tiles of {tuned.side} ran {seconds_per_px * 1e6:.3g} s/MP, {ratio:.1f}x the "
                          f"{tuned.seconds_per_px * 1e6:.3g} s/MP recorded")
        _write_entry(path, tuned.key, entry)
    log.warning("tiles of %d ran %.1fx slower per pixel than the tile cache recorded: it is measured again for the "
                "next image", tuned.side, ratio)
    return False
