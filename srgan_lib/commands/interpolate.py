"""`srgan interpolate`: ESRGAN network interpolation between a PSNR and a GAN generator."""

from __future__ import annotations

import argparse
import sys

from srgan_lib.commands import _entry
from srgan_lib.commands._entry import CLIError

DESCRIPTION = ("Write one generator per alpha: theta = (1 - alpha) * theta_PSNR + alpha * theta_GAN (EMA weights "
               "when the checkpoints have them). Both must be the same architecture.")


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The command's arguments (on the dispatcher's sub-parser, or alone under ``python -m``)."""
    p.add_argument("--psnr", required=True, metavar="CKPT", help="the PSNR-oriented generator (alpha 0)")
    p.add_argument("--gan", required=True, metavar="CKPT", help="the GAN generator (alpha 1)")
    p.add_argument("--alpha", required=True, type=float, nargs="+", action="extend", metavar="A",
                   help="one or more alphas in [0, 1], e.g. --alpha 0 0.2 0.4 0.6 0.8 1")
    p.add_argument("-o", "--out", required=True, metavar="DIR", help="output folder for interp_<alpha>.pth")
    p.add_argument("--format", choices=("pth", "safetensors"), default="pth",
                   help="pth ({'params': ...}, BasicSR layout) or safetensors (a flat state dict + meta)")


def run(args: argparse.Namespace) -> int:
    from srgan_lib.models.interpolate import interpolate_files

    for a in args.alpha:
        if not 0 <= a <= 1:
            raise CLIError(f"--alpha must be in [0, 1], got {a}")
    paths = interpolate_files(args.psnr, args.gan, args.alpha, args.out, fmt=args.format)
    print(f"interpolate: {len(paths)} network(s) between {args.psnr} (alpha 0) and {args.gan} (alpha 1)")
    for a, path in zip(args.alpha, paths, strict=True):
        print(f"  alpha {a:.2f} -> {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(_entry.main(sys.modules[__name__], "srgan interpolate"))
