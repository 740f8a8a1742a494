"""`srgan export`: export a generator to ONNX (dynamic batch/height/width)."""

from __future__ import annotations

import argparse
import sys
import time

from srgan_lib.commands import _entry
from srgan_lib.commands._entry import CLIError, add_model_source

DESCRIPTION = ("Export a checkpoint or registered MLflow model to ONNX. The graph takes 'lr' (N x 3 x H x W, RGB in "
               "[0, 1]) and returns 'sr' in [0, 1]; it is checked against PyTorch with onnxruntime when installed.")


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The command's arguments (on the dispatcher's sub-parser, or alone under ``python -m``)."""
    add_model_source(p)
    p.add_argument("--format", choices=("onnx", "safetensors"), default="onnx",
                   help="onnx (a graph for onnxruntime/TensorRT) or safetensors (the weights as one flat state "
                   "dict with the checkpoint's meta: what spandrel/chaiNNer load; no code can hide in it)")
    p.add_argument("-o", "--out", required=True, metavar="FILE", help="output file, e.g. esrgan.onnx")
    p.add_argument("--opset", type=int, default=18, help="ONNX opset (default 18)")
    p.add_argument("--no-verify", action="store_true", help="skip the onnxruntime comparison")


def run(args: argparse.Namespace) -> int:
    from srgan_lib.models import load_generator
    from srgan_lib.models.export import export_onnx
    from srgan_lib.registry.resolve import resolve_model_path

    source = resolve_model_path(args.model, args.tracking_uri)
    if args.format == "safetensors":
        from srgan_lib.io.weights import load_weights, save_generator_safetensors

        start = time.perf_counter()
        checkpoint = load_weights(source, "generator checkpoint")
        model = load_generator(source, prefer_ema=not args.no_ema)  # refuses anything that is not a generator
        which = save_generator_safetensors(checkpoint if isinstance(checkpoint, dict) else {}, args.out,
                                           prefer_ema=not args.no_ema)
        print(f"export: {args.model} -> {args.out} (safetensors, {which} weights, {model.architecture} "
              f"{model.options or 'paper configuration'}; {time.perf_counter() - start:.1f} s)")
        return 0
    model = load_generator(source, prefer_ema=not args.no_ema)
    start = time.perf_counter()
    try:
        res = export_onnx(model, args.out, opset=args.opset, verify=not args.no_verify)
    except RuntimeError as exc:
        raise CLIError(str(exc)) from None
    check = (f"onnxruntime vs PyTorch on {res.checked_shape}: max |diff| {res.max_abs_diff:.2e}"
             if res.max_abs_diff is not None else "not checked (onnxruntime missing or --no-verify)")
    print(f"export: {args.model} -> {res.path} (ONNX opset {args.opset}, input 'lr' N x 3 x H x W in [0, 1], "
          f"output 'sr' x{model.scale}, {model.architecture} {model.options or 'paper configuration'}; "
          f"{time.perf_counter() - start:.1f} s); {check}")
    return 0


if __name__ == "__main__":
    raise SystemExit(_entry.main(sys.modules[__name__], "srgan export"))
