"""Step throughput: one optimisation step of each recipe, the training engine against a plain eager reference.

For SRResNet (MSE), SRGAN (VGG54 + adversarial), RRDBNet (L1) and ESRGAN (RaGAN + VGG54 + L1 + EMA) at the papers'
settings from ``configs/paper.yaml`` (batch 16; HR 96 for SRGAN, 128 for ESRGAN; the full networks), it times
- **ours**: ``Trainer.step`` of the training engine with the levers ``configs/paper.yaml`` sets (fused Adam, foreach
  EMA, no host sync inside the step, channels_last; bf16 autocast where the device runs it natively: CUDA, or CPUs
  with AVX512_BF16/AMX, see ``srgan_lib.hardware``; torch.compile with ``--compile``), and
- **reference**: the step written the straightforward way of the PyTorch SRGAN tutorial: fp32, the discriminator
  updated first, then the generator with a second discriminator pass (whose weight gradients are computed and thrown
  away), VGG with its weights frozen, plain Adam (``foreach=False``), a Python loop EMA, ``loss.item()`` every step,
on the same batches from the same initial weights, interleaved (one step of each in turn), warm-up excluded, the median
of ``--steps`` (the ratio: the median of the paired step ratios).
It prints seconds per step, the ratio reference / ours (higher is better) and the achieved TFLOP/s of
ours against the FLOPs of the step counted with ``torch.utils.flop_counter`` (next to the design floors's figures).
VGG weights are random (speed does not depend on them; nothing is downloaded).

    python benchmarks/train_step.py --json benchmarks/results/train-step-cpu.json     # CPU: ~15 min on 2 cores
    python benchmarks/train_step.py --device cuda --compile default --json benchmarks/results/train-step-h100.json

``--profile embedded`` times the embedded default's recipes instead (``params.yaml``: the thin networks ``make run``
trains; batch 16, HR 64), and every run measures the ``torch.mm`` 4096^2 peak (fp32 and bf16) first and reports each
recipe's counted TFLOP/s as a share of it. ``--breakdown`` adds where our step's time goes (``torch.profiler``: self
CPU time by operator, convolutions by input shape, the top rows):

    python benchmarks/train_step.py --profile embedded --recipes srresnet rrdbnet --breakdown \
        --json benchmarks/results/train-step-embedded-cpu-intel-amx.json
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from srgan_lib.config.paramfile import apply_overrides, read_params
from srgan_lib.config.params import Params, validate
from srgan_lib.config.training import COMPILE_MODES
from srgan_lib.models import to_unit
from srgan_lib.training.distributed import Dist
from srgan_lib.training.trainer import Trainer

REPO = Path(__file__).resolve().parents[1]
RECIPES = ("srresnet", "srgan", "rrdbnet", "esrgan")
# the design floors: TFLOP per step at batch 16 (conv layers, fwd+bwd = 3 x fwd); RRDBNet: 3 x 35.9 TFLOP/MP x LR MP
DESIGN_TFLOP = {"srresnet": 0.12, "srgan": 0.72, "rrdbnet": 3 * 35.9 * 16 * 32 * 32 / 1e6, "esrgan": 2.9}


def paper_params(stage: str, device: str, compile_mode: str, extra: Sequence[str] = (),
                 profile: str = "paper") -> Params:
    """configs/paper.yaml (or, ``profile="embedded"``, params.yaml) for ``stage`` with random VGG weights, no init
    checkpoint and no tracking (``extra``: more ``section.key=value`` overrides, applied last)."""
    raw = read_params(REPO / ("params.yaml" if profile == "embedded" else "configs/paper.yaml"))
    set5 = REPO / "data" / "benchmarks" / "Set5"
    sets = [f"lists.train=[{set5}]", f"lists.test=[Set5={set5}]", "realworld.sets=[Set5]",
            "train.vgg_weights=random", f"train.device={device}", f"train.compile={compile_mode}", "tracking.uri=none",
            f"{stage}.init_from=none", *extra]
    return validate(apply_overrides(raw, sets))


class ReferenceStep:
    """The tutorial's step, written out plainly (no code shared with the engine's step but the networks)."""

    def __init__(self, trainer: Trainer) -> None:
        cfg = trainer.cfg
        self.cfg, self.device, self.out_range = cfg, trainer.device, trainer.out_range
        self.g = copy.deepcopy(trainer.net_g).to(memory_format=torch.contiguous_format)
        self.d = copy.deepcopy(trainer.net_d).to(memory_format=torch.contiguous_format) if trainer.net_d else None
        self.vgg = None
        if trainer.perceptual is not None:
            extractor = getattr(trainer.perceptual.extractor, "_orig_mod", trainer.perceptual.extractor)
            self.vgg = copy.deepcopy(extractor).to(memory_format=torch.contiguous_format)
            for p in self.vgg.parameters():
                p.requires_grad_(False)
        betas = tuple(cfg.betas)
        self.opt_g = torch.optim.Adam(self.g.parameters(), lr=cfg.lr, betas=betas, foreach=False)
        self.opt_d = (torch.optim.Adam(self.d.parameters(), lr=cfg.d_lr, betas=betas, foreach=False)
                      if self.d is not None else None)
        self.ema = [p.detach().clone() for p in self.g.parameters()] if cfg.ema_decay > 0 else None

    def __call__(self, lr_u8: torch.Tensor, hr_u8: torch.Tensor) -> float:
        cfg = self.cfg
        lr = lr_u8.to(self.device).float() / 255
        hr01 = hr_u8.to(self.device).float() / 255
        lo, hi = self.out_range
        hr = hr01 * (hi - lo) + lo
        sr = self.g(lr)
        gan = cfg.gan.type
        if self.d is not None and gan != "none":
            self.opt_d.zero_grad()
            real, fake = self.d(hr), self.d(sr.detach())
            if gan == "vanilla":
                loss_d = (F.binary_cross_entropy_with_logits(real, torch.ones_like(real))
                          + F.binary_cross_entropy_with_logits(fake, torch.zeros_like(fake)))
            else:
                loss_d = (F.binary_cross_entropy_with_logits(real - fake.mean(), torch.ones_like(real))
                          + F.binary_cross_entropy_with_logits(fake - real.mean(), torch.zeros_like(fake)))
            loss_d.backward()
            self.opt_d.step()
        self.opt_g.zero_grad()
        loss = torch.zeros((), device=self.device)
        if cfg.pixel.type != "none":
            fn = F.mse_loss if cfg.pixel.type == "mse" else F.l1_loss
            loss = loss + cfg.pixel.weight * fn(sr, hr)
        if self.vgg is not None:
            s = cfg.perceptual.feature_scale
            with torch.no_grad():
                target = self.vgg(hr01)
            fn = F.mse_loss if cfg.perceptual.type == "mse" else F.l1_loss
            loss = loss + cfg.perceptual.weight * fn(s * self.vgg(to_unit(sr, self.out_range)), s * target)
        if self.d is not None and gan != "none":
            fake = self.d(sr)
            if gan == "vanilla":
                adv = F.binary_cross_entropy_with_logits(fake, torch.ones_like(fake))
            else:
                real = self.d(hr).detach()
                adv = (F.binary_cross_entropy_with_logits(real - fake.mean(), torch.zeros_like(real))
                       + F.binary_cross_entropy_with_logits(fake - real.mean(), torch.ones_like(fake)))
            loss = loss + cfg.gan.weight * adv
        loss.backward()
        self.opt_g.step()
        if self.ema is not None:
            decay = cfg.ema_decay
            with torch.no_grad():
                for e, p in zip(self.ema, self.g.parameters(), strict=True):
                    e.mul_(decay).add_(p, alpha=1 - decay)
        return loss.item()


def counted_tflop(trainer: Trainer, lr: torch.Tensor, hr: torch.Tensor) -> float:
    """FLOPs of one of our steps on this batch (convolutions and matmuls, forward and backward), in TFLOP."""
    with FlopCounterMode(display=False) as counter:
        trainer.step(lr, hr)
    return counter.get_total_flops() / 1e12


def breakdown(trainer: Trainer, lr: torch.Tensor, hr: torch.Tensor, steps: int = 3, top: int = 14) -> list[dict]:
    """Where our step's time goes: self CPU time per operator over ``steps`` steps (convolutions apart by input
    shape), the ``top`` rows, as shares of the total."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        for _ in range(steps):
            trainer.step(lr, hr)
        trainer.sync()
    rows = prof.key_averages(group_by_input_shape=True)
    total = sum(r.self_cpu_time_total for r in rows) or 1
    merged: dict[str, float] = {}
    for r in rows:
        shapes = r.input_shapes[0] if r.input_shapes and "conv" in r.key and r.input_shapes[0] else None
        key = f"{r.key} {shapes}" if shapes else r.key
        merged[key] = merged.get(key, 0.0) + r.self_cpu_time_total
    ranked = sorted(merged.items(), key=lambda kv: -kv[1])[:top]
    return [{"op": k, "share": v / total, "ms_per_step": v / 1e3 / steps} for k, v in ranked]


def bench(stage: str, device: torch.device, steps: int, warmup: int, compile_mode: str,
          profile: str = "paper", with_breakdown: bool = False, extra: Sequence[str] = ()) -> dict:
    params = paper_params(stage, device.type, compile_mode, extra, profile=profile)
    cfg = params.stage(stage)
    trainer = Trainer(stage, params, device, Dist())
    reference = ReferenceStep(trainer)
    batch, hr_size = cfg.batch_size, cfg.hr_size
    gen = torch.Generator().manual_seed(0)
    batches = [(torch.randint(0, 256, (batch, 3, hr_size // 4, hr_size // 4), dtype=torch.uint8, generator=gen),
                torch.randint(0, 256, (batch, 3, hr_size, hr_size), dtype=torch.uint8, generator=gen))
               for _ in range(4)]
    if device.type == "cuda":
        batches = [(a.pin_memory(), b.pin_memory()) for a, b in batches]
    # the first step from identical weights: for the pixel-only recipes both steps compute the same loss
    first_ref = reference(*batches[0])
    first_ours = float(trainer.step(*batches[0])["total_g"])

    def timed(fn, k: int) -> float:
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn(*batches[k % len(batches)])
        if device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - start

    for k in range(warmup):
        timed(trainer.step, k)
        timed(reference, k)
    ours, ref = [], []
    for k in range(steps):
        ours.append(timed(trainer.step, k))
        ref.append(timed(reference, k))
    trainer.sync()
    n = 2 if batch % 2 == 0 else 1  # count FLOPs on a slice of the batch (they are linear in it)
    tflop = counted_tflop(trainer, batches[0][0][:n], batches[0][1][:n]) * batch / n
    ours_s, ref_s = statistics.median(ours), statistics.median(ref)
    # each of our steps is paired with the reference step run right after it: the median of the pairs' ratios
    # cancels the machine's slow drifts (a shared 2-core CPU varies by +-20 % from step to step)
    ratio = statistics.median(r / o for o, r in zip(ours, ref, strict=True))
    parts = breakdown(trainer, *batches[0]) if with_breakdown else []
    return {"breakdown": parts,"ours_s": ours_s, "reference_s": ref_s, "ratio": ratio, "tflops": tflop / ours_s,
            "reference_tflops": tflop / ref_s, "counted_tflop": tflop, "design_tflop": DESIGN_TFLOP[stage],
            "batch": batch, "hr_size": hr_size, "steps": steps, "warmup": warmup,
            "ours_levers": trainer.compute.describe(), "ours_precision": trainer.compute.precision,
            "first_loss_ours": first_ours, "first_loss_reference": first_ref,
            "ours_all_s": ours, "reference_all_s": ref}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--recipes", nargs="+", default=list(RECIPES), choices=RECIPES)
    p.add_argument("--steps", type=int, default=None, help="timed steps per recipe (default: 5 CPU, 50 CUDA)")
    p.add_argument("--warmup", type=int, default=None, help="untimed steps first (default: 1 CPU, 10 CUDA)")
    p.add_argument("--compile", default="none", choices=COMPILE_MODES,
                   help="train.compile for ours (default none)")
    p.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    p.add_argument("--profile", default="paper", choices=("paper", "embedded"),
                   help="configs/paper.yaml (default) or the embedded default params.yaml")
    p.add_argument("--breakdown", action="store_true", help="where our step's time goes (torch.profiler)")
    p.add_argument("--set", nargs="+", default=[], metavar="KEY=VALUE",
                   help="more overrides, e.g. 'srresnet.generator_options={num_block: 8, num_feat: 64}'")
    args = p.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from peak import matmul_peak
    device = torch.device(args.device)
    cuda = device.type == "cuda"
    steps = args.steps or (50 if cuda else 5)
    warmup = args.warmup if args.warmup is not None else (10 if cuda else 1)
    name = torch.cuda.get_device_name(device) if cuda else (f"cpu ({torch.get_num_threads()} threads, "
                                                            f"{platform.processor() or platform.machine()})")
    source = "params.yaml (embedded)" if args.profile == "embedded" else "configs/paper.yaml"
    peaks = {k: matmul_peak(dt, device=device.type) for k, dt in (("fp32", torch.float32), ("bf16", torch.bfloat16))}
    print(f"{name}, torch {torch.__version__}; median of {steps} steps after {warmup} warm-up, {source}; torch.mm "
          f"4096^2 peak: fp32 {peaks['fp32']:.3f}, bf16 {peaks['bf16']:.3f} TFLOP/s")
    results = {}
    for stage in args.recipes:
        results[stage] = r = bench(stage, device, steps, warmup, args.compile, args.profile, args.breakdown,
                                   [s for s in args.set if s.startswith(stage + ".") or s.startswith("train.")])
        r["share_of_peak"] = r["tflops"] / peaks["bf16" if r["ours_precision"] == "bf16" else "fp32"]
        print(f"  {stage}: ours {r['ours_s']:.3f} s ({r['ours_levers']}), reference {r['reference_s']:.3f} s "
              "(fp32, contiguous)", flush=True)
    print(f"\n{'recipe':<9} {'batch':>5} {'HR':>4} {'ours s':>8} {'ref s':>8} {'ratio':>6} {'TFLOP/s':>8} "
          f"{'counted TFLOP':>13} {'DESIGN':>7}  first loss ours / reference")
    for stage, r in results.items():
        print(f"{stage:<9} {r['batch']:5d} {r['hr_size']:4d} {r['ours_s']:8.3f} {r['reference_s']:8.3f} "
              f"{r['ratio']:6.2f} {r['tflops']:8.3f} {r['counted_tflop']:13.3f} {r['design_tflop']:7.2f}  "
              f"{r['first_loss_ours']:.6g} / {r['first_loss_reference']:.6g}")
    print("\nratio = reference seconds / ours, median over interleaved step pairs (higher is better); TFLOP/s = "
          "counted FLOPs / our median step time")
    for stage, r in results.items():
        print(f"{stage}: {r['tflops']:.3f} TFLOP/s = {r['share_of_peak']:.2f}x the {r['ours_precision']} torch.mm peak "
              f"({1 / r['ours_s']:.1f} it/s)")
        for part in r["breakdown"]:
            print(f"    {part['share']:6.1%} {part['ms_per_step']:8.2f} ms/step  {part['op']}")
    if args.json:
        meta = {"device": name, "torch": torch.__version__, "compile": args.compile, "profile": args.profile,
                "set": args.set,
                "peaks_tflops": peaks,
                "command": "python benchmarks/train_step.py " + " ".join(sys.argv[1:])}
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps({"meta": meta, **results}, indent=2) + "\n")


if __name__ == "__main__":
    main()
