"""`srgan data degrade`: generate LR images (modcrop + bicubic / scale)."""

from __future__ import annotations

import argparse
import sys
import time

from srgan_lib.commands import _entry
from srgan_lib.config.fields import default
from srgan_lib.config.sections import DEFAULT_SCALE, Degrade
from srgan_lib.data.resize import KERNELS

DESCRIPTION = ("Modcrop every HR image to a multiple of the scale and downsample it; MATLAB imresize by default "
               "(bit-exact with the literature's LR_bicubic files), Pillow bicubic with --kernel pil. Incremental: "
               "unchanged images are not recomputed.")


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The command's arguments (on the dispatcher's sub-parser, or alone under ``python -m``)."""
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--hr", metavar="DIR", help="folder of HR images (recursive)")
    src.add_argument("--list", metavar="FILE", help="a data list written by `srgan data lists`")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder for the LR PNGs")
    p.add_argument("--scale", type=int, default=DEFAULT_SCALE,
                   help="downsampling factor (default %(default)s)")
    p.add_argument("--kernel", choices=KERNELS, default=default(Degrade, "kernel"),
                   help="bicubic flavour (default %(default)s)")


def run(args: argparse.Namespace) -> int:
    from srgan_lib.data.degrade import degrade, sources_from_folder, sources_from_list

    sources = sources_from_list(args.list) if args.list else sources_from_folder(args.hr)
    start = time.perf_counter()
    s = degrade(sources, args.out, scale=args.scale, kernel=args.kernel)
    print(
        f"degrade: x{args.scale} {args.kernel} bicubic -> {s.out_dir}/  written {s.written}, "
        f"up to date {s.up_to_date}, removed {s.removed}"
        f"{f', {s.paired} paired (their folder own LR/X{args.scale})' if s.paired else ''}"
        f"  ({time.perf_counter() - start:.1f} s)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(_entry.main(sys.modules[__name__], "srgan data degrade"))
