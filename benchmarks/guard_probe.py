"""The accuracy guard's probe with and without context, side by side on the same images: seconds per image and the
bf16-vs-fp32 PSNR it reads (``srgan upscale``'s per-image check, :meth:`Upscaler._precision_for`).

Each image's centred 64x64 LR window runs in bf16 and in fp32 on the Upscaler's backend, once with ``--context``
pixels of real image around it (the earlier probe: only the central 64x64 of the output compared) and once without
(the probe ``srgan upscale`` runs now), interleaved per image, the faster of two calls each. Only images larger than
the widest window in both sides count, so both variants see the same images::

    python benchmarks/guard_probe.py --published --json benchmarks/results/guard-probe-x4plus-cpu-intel-amx.json
    python benchmarks/guard_probe.py --tiny          # a random 1-block RRDBNet on noise (the test's smoke run)
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

from srgan_lib.inference.upscaler import GUARD_PROBE, Upscaler
from srgan_lib.models import as_generator, build_model, to_unit

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def images(tiny: bool, photo: Path) -> dict[str, np.ndarray]:
    """Noise, and unless ``tiny`` the Set5/Set14 LR images and a photograph's centre (``../shared/data``)."""
    rng = np.random.default_rng(0)
    out = {"noise": rng.integers(0, 256, (256 if tiny else 512,) * 2 + (3,), dtype=np.uint8)}
    if tiny:
        return out
    from PIL import Image

    for path in sorted((SHARED / "benchmarks").glob("Set*/LR_bicubic/X4/*.png")):
        out[f"{path.parts[-4]}/{path.stem}"] = np.asarray(Image.open(path).convert("RGB"))
    if photo.is_file():
        img = np.asarray(Image.open(photo).convert("RGB"))
        h, w, _ = img.shape
        out[photo.stem] = img[(h - 512) // 2:(h + 512) // 2, (w - 512) // 2:(w + 512) // 2]
    return out


def probe(up: Upscaler, image: np.ndarray, context: int) -> tuple[float, float]:
    """(seconds, PSNR of bf16 against fp32 on the window's central GUARD_PROBE^2 output) of one probe."""
    h, w, _ = image.shape
    cy, cx = (h - GUARD_PROBE) // 2, (w - GUARD_PROBE) // 2
    start = time.perf_counter()
    patch, (a, b, c, d) = up._patch(image, 255.0, cy, cy + GUARD_PROBE, cx, cx + GUARD_PROBE, GUARD_PROBE, context)
    low = to_unit(up._run(patch, autocast=True), up.value_range).clamp_(0, 1)[..., a:b, c:d]
    ref = up._forward(patch, autocast=False)[..., a:b, c:d]
    seconds = time.perf_counter() - start
    mse = float((low - ref).square().mean())
    return seconds, (10 * math.log10(1 / mse) if mse > 0 else math.inf)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--published", action="store_true", help="Real-ESRGAN x4plus's weights (the bench extra)")
    p.add_argument("--tiny", action="store_true", help="a random 1-block RRDBNet and the noise image only")
    p.add_argument("--context", type=int, default=16, help="the earlier probe's context in LR pixels (16)")
    p.add_argument("--photo", type=Path, default=SHARED / "train" / "wallpapers" / "Dragonfly_by_Bolly.png")
    p.add_argument("--json", help="write the rows here")
    args = p.parse_args()
    if args.published:
        from srgan_lib.models.ncnn import x4plus_generator

        model = x4plus_generator()
    else:
        torch.manual_seed(0)
        model = build_model("rrdbnet", **({"num_block": 1, "num_feat": 16, "num_grow_ch": 8} if args.tiny else {}))
    up = Upscaler(as_generator(model.eval()), device="cpu")
    if up.compute.amp_dtype is None:
        print("this CPU has no native bf16: the guard does not run here (precision auto is fp32)")
        return
    up._openvino_ready()
    side = GUARD_PROBE + 2 * args.context
    imgs = {k: v for k, v in images(args.tiny, args.photo).items() if min(v.shape[:2]) > side}
    variants = {f"context {args.context} ({side}x{side} window)": args.context, "no context (64x64 window)": 0}
    for context in variants.values():  # warm-up: each window shape compiled / its kernels picked once
        probe(up, imgs["noise"], context)
    rows = []
    for name, img in imgs.items():
        row: dict = {"image": name}
        for label, context in variants.items():
            runs = [probe(up, img, context) for _ in range(2)]
            row[label] = {"seconds": min(s for s, _ in runs), "psnr": runs[0][1]}
        rows.append(row)
    print(f"x4plus' RRDBNet-23 on {up.backend}" if args.published else f"RRDBNet on {up.backend}",
          f"{torch.get_num_threads()} threads; {len(rows)} images larger than {side} px")
    print(f"{'image':<20}" + "".join(f"{label:>34}" for label in variants))
    for row in rows:
        cells = (f"{row[k]['seconds']:>17.3f} s {row[k]['psnr']:>9.1f} dB" for k in variants)
        print(f"{row['image']:<20}" + "".join(cells))
    summary = {k: {"median_seconds": statistics.median(r[k]["seconds"] for r in rows),
                   "psnr_min": min(r[k]["psnr"] for r in rows), "psnr_max": max(r[k]["psnr"] for r in rows)}
               for k in variants}
    old, new = (summary[k]["median_seconds"] for k in variants)
    print(f"median: {old:.3f} s with context, {new:.3f} s without: {old / new:.2f}x cheaper; PSNR "
          + "; ".join(f"{k}: {v['psnr_min']:.1f}-{v['psnr_max']:.1f} dB" for k, v in summary.items()))
    if args.json:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from upscale import cpu_description

        meta = {"device": cpu_description(), "backend": up.backend, "threads": torch.get_num_threads(),
                "torch": torch.__version__,
                "command": "python benchmarks/guard_probe.py " + " ".join(sys.argv[1:])}
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps({"meta": meta, "summary": summary, "ratio": old / new, "rows": rows},
                                              indent=2) + "\n")


if __name__ == "__main__":
    main()
