"""`srgan data store`: decode the training pairs once into the memory-mapped store training reads."""

from __future__ import annotations

import argparse
import sys

from srgan_lib.commands import _entry
from srgan_lib.config.sections import DEFAULT_SCALE

DESCRIPTION = ("Decode every HR image of a training list (modcropped) and its LR from the degrade stage into "
               "OUT/hr.u8 and OUT/lr.u8 (uint8, back to back) with OUT/index.json. Training cuts its random crops "
               "from these memory maps instead of decoding PNGs. Rebuilt whole, atomically (a killed build leaves "
               "the old store or none).")


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The command's arguments (on the dispatcher's sub-parser, or alone under ``python -m``)."""
    p.add_argument("--list", required=True, metavar="FILE", help="training list (`srgan data lists`)")
    p.add_argument("--lr-dir", required=True, metavar="DIR", help="the degrade stage's LR folder (.../X4)")
    p.add_argument("--out", required=True, metavar="DIR", help="store folder (params: train.store)")
    p.add_argument("--scale", type=int, default=DEFAULT_SCALE,
                   help="the LR scale (default %(default)s)")


def run(args: argparse.Namespace) -> int:
    from srgan_lib.data.store import build_store

    s = build_store(args.list, args.lr_dir, args.out, scale=args.scale)
    print(f"store: {s.images} training pairs -> {s.out}/  HR {s.hr_bytes / 2**20:.1f} MiB, LR "
          f"{s.lr_bytes / 2**20:.1f} MiB (uint8, memory-mapped by training)  ({s.seconds:.1f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(_entry.main(sys.modules[__name__], "srgan data store"))
