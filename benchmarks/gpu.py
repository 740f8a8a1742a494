"""The GPU figures in one run (``benchmarks/gpu.sh`` calls this): written to ``benchmarks/results/gpu-<device>.json``.

1. **Training steps**: each recipe at the papers' batch and crop (``configs/paper.yaml``: batch 16, HR 96 SRGAN /
   128 ESRGAN, the full networks), the engine's ``Trainer.step`` with the levers off (fp32, contiguous, foreach Adam,
   Python-loop EMA, a host sync every step, no compile) and on (as configs/paper.yaml sets them: bf16 autocast,
   channels_last, fused Adam, foreach EMA, sync every 100; ``--compile`` adds torch.compile), seconds per
   step (the mean of ``--steps`` timed in one block after ``--warmup``: host syncs as ``train.sync_every`` says), the
   ratio off / on and the peak memory of each.
2. **Inference**: RRDBNet-23 (x4) megapixels of input per second through the Upscaler at tile 256, 512 and whole, in
   fp32, bf16 and fp16, with each output's PSNR against the fp32 whole-image output (what reduced precision costs),
   and the peak memory.

``--tiny`` shrinks everything (2-block networks, batch 2, small inputs) so the script runs on a CPU in seconds: the
smoke test of tests/benchmarks/test_benchmarks.py. Timings are never asserted; the figures are what the JSON records.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from train_step import paper_params  # noqa: E402  (benchmarks/, the script's own folder)

from srgan_lib.config.params import Params  # noqa: E402
from srgan_lib.hardware import resolve_device  # noqa: E402
from srgan_lib.inference.upscaler import Upscaler  # noqa: E402
from srgan_lib.metrics.psnr_ssim import psnr  # noqa: E402
from srgan_lib.models import build_model  # noqa: E402
from srgan_lib.training.distributed import Dist  # noqa: E402
from srgan_lib.training.trainer import Trainer  # noqa: E402

RECIPES = ("srresnet", "srgan", "rrdbnet", "esrgan")
OFF = {"train.amp": "none", "train.channels_last": "false", "train.fused_adam": "false",
       "train.ema_foreach": "false", "train.sync_every": 1, "train.compile": "none"}
TINY = {"srresnet": "{num_block: 2, num_feat: 16}", "rrdbnet": "{num_block: 2, num_feat: 16, num_grow_ch: 8}"}


def _params(stage: str, device: str, levers: dict[str, Any], tiny: bool) -> Params:
    """train_step.py's paper configuration of ``stage`` with ``levers`` (and, ``tiny``, small networks and batches)."""
    sets = [f"{k}={v}" for k, v in levers.items()]
    if tiny:
        gen = "srresnet" if stage in ("srresnet", "srgan") else "rrdbnet"
        sets += [f"{stage}.generator_options={TINY[gen]}", f"{stage}.batch_size=2", f"{stage}.hr_size=32"]
        if stage == "esrgan":
            sets.append(f"{stage}.discriminator_options={{num_feat: 8, input_size: 32}}")
        if stage == "srgan":
            sets.append(f"{stage}.discriminator_options={{num_feat: 8}}")
    return paper_params(stage, device, str(levers["train.compile"]), sets)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _peak_reset(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def _peak_mib(device: torch.device) -> float | None:
    return torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None


def train_steps(stage: str, device: torch.device, on: dict[str, Any], steps: int, warmup: int,
                tiny: bool) -> dict[str, Any]:
    """Median step time of one recipe with the levers off and on (same initial weights, same batches)."""
    row: dict[str, Any] = {}
    for name, levers in (("off", OFF), ("on", on)):
        params = _params(stage, str(device), levers, tiny)
        cfg = params.stage(stage)
        trainer = Trainer(stage, params, device, Dist())
        gen = torch.Generator().manual_seed(0)
        hr = torch.randint(0, 256, (cfg.batch_size, 3, cfg.hr_size, cfg.hr_size), generator=gen, dtype=torch.uint8)
        lr = torch.nn.functional.avg_pool2d(hr.float(), params.scale).round().to(torch.uint8)
        _peak_reset(device)
        for i in range(warmup + steps):
            if i == warmup:  # the timed block: one host sync at each end, as a training run syncs (sync_every)
                trainer.sync()
                _sync(device)
                t = time.perf_counter()
            trainer.set_lr(i + 1)
            trainer.step(lr, hr)
            if (i + 1) % trainer.sync_every == 0:
                trainer.sync()
        trainer.sync()
        _sync(device)
        row[name] = {"seconds_per_step": (time.perf_counter() - t) / steps, "precision": trainer.compute.precision,
                     "memory_format": trainer.compute.layout, "peak_mib": _peak_mib(device)}
        del trainer
        if device.type == "cuda":
            torch.cuda.empty_cache()
    row["ratio_off_over_on"] = row["off"]["seconds_per_step"] / row["on"]["seconds_per_step"]
    row["batch"], row["hr_size"] = cfg.batch_size, cfg.hr_size
    return row


def _finite(db: float) -> float | None:
    """A PSNR for JSON: None where the outputs are identical (infinite PSNR)."""
    return float(db) if np.isfinite(db) else None


def inference(device: torch.device, side: int, tiles: list[int], precisions: list[str], repeats: int,
              tiny: bool) -> list[dict[str, Any]]:
    """RRDBNet-23 through the Upscaler: MP/s per (tile, precision), PSNR against fp32 whole."""
    torch.manual_seed(0)
    net = build_model("rrdbnet", **({"num_block": 2, "num_feat": 16, "num_grow_ch": 8} if tiny else {}))
    image = np.random.default_rng(0).integers(0, 256, (side, side, 3), dtype=np.uint8)
    reference = Upscaler(net, device=device, tile=0, precision="fp32", guard_db=0).upscale_array(image, progress=False)
    rows = []
    for precision in precisions:
        if precision == "fp16" and device.type != "cuda":
            continue
        for tile in tiles:
            up = Upscaler(net, device=device, tile=tile, precision=precision, guard_db=0)
            up.upscale_array(image, progress=False)  # warm-up (kernels, cuDNN autotuning)
            _peak_reset(device)
            times = []
            for _ in range(repeats):
                _sync(device)
                t = time.perf_counter()
                out = up.upscale_array(image, progress=False)
                _sync(device)
                times.append(time.perf_counter() - t)
            seconds = statistics.median(times)
            rows.append({"tile": tile or "whole", "precision": precision, "seconds": seconds,
                         "input_mp_per_s": side * side / 1e6 / seconds,
                         "psnr_vs_fp32_whole": _finite(psnr(out, reference)), "peak_mib": _peak_mib(device)})
            db = rows[-1]["psnr_vs_fp32_whole"]
            print(f"  RRDBNet {side}x{side} tile {tile or 'whole':>5} {precision}: {rows[-1]['input_mp_per_s']:.3f} "
                  f"MP/s, PSNR vs fp32 whole {'identical' if db is None else f'{db:.2f} dB'}", flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="auto")
    p.add_argument("--recipes", nargs="+", choices=RECIPES, default=list(RECIPES))
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--compile", default="none", help="train.compile with the levers on (default none)")
    p.add_argument("--side", type=int, default=1024, help="inference input side (default 1024)")
    p.add_argument("--tiles", type=int, nargs="+", default=[256, 512, 0], help="0: whole image")
    p.add_argument("--precisions", nargs="+", default=["fp32", "bf16", "fp16"])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--tiny", action="store_true", help="tiny networks and inputs (the CPU smoke run)")
    p.add_argument("--json", required=True, metavar="FILE")
    args = p.parse_args(argv)
    device = resolve_device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu {platform.processor() or 'x86'}"
    on = {"train.amp": "bf16", "train.channels_last": "true", "train.fused_adam": "true", "train.ema_foreach": "true",
          "train.sync_every": 100, "train.compile": args.compile}
    result: dict[str, Any] = {"device": name, "torch": torch.__version__, "tiny": args.tiny, "train": {}}
    t0 = time.perf_counter()
    for stage in args.recipes:
        row = train_steps(stage, device, on, args.steps, args.warmup, args.tiny)
        result["train"][stage] = row
        print(f"train {stage}: levers off {row['off']['seconds_per_step']:.4f} s/step, on "
              f"{row['on']['seconds_per_step']:.4f} s/step ({row['on']['precision']}): {row['ratio_off_over_on']:.2f}x",
              flush=True)
    result["inference"] = inference(device, args.side, args.tiles, args.precisions, args.repeats, args.tiny)
    result["seconds"] = time.perf_counter() - t0
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    print(f"gpu benchmark: {len(result['train'])} recipes, {len(result['inference'])} inference rows on {name} in "
          f"{result['seconds']:.0f} s -> {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
