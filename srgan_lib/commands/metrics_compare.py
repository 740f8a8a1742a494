"""`srgan metrics compare`: PSNR and SSIM (Y and RGB) of an SR image against its HR image."""

from __future__ import annotations

import argparse
import sys

from srgan_lib.commands import _entry
from srgan_lib.commands._entry import CLIError, emit_json
from srgan_lib.io.images import read_image

DESCRIPTION = ("PSNR and SSIM (Y and RGB) of an SR image against its HR image")


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The command's arguments (on the dispatcher's sub-parser, or alone under ``python -m``)."""
    p.add_argument("sr")
    p.add_argument("hr")
    p.add_argument("--shave", type=int, default=4, help="border to remove (default 4, the x4 convention)")
    p.add_argument("--json", metavar="OUT", help="write the values as JSON to OUT ('-' for stdout)")


def run(args: argparse.Namespace) -> int:
    from srgan_lib.metrics.psnr_ssim import psnr, ssim

    sr, hr = read_image(args.sr), read_image(args.hr)
    if sr.shape != hr.shape:
        raise CLIError(f"{args.sr} is {sr.shape[1]}x{sr.shape[0]} but {args.hr} is {hr.shape[1]}x{hr.shape[0]}")
    out = {
        "psnr_y": psnr(sr, hr, space="y", shave=args.shave),
        "ssim_y": ssim(sr, hr, space="y", shave=args.shave),
        "psnr_rgb": psnr(sr, hr, space="rgb", shave=args.shave),
        "ssim_rgb": ssim(sr, hr, space="rgb", shave=args.shave),
    }
    if args.json:
        emit_json(out, args.json)
    else:
        print("  ".join(f"{k} {v:.4f}" for k, v in out.items()) + f"  (shave {args.shave})")
    return 0


if __name__ == "__main__":
    raise SystemExit(_entry.main(sys.modules[__name__], "srgan metrics compare"))
