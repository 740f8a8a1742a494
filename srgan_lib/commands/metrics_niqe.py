"""`srgan metrics niqe`: NIQE of each image (MATLAB-calibrated; lower is better)."""

from __future__ import annotations

import argparse
import sys

from srgan_lib.commands import _entry
from srgan_lib.commands._entry import emit_json
from srgan_lib.io.images import ImageReadError, read_image

DESCRIPTION = ("NIQE of each image (MATLAB-calibrated; lower is better)")


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The command's arguments (on the dispatcher's sub-parser, or alone under ``python -m``)."""
    p.add_argument("images", nargs="+", metavar="IMAGE")
    p.add_argument("--shave", type=int, default=0, help="border to remove first (PIRM uses the scale; default 0)")
    p.add_argument("--json", metavar="OUT", help="write {image: value} as JSON to OUT ('-' for stdout)")


def run(args: argparse.Namespace) -> int:
    from srgan_lib.metrics.niqe import niqe

    values = {}
    failed = 0
    for path in args.images:
        try:
            values[path] = niqe(read_image(path), shave=args.shave)
        except (ImageReadError, ValueError) as exc:
            print(f"error: {path}: {exc}", file=sys.stderr)
            failed += 1
            continue
        if not args.json:
            print(f"{values[path]:.6f}  {path}")
    if args.json:
        emit_json(values, args.json)
    if len(args.images) > 1:
        print(f"niqe: {len(values)} image(s) measured, {failed} failed", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(_entry.main(sys.modules[__name__], "srgan metrics niqe"))
