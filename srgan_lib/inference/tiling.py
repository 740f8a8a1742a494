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

Each side is timed with its own pad (:mod:`srgan_lib.inference.context`: the smallest that keeps the tiled output
within a stated bound of the whole-image output), every window of an image has one size (:func:`padded_window`),
and an image runs whole when that is measured to be cheaper (never on an input size the probe did not time).
"""

from __future__ import annotations

import bisect
import dataclasses
import logging
import math
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass

import torch

from srgan_lib.hardware import cpu_name
from srgan_lib.inference.cache import cache_path, read_cache, write_entry
from srgan_lib.models import SPECS, Generator

log = logging.getLogger(__name__)

# Largest automatic tile per device under the memory rule. On CPU the 23-block RRDBNet on 384x384 ran 1.51x faster in
# tiles of 192 than in one pass, padding included (2 cores, benchmarks/results/upscale-rrdbnet-384-cpu.json).
MAX_AUTO_TILE = {"cpu": 512, "cuda": 2048}
# Sides the tuner tries (input pixels), smallest first, up to the memory bound and the device's largest.
TUNE_SIDES = (64, 96, 128, 192, 256, 384, 512, 768, 1024, 1536, 2048)
MAX_TUNE_TILE = {"cpu": 1024, "cuda": 2048}
# Images no larger than this (both sides) run whole without any probe when they fit the memory rule: any grid of the
# tuner's sides with their pads would run each pixel 1.5x or more in overlapping windows (192x192 in tiles of 96, pad
# 24: four windows of 144x144, 2.25x the pixels), which no per-pixel speed-up of a smaller window has repaid
SMALL_WHOLE = 192
# The probe stops trying larger sides after this much time in timed forwards (a CPU and a 23-block RRDBNet); warm-ups
# (kernel selection for each new shape) are not counted, but everything together stops at TUNE_WALL_S
TUNE_BUDGET_S = 30.0
TUNE_WALL_S = 120.0
TUNE_REPEATS = 2  # timed forwards per side (one per pass) after its warm-up; the fastest counts (load only adds time)
# A side whose two passes differ by more than this: the machine was busy, the probe is not cached. 1.5 because a quiet
# 2-core Xeon's forwards move 10-30 % from minute to minute (1.25 left clean probes uncached and re-run every time),
# while a second process on the same cores slows each forward 1.5x or more
DISTURBED = 1.5
MIN_SIDES = 3  # fewer measured sides are not cached (unless there were no more to try)
STALE_FACTOR = 2.0  # full tiles this much slower per pixel than the cache recorded: the entry is re-measured


def tile_grid(height: int, width: int, tile: int) -> Iterator[tuple[int, int, int, int]]:
    """``(y0, y1, x0, x1)`` of the tiles covering an image, row by row; ``tile <= 0`` means one tile."""
    if tile <= 0:
        yield 0, height, 0, width
        return
    for y0 in range(0, height, tile):
        for x0 in range(0, width, tile):
            yield y0, min(y0 + tile, height), x0, min(x0 + tile, width)


def padded_window(lo: int, hi: int, length: int, side: int, pad: int) -> tuple[int, int]:
    """The input span ``[w0, w1)`` that runs for the tile span ``[lo, hi)`` of an axis of ``length`` pixels: ``side``
    + 2 ``pad`` pixels from ``lo - pad``, shifted inwards at the image's edges (more context on the inner side, never
    less than ``pad``) so that every window of an image has one size (one compiled shape, one kernel choice); the
    whole axis when it is shorter, or for ``side <= 0``."""
    if side <= 0:
        return 0, length
    size = min(length, side + 2 * pad)
    start = min(max(lo - pad, 0), length - size)
    assert start <= lo and hi <= start + size, (lo, hi, length, side, pad)
    return start, start + size


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


def device_name(device: torch.device) -> str:
    """The GPU's or the CPU's model name."""
    return torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_name()


PadRule = int | Mapping[int, int]  # one pad for every side (``--tile-pad N``), or each side's own (measured)


def pad_of(pad: PadRule, side: int) -> int:
    """The pad a tile side carries under a pad rule."""
    return pad if isinstance(pad, int) else pad[side]


def describe_pads(pad: PadRule) -> str:
    """``pad 16`` or ``pads 64:24,96:20,...`` (part of the tuner's cache key: the timings depend on it)."""
    return f"pad {pad}" if isinstance(pad, int) else "pads " + ",".join(f"{s}:{p}" for s, p in sorted(pad.items()))


def tune_key(generator: Generator, device: torch.device, precision: str, layout: str, pad: PadRule) -> str:
    """What the fastest tile depends on: network, device, precision, memory format, threads, context, torch."""
    options = ",".join(f"{k}={v}" for k, v in sorted(generator.options.items()))
    threads = torch.get_num_threads() if device.type == "cpu" else 0
    return (f"{generator.architecture}({options}) x{generator.scale} | {device_name(device)} | {precision} {layout} | "
            f"threads {threads} | {describe_pads(pad)} | torch {torch.__version__}")


# ------------------------------------------------------------------------------------------------ the tile (speed)


@dataclass(frozen=True)
class Probe:
    """Seconds per input pixel of each measured side (its pad's cost included), the forward's seconds per pixel of
    each padded input it ran (``forward_s_per_px``, by padded side: what a whole image of that size costs), and why
    the probe stopped: ``slower`` (two sides in a row more than 15 % slower than the best: the fastest was found),
    ``largest`` (every side up to the bound was tried) or ``budget`` (time ran out: larger sides were never tried)."""

    seconds_per_px: dict[int, float]
    stopped: str
    forward_s_per_px: dict[int, float] | None = None
    disturbed: bool = False  # the passes disagreed (:data:`DISTURBED`): another process shared the cores

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
        if self.disturbed:
            return False
        if len(self.seconds_per_px) < MIN_SIDES:
            return self.stopped == "largest"
        return self.stopped != "budget" or self.turned

    def describe(self) -> str:
        n = len(self.seconds_per_px)
        why = "its time budget" if self.stopped == "budget" else "two slower sides" if self.stopped == "slower" \
            else "the largest side"
        busy = "; its passes disagreed: a busy machine" if self.disturbed else ""
        return f"probe stopped at {n} side{'s' if n != 1 else ''} ({why}{busy})"


def measure_sides(forward: Callable[[torch.Tensor], torch.Tensor], device: torch.device,
                  memory_format: torch.memory_format, pad: PadRule, largest: int,
                  budget_s: float = TUNE_BUDGET_S, repeats: int = TUNE_REPEATS, wall_s: float = TUNE_WALL_S) -> Probe:
    """Seconds per input pixel of one padded tile of each side in :data:`TUNE_SIDES` up to ``largest`` (each side
    with its own pad under a per-side rule): one warm-up (oneDNN / cuDNN / OpenVINO prepare a new shape: not counted
    against the budget) and one timed forward of random input each, smallest first, stopping after ``budget_s`` of
    timed forwards (or ``wall_s`` in all), or two sides in a row slower than the best one by 15 %; then ``repeats``
    - 1 more passes over the measured sides (the fastest time of each counts). Passes spread over time see a
    passing load alike on every side; passes that disagree by more than :data:`DISTURBED` mark the probe
    ``disturbed`` (not cached)."""
    results: dict[int, float] = {}
    forwards: dict[int, float] = {}
    spent, worse, stopped, start = 0.0, 0, "largest", time.perf_counter()

    def timed(x: torch.Tensor) -> float:
        begin = time.perf_counter()
        forward(x)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return time.perf_counter() - begin

    inputs: dict[int, torch.Tensor] = {}
    times: dict[int, list[float]] = {}
    for side in (s for s in TUNE_SIDES if s <= largest and (isinstance(pad, int) or s in pad)):
        if results and (spent > budget_s or time.perf_counter() - start > wall_s):
            stopped = "budget"
            break
        padded = side + 2 * pad_of(pad, side)
        x = inputs[side] = torch.rand(1, 3, padded, padded, device=device).contiguous(memory_format=memory_format)
        timed(x)  # warm-up
        times[side] = [timed(x)]
        results[side] = times[side][0] / side**2
        spent += times[side][0]
        best = min(results.values())
        worse = worse + 1 if results[side] > 1.15 * best else 0
        if worse >= 2:
            stopped = "slower"
            break
    for _ in range(repeats - 1):
        for side, x in inputs.items():
            times[side].append(timed(x))
    # forwards under 20 ms (a small network's smallest tiles) jitter by more than any load shows: not counted
    disturbed = any(max(t) > DISTURBED * min(t) for t in times.values() if len(t) > 1 and min(t) >= 0.02)
    for side, t in times.items():
        padded = inputs[side].shape[-1]
        results[side], forwards[padded] = min(t) / side**2, min(t) / padded**2
    return Probe(results, stopped, forwards, disturbed)


@dataclass(frozen=True)
class TunedTile:
    """What the probe measured: the fastest side, every measured side's seconds per input pixel (``per_side``: the
    in-use check, and the choice per image), the forward's seconds per pixel by padded input side (``forward``:
    what a whole image costs, interpolated), the pad rule the sides were timed with, and where it came from
    (``reason``, for the summary line)."""

    side: int
    pad: PadRule
    per_side: dict[int, float]
    forward: dict[int, float]
    reason: str = ""
    key: str = ""
    cached: bool = True

    def whole_seconds(self, height: int, width: int) -> float:
        """A whole ``height`` x ``width`` image's estimated seconds (the forward's per-pixel cost interpolated at its
        side); infinite when it is larger than any input the probe ran (never chosen unmeasured)."""
        sides = sorted(self.forward)
        side = math.sqrt(height * width)
        if not sides or side > sides[-1]:
            return math.inf
        i = bisect.bisect_left(sides, side)
        if i == 0:
            rate = self.forward[sides[0]]
        else:
            lo, hi = sides[i - 1], sides[i]
            rate = self.forward[lo] + (self.forward[hi] - self.forward[lo]) * (side - lo) / (hi - lo)
        return rate * height * width

    def tiled_seconds(self, height: int, width: int, side: int) -> float:
        """The estimated seconds of an image in tiles of ``side`` with that side's pad: every tile runs a window of
        one size (:func:`padded_window`), costed at the forward's per-pixel rate for that size."""
        pad = pad_of(self.pad, side)
        h, w = min(height, side + 2 * pad), min(width, side + 2 * pad)
        each = self.whole_seconds(h, w)
        if not math.isfinite(each):
            each = self.per_side[side] * side * side
        return math.ceil(height / side) * math.ceil(width / side) * each

    def close_call(self, height: int, width: int, bound: int) -> bool:
        """Whether the whole image is a candidate whose estimate (interpolated, no measurement at its own size)
        is within 1.5x of the best tiles' either way: worth one forward at its size (:func:`measure_whole`). The
        per-pixel cost is not smooth in the size (OpenVINO on 2 cores: 28.8 s/MP at 512x512, 39 at 536x536)."""
        side = round(math.sqrt(height * width))
        if max(height, width) > bound or side in self.forward or max(height, width) > MAX_TUNE_TILE["cpu"] * 2:
            return False
        whole = self.whole_seconds(height, width)
        tiled = min((self.tiled_seconds(height, width, s) for s in self.per_side if s <= bound), default=math.inf)
        return math.isfinite(whole) and math.isfinite(tiled) and 1 / 1.5 <= whole / tiled <= 1.5

    def choose(self, height: int, width: int, bound: int) -> int:
        """The tile side (0: whole) for this image: among the measured sides within the memory ``bound`` and, when
        the memory rule allows it (``bound`` covers the image), the whole image, those whose estimated time is
        within 5 % of the smallest; of those the whole image, else the largest side (fewer seams, less padding, and
        the same choice from run to run when two sides time alike)."""
        options = {s: self.tiled_seconds(height, width, s) for s in self.per_side if s <= bound}
        if max(height, width) <= bound or not options:
            options[0] = self.whole_seconds(height, width)
        fastest = min(options.values())
        if not math.isfinite(fastest):
            return self.side
        near = [s for s, t in options.items() if t <= 1.05 * fastest]
        return 0 if 0 in near else max(near)


def measure_whole(forward: Callable[[torch.Tensor], torch.Tensor], device: torch.device,
                  memory_format: torch.memory_format, height: int, width: int) -> float:
    """Seconds per pixel of one forward of a ``height`` x ``width`` random input (after a warm-up)."""
    x = torch.rand(1, 3, height, width, device=device).contiguous(memory_format=memory_format)
    forward(x)
    start = time.perf_counter()
    forward(x)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return (time.perf_counter() - start) / (height * width)


def record_whole(tuned: TunedTile, height: int, width: int, seconds_per_px: float) -> TunedTile:
    """``tuned`` with a forward measured at an image's own size (keyed by the side of the square of its area),
    written to its cache entry when it has one."""
    side = round(math.sqrt(height * width))
    forward = {**tuned.forward, side: seconds_per_px}
    if tuned.cached and tuned.key:
        path = cache_path()
        entry = read_cache(path).get(tuned.key)
        if entry is not None:
            entry.setdefault("forward_s_per_mpx", {})[str(side)] = round(seconds_per_px * 1e6, 4)
            write_entry(path, tuned.key, entry)
    return dataclasses.replace(tuned, forward=forward)


def tuned_tile(generator: Generator, device: torch.device, precision: str, memory_format: torch.memory_format,
               pad: PadRule, forward: Callable[[torch.Tensor], torch.Tensor], *, retune: bool = False,
               backend: str = "torch") -> TunedTile:
    """The fastest tile side for this network on this device and backend: the cache entry (:func:`cache_path`, key
    :func:`tune_key`) when there is a sound one, else measured (:func:`measure_sides`) and cached if the probe is
    :attr:`Probe.cacheable`; ``retune`` measures again whatever the cache holds. Never above the memory bound."""
    layout = backend if backend != "torch" else "channels_last" if memory_format == torch.channels_last \
        else "contiguous"
    key = tune_key(generator, device, precision, layout, pad)
    bound = memory_side(generator, device, pad if isinstance(pad, int) else max(pad.values(), default=0))
    path = cache_path()
    entry = read_cache(path).get(key)
    why = "--retune" if retune else "stale: " + entry.get("stale", "") if entry and entry.get("stale") else ""
    if entry is not None and not why:
        per_side = {int(s): v / 1e6 for s, v in entry.get("seconds_per_mpx", {}).items()}
        fwd = {int(s): v / 1e6 for s, v in entry.get("forward_s_per_mpx", {}).items()}
        return TunedTile(min(int(entry["tile"]), bound), pad, per_side, fwd, f"tuned {entry['tile']}", key)
    largest = min(bound, MAX_TUNE_TILE.get(device.type, 2048))
    log.info("measuring the fastest tile for %s%s (cache: %s)", key, f" ({why})" if why else "", path)
    probe = measure_sides(forward, device, memory_format, pad, largest)
    per_px = probe.seconds_per_px
    fastest = min(per_px.values())  # the largest side within 5 % of the fastest: fewer tiles, less padding
    tile = max(side for side, t in per_px.items() if t <= 1.05 * fastest)
    fwd = probe.forward_s_per_px or {}
    if probe.cacheable:
        write_entry(path, key, {"tile": tile, "stopped": probe.stopped, "measured": time.strftime("%Y-%m-%d %H:%M:%S"),
                                 "seconds_per_mpx": {str(s): round(v * 1e6, 4) for s, v in per_px.items()},
                                 "forward_s_per_mpx": {str(s): round(v * 1e6, 4) for s, v in fwd.items()}})
        reason = f"tuned {tile}" + (f" (re-measured: {why})" if why else "")
    else:
        log.warning("the tile probe stopped at %d side(s) (%s): tile %d is used for this run only, not cached; "
                    "`srgan upscale --retune` measures again", len(per_px), probe.stopped, tile)
        reason = f"tuned this run only: {probe.describe()}"
    return TunedTile(min(tile, bound), pad, dict(per_px), dict(fwd), reason, key, probe.cacheable)


def check_tile_speed(tuned: TunedTile, side: int, seconds_per_px: float) -> bool:
    """The in-use check of a cached side: ``seconds_per_px`` measured on an image's full tiles of ``side`` against
    what the entry recorded. More than :data:`STALE_FACTOR` times slower marks the entry stale (the next image
    measures again) and returns False; True when the entry holds (or there is nothing to check against)."""
    recorded = tuned.per_side.get(side, 0.0)
    if not tuned.cached or not tuned.key or recorded <= 0:
        return True
    ratio = seconds_per_px / recorded
    if ratio <= STALE_FACTOR:
        return True
    path = cache_path()
    entry = read_cache(path).get(tuned.key)
    if entry is not None:
        entry["stale"] = (f"tiles of {side} ran {seconds_per_px * 1e6:.3g} s/MP, {ratio:.1f}x the "
                          f"{recorded * 1e6:.3g} s/MP recorded")
        write_entry(path, tuned.key, entry)
    log.warning("tiles of %d ran %.1fx slower per pixel than the tile cache recorded: it is measured again for the "
                "next image", side, ratio)
    return False
