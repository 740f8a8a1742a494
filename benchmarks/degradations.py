"""Real-world degradation cost, in one process, interleaved: batches per second of
``srgan_lib.data.degradations.degrade_batch`` (ours: batched) beside a per-sample reference of the same chain, at
Real-ESRGAN x4plus's settings (batch 12, GT 256) and at the embedded profile's (params.yaml's recipes: batch 16,
HR 64), and the embedded recipes' ``Trainer.step`` (SRResNet, RRDBNet) on the same batch shape; it prints ours vs
the reference (target >= 2x) and the degradation's share of a training step (target <= 15 %).

The reference does per sample what the published code does per sample (BasicSR's ``random_mixed_kernels`` /
``circular_lowpass_kernel``: each kernel built in NumPy/SciPy on its own grid) and then runs the chain one sample at
a time (BasicSR's imports fail on torchvision 0.29: ``functional_tensor`` is gone). It takes our draws, so its LR
must equal ours: the script prints the largest difference in 8-bit levels.

    python benchmarks/degradations.py --json benchmarks/results/degradations-cpu.json    # ~2 min on 2 cores
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import scipy.special
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from srgan_lib.config.params import load_params, override
from srgan_lib.data import degradations as dg
from srgan_lib.data.degradations import DegradationSettings, degrade_batch
from srgan_lib.hardware import cpu_name
from srgan_lib.training.distributed import Dist
from srgan_lib.training.trainer import Trainer

REPO = Path(__file__).resolve().parents[1]


def _sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def _median(fn, repeats: int) -> float:  # type: ignore[no-untyped-def]
    times = []
    for _ in range(repeats):
        _sync()
        start = time.perf_counter()
        fn()
        _sync()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _numpy_kernel(k: dg.KernelDraws, i: int) -> np.ndarray:
    """Sample i's kernel as BasicSR builds one (NumPy grid, inverse covariance, SciPy's J1), size x size."""
    size, family = int(k.size[i]), int(k.family[i])
    ax = np.arange(-(size // 2), size // 2 + 1, dtype=np.float64)
    xx, yy = np.meshgrid(ax, ax)
    if family == 4:
        return ((xx == 0) & (yy == 0)).astype(np.float64)
    if family == 3:
        w = float(k.cutoff[i])
        r = np.hypot(xx, yy)
        with np.errstate(divide="ignore", invalid="ignore"):
            kern = np.where(r == 0, w ** 2 / (4 * np.pi), w * scipy.special.j1(w * r) / (2 * np.pi * r))
        return kern / kern.sum()
    sx, sy, theta, beta = (float(t[i]) for t in (k.sigma_x, k.sigma_y, k.theta, k.beta))
    rot = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    inv = np.linalg.inv(rot @ np.diag([sx ** 2, sy ** 2]) @ rot.T)
    grid = np.stack([xx, yy], axis=-1)
    q = np.sum(grid @ inv * grid, axis=-1)
    kern = np.exp(-0.5 * q) if family == 0 else np.exp(-0.5 * q ** beta) if family == 1 else 1 / (q ** beta + 1)
    return kern / kern.sum()


def _filter_one(x: torch.Tensor, kern: np.ndarray) -> torch.Tensor:
    k = torch.from_numpy(np.asarray(kern, np.float64)).float().to(x.device)
    pad = k.shape[-1] // 2
    mode = "reflect" if min(x.shape[-2:]) > pad else "replicate"
    return F.conv2d(F.pad(x, (pad,) * 4, mode=mode), k.expand(3, 1, *k.shape), groups=3)


def reference(hr: torch.Tensor, s: DegradationSettings, seed: int, iteration: int) -> torch.Tensor:
    """The same chain, one sample at a time, kernels built per sample in NumPy (the published dataset's way)."""
    d, gens = dg.draw(s, seed, iteration, list(range(hr.shape[0])))
    h, w = hr.shape[-2:]
    lr_hw = (h // s.scale, w // s.scale)
    out = []
    for i in range(hr.shape[0]):
        x = _filter_one(hr[i:i + 1], _numpy_kernel(d.blur1, i))
        x = F.interpolate(x, size=(int(h * d.resize1[0]), int(w * d.resize1[0])), mode=d.resize1[1])
        n1 = dg.NoiseDraws(d.noise1.gaussian[i:i + 1], d.noise1.value[i:i + 1], d.noise1.gray[i:i + 1])
        x = dg.jpeg(x + dg.noise_fields(x, n1, [gens[i]]), d.jpeg1[i:i + 1])
        if int(d.blur2.family[i]) != 4:
            x = _filter_one(x, _numpy_kernel(d.blur2, i))
        x = F.interpolate(x, size=(int(lr_hw[0] * d.resize2[0]), int(lr_hw[1] * d.resize2[0])), mode=d.resize2[1])
        n2 = dg.NoiseDraws(d.noise2.gaussian[i:i + 1], d.noise2.value[i:i + 1], d.noise2.gray[i:i + 1])
        x = x + dg.noise_fields(x, n2, [gens[i]])

        def resize_sinc(y: torch.Tensor, i: int = i) -> torch.Tensor:
            y = F.interpolate(y, size=lr_hw, mode=d.final_mode)
            return y if int(d.final_sinc.family[i]) == 4 else _filter_one(y, _numpy_kernel(d.final_sinc, i))

        x = dg.jpeg(resize_sinc(x), d.jpeg2[i:i + 1]) if d.sinc_first else resize_sinc(dg.jpeg(x, d.jpeg2[i:i + 1]))
        out.append((x.clamp(0, 1) * 255).round() / 255)
    return torch.cat(out)


def _pair(hr: torch.Tensor, settings: DegradationSettings, repeats: int, counter: list[int]) -> dict[str, float]:
    """Ours and the reference on the same batches (same seed and iterations), interleaved: seconds and agreement."""
    ours_t, ref_t, diff = [], [], 0.0
    for _ in range(repeats):
        counter[0] += 1
        it = counter[0]
        _sync()
        start = time.perf_counter()
        a, _ = degrade_batch(hr, settings, seed=0, iteration=it)
        _sync()
        ours_t.append(time.perf_counter() - start)
        start = time.perf_counter()
        b = reference(hr, settings, seed=0, iteration=it)
        _sync()
        ref_t.append(time.perf_counter() - start)
        diff = max(diff, float((a - b).abs().max()) * 255)
    ours, ref = statistics.median(ours_t), statistics.median(ref_t)
    return {"ours_s": ours, "reference_s": ref, "ours_vs_reference": ref / ours, "batches_per_s": 1 / ours,
            "max_diff_levels": diff}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeats", type=int, default=5, help="timed calls of each, interleaved (median)")
    p.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    p.add_argument("--device", default="cpu", help="cpu or cuda (benchmarks/gpu.sh)")
    args = p.parse_args()
    device = torch.device(args.device)
    torch.manual_seed(0)
    settings = DegradationSettings()
    params = override(load_params(REPO / "params.yaml", folders=False), ["tracking.uri=none"])
    rows: dict[str, dict] = {}
    counter = [0]
    x4plus = torch.rand(12, 3, 256, 256, device=device)
    _pair(x4plus, settings, 1, counter)  # warm-up (imports, first JPEG)
    rows["x4plus batch 12 GT 256"] = _pair(x4plus, settings, args.repeats, counter)
    for recipe in ("srresnet", "rrdbnet"):
        cfg = params.stage(recipe)
        b, hr_size = cfg.batch_size, cfg.hr_size
        trainer = Trainer(recipe, params, device, Dist())
        hr = torch.rand(b, 3, hr_size, hr_size, device=device)
        lr_u8 = torch.randint(0, 256, (b, 3, hr_size // 4, hr_size // 4), dtype=torch.uint8)
        hr_u8 = (hr * 255).round().to(torch.uint8)
        trainer.step(lr_u8, hr_u8)
        steps, pairs = [], []
        for _ in range(args.repeats):  # interleaved: all three see the same machine state
            steps.append(_median(lambda: trainer.step(lr_u8, hr_u8), 1))  # noqa: B023
            pairs.append(_pair(hr, settings, 1, counter))
        row = {k: statistics.median(r[k] for r in pairs) for k in pairs[0]}
        row["max_diff_levels"] = max(r["max_diff_levels"] for r in pairs)
        step = statistics.median(steps)
        row.update(train_step_s=step, degradation_share_of_step=row["ours_s"] / step,
                   precision=trainer.compute.precision)
        rows[f"embedded {recipe} batch {b} HR {hr_size}"] = row
    for name, row in rows.items():
        print(f"{name}: ours {row['ours_s'] * 1e3:.1f} ms ({row['batches_per_s']:.2f} batches/s), per-sample "
              f"reference {row['reference_s'] * 1e3:.1f} ms: ours {row['ours_vs_reference']:.2f}x the reference "
              f"(target >= 2), LR max difference {row['max_diff_levels']:.0f} levels")
        if "train_step_s" in row:
            print(f"    training step {row['train_step_s'] * 1e3:.1f} ms ({row['precision']}): degradation = "
                  f"{row['degradation_share_of_step']:.2f} x the step (target <= 0.15)")
    if args.json:
        out = {"cpu": cpu_name(), "device": torch.cuda.get_device_name(0) if device.type == "cuda" else "cpu",
               "machine": platform.machine(), "threads": torch.get_num_threads(),
               "torch": torch.__version__, "repeats": args.repeats, "rows": rows,
               "command": "python benchmarks/degradations.py " + " ".join(sys.argv[1:])}
        Path(args.json).write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
