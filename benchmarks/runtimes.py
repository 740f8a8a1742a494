"""The serious alternatives to our eager inference, measured side by side on one padded tile (same weights, input):

- **eager fp32** NCHW: a plain ``model(x)``, the reference of every ratio and PSNR;
- **ours**: what ``srgan upscale`` runs per tile (``Upscaler._forward``: bf16 autocast where the device does bf16
  natively, channels_last);
- **torch.compile** (inductor) of the same module, fp32 and under the same autocast (compile time reported apart);
- **ONNX Runtime** (CPU execution provider; CUDA provider on a GPU) on the graph ``srgan export`` writes (fp32);
- **OpenVINO** on that ONNX file, when the ``openvino`` package is installed (it is not a dependency).

Each row: median seconds of ``--repeats`` calls after one warm-up, TFLOP/s (counted convolutions), the ratio to eager
fp32 and the output's PSNR against it. A runtime that is not installed is reported as skipped, never estimated.

    python benchmarks/runtimes.py                                  # 23-block RRDBNet, 128 px tile + 16 pad, CPU
    python benchmarks/runtimes.py --blocks 4 --feat 32 --grow 16   # the embedded default's RRDBNet
    python benchmarks/runtimes.py --device cuda --tile 512 --json benchmarks/results/runtimes-h100.json
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from upscale import conv_tflop_per_input_mp, psnr_u8

from srgan_lib.inference.upscaler import Upscaler
from srgan_lib.models import as_generator, build_model


def timed(fn: Callable[[], torch.Tensor], device: torch.device, repeats: int) -> tuple[float, torch.Tensor]:
    """Median seconds of ``repeats`` calls of ``fn`` after one warm-up, and the last output."""
    out = fn()
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        out = fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times), out


def to_u8(y: torch.Tensor | np.ndarray) -> np.ndarray:
    y = torch.as_tensor(y).float().clamp(0, 1)
    return y[0].mul(255).round().byte().permute(1, 2, 0).cpu().numpy()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--blocks", type=int, default=23)
    p.add_argument("--feat", type=int, default=64)
    p.add_argument("--grow", type=int, default=32)
    p.add_argument("--tile", type=int, default=128, help="tile side in input pixels (plus --pad on each side)")
    p.add_argument("--pad", type=int, default=16)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--no-compile", action="store_true", help="leave out torch.compile (minutes on a small CPU)")
    p.add_argument("--json", metavar="FILE")
    args = p.parse_args()
    device = torch.device(args.device)
    torch.manual_seed(0)
    module = build_model("rrdbnet", num_block=args.blocks, num_feat=args.feat, num_grow_ch=args.grow).eval().to(device)
    gen = as_generator(module)
    side = args.tile + 2 * args.pad
    x = torch.rand(1, 3, side, side, generator=torch.Generator().manual_seed(1)).to(device)
    flop = conv_tflop_per_input_mp(module) * side * side / 1e6  # TFLOP of one forward
    rows: list[dict] = []

    def add(config: str, seconds: float | None, out=None, note: str = "") -> None:
        rows.append({"config": config, "seconds": seconds, "note": note,
                     "tflops": flop / seconds if seconds else None, "out": None if out is None else to_u8(out)})
        print(f"  {config:<62} " + (f"{seconds:8.3f} s" if seconds else "   skipped") + (f"  {note}" if note else ""),
              flush=True)

    print(f"RRDBNet {args.blocks} x {args.feat} x {args.grow}, one {side}x{side} tile ({flop:.3f} TFLOP), {device}")
    with torch.no_grad():
        s, ref = timed(lambda: module(x), device, args.repeats)
        add("eager fp32 NCHW (reference)", s, ref)
        up = Upscaler(gen, device=device, tile=0)
        xl = x.contiguous(memory_format=up.compute.memory_format)
        s, out = timed(lambda: up._forward(xl), device, args.repeats)
        add(f"ours: Upscaler tile ({up.compute.describe()})", s, out)
        if not args.no_compile:
            for label, autocast in (("fp32", False), (up.precision, True)):
                if autocast and up.compute.amp_dtype is None:
                    continue
                compiled = torch.compile(module, dynamic=False)
                dtype = up.compute.amp_dtype if autocast else None

                def run(compiled=compiled, dtype=dtype) -> torch.Tensor:
                    if dtype is None:
                        return compiled(xl)
                    with torch.autocast(device.type, dtype=dtype):
                        return compiled(xl).float()

                start = time.perf_counter()
                run()
                compile_s = time.perf_counter() - start
                s, out = timed(run, device, args.repeats)
                add(f"torch.compile inductor {label} channels_last", s, out, f"(compile {compile_s:.0f} s)")
    with tempfile.TemporaryDirectory() as tmp:
        onnx_path = Path(tmp) / "rrdbnet.onnx"
        try:
            import onnxruntime as ort

            from srgan_lib.models.export import export_onnx

            # a contiguous CPU copy of the same weights (the Upscaler made the module channels_last, which the
            # exporter's dynamic shapes refuse: "Invalid ranges [2:1]")
            plain = build_model("rrdbnet", num_block=args.blocks, num_feat=args.feat, num_grow_ch=args.grow).eval()
            plain.load_state_dict({k: v.cpu().contiguous() for k, v in module.state_dict().items()})
            export_onnx(plain, onnx_path, verify=False)
            providers = ["CUDAExecutionProvider"] if device.type == "cuda" else ["CPUExecutionProvider"]
            session = ort.InferenceSession(str(onnx_path), providers=providers)
            feed = {"lr": x.cpu().numpy()}
            s, out = timed(lambda: torch.from_numpy(session.run(None, feed)[0]), torch.device("cpu"), args.repeats)
            add(f"ONNX Runtime {ort.__version__} fp32 ({providers[0]})", s, out)
        except ImportError as exc:
            add("ONNX Runtime", None, note=f"not installed ({exc.name}): pip install 'srgan[onnx]'")
        try:
            import openvino as ov

            if not onnx_path.is_file():
                raise ImportError(name="onnx export")
            compiled_ov = ov.Core().compile_model(str(onnx_path), "CPU")
            feed_ov = x.cpu().numpy()
            s, out = timed(lambda: torch.from_numpy(compiled_ov(feed_ov)[0]), torch.device("cpu"), args.repeats)
            add(f"OpenVINO {ov.__version__} CPU", s, out)
        except ImportError as exc:
            add("OpenVINO", None, note=f"not installed ({exc.name}); not a dependency of this project")
    ref_s, ref_u8 = rows[0]["seconds"], rows[0]["out"]
    print(f"\n{'config':<62} {'s':>8} {'ratio':>6} {'TFLOP/s':>8} {'PSNR dB':>8}")
    for r in rows:
        r["ratio"] = ref_s / r["seconds"] if r["seconds"] else None
        r["psnr_vs_fp32"] = None if r["out"] is None else psnr_u8(r.pop("out"), ref_u8)
        r.pop("out", None)
        if r["seconds"]:
            print(f"{r['config']:<62} {r['seconds']:8.3f} {r['ratio']:6.2f} {r['tflops']:8.3f} "
                  f"{r['psnr_vs_fp32']:8.2f} {r['note']}")
        else:
            print(f"{r['config']:<62} {'-':>8}  {r['note']}")
    print("ratio = eager fp32 seconds / this row's (higher is faster); PSNR of the output against eager fp32's")
    if args.json:
        meta = {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else
                f"cpu ({torch.get_num_threads()} threads, {platform.processor() or platform.machine()})",
                "torch": torch.__version__, "command": "python benchmarks/runtimes.py " + " ".join(sys.argv[1:])}
        finite = [{k: ("identical" if isinstance(v, float) and v == float("inf") else v) for k, v in r.items()}
                  for r in rows]
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps({"meta": meta, "rows": finite}, indent=2) + "\n")


if __name__ == "__main__":
    main()
