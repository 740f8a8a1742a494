"""Upscale throughput: the tiled Upscaler (default settings) against a plain untiled ``model(x)`` in fp32 and, for
RRDBNet, the maintained peer spandrel (the same weights loaded from a checkpoint file; whole image and Real-ESRGAN-style
fixed tiles), all in the same process, with each output's PSNR against the fp32 whole-image one.

For SRResNet and the 23-block RRDBNet (the papers' configurations, random weights: speed does not depend on them)
it times input megapixels per second at several tile sizes and the plain reference, and prints the ratio
(ours / reference, higher is better) and the peak memory of each (CPU: resident set growth sampled every 5 ms;
CUDA: ``max_memory_allocated``). On a GPU the achieved TFLOP/s is compared with the FLOP count (RRDBNet: 35.9 TFLOP
per input megapixel at x4, the design floors).

    python benchmarks/upscale.py                 # CPU defaults: SRResNet 256x256, RRDBNet 512x512 (~25 min, 2 cores)
    python benchmarks/upscale.py --models rrdbnet --repeats 1 --warmup 0   # the RRDBNet large-tile rows (~10 min)
    python benchmarks/upscale.py --device cuda --size 1024 --tiles 256 512 0 --json benchmarks/results/upscale-h100.json

``--defaults-vs-fixed SIDE`` instead compares ``srgan upscale``'s default tile rule on one SIDExSIDE input against the
best fixed tile of ``--fixed`` (128 192 256) in the same run, twice: with a cold tile cache, and with the cache
written by a probe taken while a second process runs the same forward (load), as a later run then finds it. Each
defaults row gives the upscale alone and the probe's cost separately (~9 min for RRDBNet-23 at 600 on 2 cores):

    python benchmarks/upscale.py --defaults-vs-fixed 600 --json benchmarks/results/upscale-tile-defaults-cpu.json
"""

from __future__ import annotations

import argparse
import atexit
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import psutil
import torch

from srgan_lib.inference.upscaler import Upscaler
from srgan_lib.models import as_generator, build_model, to_unit


def conv_tflop_per_input_mp(model: torch.nn.Module, side: int = 32) -> float:
    """Forward FLOPs (2 x multiply-accumulates of every convolution) per input megapixel, counted with hooks on a
    side x side input; the design floors gives 35.9 for the paper's RRDBNet."""
    total = 0

    def hook(mod: torch.nn.Conv2d, _inp: tuple, out: torch.Tensor) -> None:
        nonlocal total
        k = mod.kernel_size[0] * mod.kernel_size[1]
        total += 2 * out.numel() * (mod.in_channels // mod.groups) * k

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    try:
        with torch.no_grad():
            model(torch.zeros(1, 3, side, side, device=next(model.parameters()).device))
    finally:
        for h in handles:
            h.remove()
    return total / (side * side) * 1e6 / 1e12


class PeakRSS:
    """Peak resident-set growth over a block, sampled in a thread (CPU memory is not otherwise attributable)."""

    def __init__(self) -> None:
        self.proc, self.peak, self._stop = psutil.Process(), 0, threading.Event()

    def __enter__(self) -> PeakRSS:
        self.base = self.proc.memory_info().rss
        self.thread = threading.Thread(target=self._sample, daemon=True)
        self.thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.proc.memory_info().rss - self.base)
            time.sleep(0.005)

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self.thread.join()
        self.peak = max(self.peak, self.proc.memory_info().rss - self.base)


def _measure(fn, device: torch.device, repeats: int, warmup: int) -> tuple[float, float, object]:
    """(median seconds, peak MiB, the last result) of ``fn()`` after ``warmup`` untimed calls."""
    for _ in range(warmup):
        fn()
    times, peak, out = [], 0.0, None
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats(device)
        with PeakRSS() as rss:
            start = time.perf_counter()
            out = fn()
            if device.type == "cuda":
                torch.cuda.synchronize()
            times.append(time.perf_counter() - start)
        used = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else rss.peak
        peak = max(peak, used / 2**20)
    return statistics.median(times), peak, out


def _to_u8(y: torch.Tensor) -> np.ndarray:
    """N x 3 x H x W in [0, 1] -> H x W x 3 uint8 (what every side writes as an image)."""
    return y[0].clamp(0, 1).mul(255).round().byte().permute(1, 2, 0).cpu().numpy()


def psnr_u8(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR (dB, RGB, no shave) of two uint8 images: how far an output is from the fp32 whole-image one."""
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


def realesrgan_tiles(model, x: torch.Tensor, tile: int, pad: int = 10, scale: int = 4) -> torch.Tensor:
    """Fixed tiles the way Real-ESRGAN's inference script cuts them (``--tile T``, ``tile_pad`` 10): each tile with
    ``pad`` pixels of context, run alone, its padded border cropped off before it is pasted."""
    _, c, h, w = x.shape
    out = x.new_zeros((1, c, h * scale, w * scale))
    for y0 in range(0, h, tile):
        for x0 in range(0, w, tile):
            y1, x1 = min(y0 + tile, h), min(x0 + tile, w)
            py0, py1, px0, px1 = max(y0 - pad, 0), min(y1 + pad, h), max(x0 - pad, 0), min(x1 + pad, w)
            with torch.no_grad():
                y = model(x[:, :, py0:py1, px0:px1])
            out[:, :, y0 * scale:y1 * scale, x0 * scale:x1 * scale] = y[
                :, :, (y0 - py0) * scale:(y1 - py0) * scale, (x0 - px0) * scale:(x1 - px0) * scale]
    return out


def spandrel_rows(model: torch.nn.Module, x: torch.Tensor, device: torch.device, repeats: int, warmup: int,
                  tile: int) -> list[tuple[str, float, float, np.ndarray]]:
    """The maintained peer: spandrel loading the same weights from a checkpoint file, called as its users call it
    (the whole image, and Real-ESRGAN-style fixed tiles); (config, seconds, peak MiB, output) rows, or none when
    spandrel is not installed (``pip install 'srgan[bench]'``)."""
    try:
        import spandrel
    except ImportError:
        print("spandrel is not installed (pip install 'srgan[bench]'): the peer rows are left out")
        return []
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "rrdbnet.pth"
        torch.save({"params_ema": model.state_dict()}, path)
        peer = spandrel.ModelLoader(device=device).load_from_file(str(path)).eval()
    rows = []
    for config, fn in ((f"spandrel {spandrel.__version__} whole", lambda: peer(x)),
                       (f"spandrel tiles {tile} pad 10", lambda: realesrgan_tiles(peer, x, tile))):
        with torch.no_grad():
            s, mem, y = _measure(fn, device, repeats, warmup)
        rows.append((config, s, mem, _to_u8(y)))
    return rows


def bench(name: str, size: int, tiles: list[int], pad: int, device: torch.device, repeats: int,
          warmup: int, peer: bool = True) -> list[dict]:
    gen = as_generator(build_model(name).eval().to(device))
    model = gen.module
    img = np.random.default_rng(0).integers(0, 256, (size, size, 3), dtype=np.uint8)
    mp = size * size / 1e6
    x = torch.from_numpy(img).permute(2, 0, 1)[None].float().div(255).to(device)

    @torch.no_grad()
    def reference() -> np.ndarray:  # the output in [0, 1] as the Upscaler writes it (SRResNet's tanh is [-1, 1])
        return _to_u8(to_unit(model(x), gen.value_range))

    ref_s, ref_mem, ref_out = _measure(reference, device, repeats, warmup)
    rows = [{"model": name, "config": "reference model(x)", "tile": None, "seconds": ref_s, "mp_per_s": mp / ref_s,
             "ratio": 1.0, "peak_mib": ref_mem, "psnr_vs_fp32": float("inf")}]
    for tile in tiles:
        # defaults: precision auto, as users run it; tile -1: `srgan upscale`'s default, the side measured once on
        # this machine (tuned before timing, in a temporary cache)
        up = Upscaler(gen, device=device, tile=None if tile < 0 else tile, tile_pad=pad, autotune=tile < 0)
        if tile < 0:
            tile = up.tile_for(size, size)
        s, mem, out = _measure(lambda up=up: up.upscale_array(img, progress=False), device, repeats, warmup)
        ran = "/".join(sorted(up.runs)) or up.precision  # what ran: the accuracy guard may choose fp32
        label = f"tuned {tile or 'whole'}" if up.autotune else f"tile {tile or 'whole'}"
        rows.append({"model": name, "config": f"Upscaler {label} pad {pad} {ran}",
                     "tile": tile, "seconds": s, "mp_per_s": mp / s, "ratio": ref_s / s, "peak_mib": mem,
                     "psnr_vs_fp32": psnr_u8(out, ref_out)})
    if peer and name == "rrdbnet":
        for config, s, mem, out in spandrel_rows(model, x, device, repeats, warmup, max(t for t in tiles) or 256):
            rows.append({"model": name, "config": config, "tile": None, "seconds": s, "mp_per_s": mp / s,
                         "ratio": ref_s / s, "peak_mib": mem, "psnr_vs_fp32": psnr_u8(out, ref_out)})
    per_mp = conv_tflop_per_input_mp(model)
    for row in rows:
        row["tflop_per_input_mp"] = per_mp
        row["tflops"] = per_mp * row["mp_per_s"]
    return rows


LOAD = r"""
import sys, torch
from srgan_lib.models import build_model
torch.manual_seed(0)
net = build_model("rrdbnet", **({} if sys.argv[1] == "paper" else {"num_block": 1, "num_feat": 8})).eval()
x = torch.rand(1, 3, 288, 288)
print("ready", flush=True)
with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=sys.argv[2] == "bf16"):
    while True:
        net(x)
"""


def defaults_vs_fixed(size: int, fixed: list[int], device: torch.device, tiny: bool) -> list[dict]:
    """``srgan upscale``'s default tile rule against fixed tiles on one input (module docstring): rows of seconds
    (the upscale alone), the probe's seconds, the tile that ran and why, and the ratio best fixed / this row."""
    torch.manual_seed(0)
    options = {"num_block": 1, "num_feat": 8} if tiny else {}
    gen = as_generator(build_model("rrdbnet", **options).eval())
    img = np.random.default_rng(0).integers(0, 256, (size, size, 3), dtype=np.uint8)
    rows: list[dict] = []

    def run(config: str, up: Upscaler) -> None:
        start = time.perf_counter()
        up.tile_for(size, size)  # the default rule tunes (or reads the cache) here
        probe = time.perf_counter() - start
        start = time.perf_counter()
        up.upscale_array(img, progress=False)
        seconds = time.perf_counter() - start
        rows.append({"config": config, "seconds": seconds, "probe_seconds": probe, "tile": up.tile_for(size, size),
                     "why": up.describe_tile(), "ran": up.describe_runs()})
        print(f"  {config:<44} {seconds:8.1f} s  (+ {probe:5.1f} s probe)  {up.describe_tile()}", flush=True)

    for tile in fixed:
        run(f"fixed tile {tile}", Upscaler(gen, device=device, tile=tile))
    with tempfile.TemporaryDirectory() as cold:
        os.environ["SRGAN_CACHE_DIR"] = cold
        run("defaults, cold cache", Upscaler(gen, device=device))
    with tempfile.TemporaryDirectory() as loaded:
        os.environ["SRGAN_CACHE_DIR"] = loaded
        probe_up = Upscaler(gen, device=device)
        load = subprocess.Popen([sys.executable, "-c", LOAD, "tiny" if tiny else "paper", probe_up.precision],
                                stdout=subprocess.PIPE, text=True)
        try:
            assert load.stdout is not None and load.stdout.readline().strip() == "ready"
            start = time.perf_counter()
            probe_up.tile_for(size, size)
            print(f"  probe under load: {time.perf_counter() - start:.1f} s -> {probe_up.describe_tile()}", flush=True)
            under_load = probe_up.describe_tile()
        finally:
            load.kill()
            load.wait()
        run("defaults, a later run after a probe under load", Upscaler(gen, device=device))
        rows[-1]["probe_under_load"] = under_load
    best = min(r["seconds"] for r in rows if r["config"].startswith("fixed"))
    for r in rows:
        r["ratio_vs_best_fixed"] = best / r["seconds"]
        r["ratio_vs_best_fixed_with_probe"] = best / (r["seconds"] + r["probe_seconds"])
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--models", nargs="+", default=["srresnet", "rrdbnet"], choices=("srresnet", "rrdbnet"))
    p.add_argument("--size", type=int, default=None, help="input side (default: 256 CPU, 1024 CUDA)")
    p.add_argument("--rrdb-size", type=int, default=None, help="input side for RRDBNet (default: 512 CPU, 1024 CUDA)")
    p.add_argument("--tiles", type=int, nargs="+", default=None,
                   help="tile sizes (0 = whole image; -1 = measured once, as `srgan upscale` does by default)")
    p.add_argument("--pad", type=int, default=16)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--warmup", type=int, default=1, help="untimed calls before timing (default 1)")
    p.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    p.add_argument("--no-peer", action="store_true", help="leave out spandrel (the peer, RRDBNet only)")
    p.add_argument("--defaults-vs-fixed", type=int, metavar="SIDE",
                   help="compare the default tile rule with --fixed tiles on one SIDExSIDE input (RRDBNet-23)")
    p.add_argument("--fixed", type=int, nargs="+", default=[128, 192, 256], help="fixed tiles (default 128 192 256)")
    p.add_argument("--tiny", action="store_true", help="a 1-block RRDBNet (smoke runs)")
    args = p.parse_args()
    if args.defaults_vs_fixed:
        device = torch.device(args.device)
        print(f"rrdbnet{' (tiny)' if args.tiny else '-23'}, {args.defaults_vs_fixed}x{args.defaults_vs_fixed} input, "
              f"{device}, {torch.get_num_threads()} threads")
        rows = defaults_vs_fixed(args.defaults_vs_fixed, args.fixed, device, args.tiny)
        for r in rows:
            print(f"{r['config']:<48} ratio vs best fixed {r['ratio_vs_best_fixed']:.2f} "
                  f"({r['ratio_vs_best_fixed_with_probe']:.2f} with its probe)")
        if args.json:
            cpu = platform.processor() or platform.machine()
            meta = {"device": f"{device} ({torch.get_num_threads()} threads, {cpu})",
                    "torch": torch.__version__, "command": "python benchmarks/upscale.py " + " ".join(sys.argv[1:])}
            Path(args.json).parent.mkdir(parents=True, exist_ok=True)
            Path(args.json).write_text(json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n")
        return
    if "SRGAN_CACHE_DIR" not in os.environ:  # tune afresh, in a folder removed at exit
        fresh = tempfile.mkdtemp(prefix="srgan-bench-cache-")
        atexit.register(shutil.rmtree, fresh, ignore_errors=True)
        os.environ["SRGAN_CACHE_DIR"] = fresh
    device = torch.device(args.device)
    cuda = device.type == "cuda"
    rows = []
    for name in args.models:
        size = (args.rrdb_size if name == "rrdbnet" else args.size) or (1024 if cuda else 256 if name == "srresnet"
                                                                         else 512)
        tiles = args.tiles or ([256, 512, 0] if cuda else [size // 4, size // 2, 0])
        rows += bench(name, size, tiles, args.pad, device, args.repeats, args.warmup, peer=not args.no_peer)
        size_note = f"{size}x{size} input"
        print(f"\n{name} ({size_note}, {rows[-1]['tflop_per_input_mp']:.1f} TFLOP per input MP, {device}"
              f"{', ' + torch.cuda.get_device_name(device) if cuda else ''})")
        print(f"{'config':<34} {'s':>8} {'MP/s':>8} {'ratio':>6} {'peak MiB':>9} {'TFLOP/s':>8} {'PSNR dB':>8}")
        for r in (r for r in rows if r["model"] == name):
            print(f"{r['config']:<34} {r['seconds']:8.3f} {r['mp_per_s']:8.4f} {r['ratio']:6.2f} "
                  f"{r['peak_mib']:9.0f} {r['tflops']:8.2f} {r['psnr_vs_fp32']:8.2f}")
    print("\nratio = reference seconds / this row's (higher is faster); MP = input megapixels; PSNR: of the output "
          "against the fp32 whole-image model(x) output (inf: identical)")
    if args.json:
        meta = {"device": torch.cuda.get_device_name(device) if cuda else f"cpu ({torch.get_num_threads()} threads, "
                f"{platform.processor() or platform.machine()})", "torch": torch.__version__,
                "command": "python benchmarks/upscale.py " + " ".join(__import__("sys").argv[1:])}
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        finite = [{k: ("identical" if isinstance(v, float) and v == float("inf") else v) for k, v in r.items()}
                  for r in rows]  # strict JSON has no Infinity
        Path(args.json).write_text(json.dumps({"meta": meta, "rows": finite}, indent=2) + "\n")


if __name__ == "__main__":
    main()
