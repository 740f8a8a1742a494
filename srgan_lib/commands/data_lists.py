"""`srgan data lists`: validate image folders and write JSON lists per split plus rejects.json."""

from __future__ import annotations

import argparse
import sys
import time

from srgan_lib.commands import _entry
from srgan_lib.commands._entry import CLIError, named_path
from srgan_lib.config.fields import default
from srgan_lib.config.sections import LEAKAGE_CHECKS, Lists

DESCRIPTION = ("Scan training folders and test sets; keep images that decode, convert to RGB and are large enough; "
               "reject duplicates and training images that show a test image (identical, or with --leakage near also"
               " resized, re-encoded, flipped, rotated, grey or cropped). Writes OUT/train.json, OUT/<TEST>.json and"
               " OUT/rejects.json (every rejected file with the reason).")


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The command's arguments (on the dispatcher's sub-parser, or alone under ``python -m``)."""
    p.add_argument("--train", nargs="+", action="extend", metavar="DIR", help="training image folder(s)")
    p.add_argument("--test", nargs="+", action="extend", type=named_path, metavar="NAME=DIR",
                   help="test set folder(s) (benchmark layout with HR/, or a plain folder)")
    p.add_argument("--out", required=True, help="output folder for the lists")
    p.add_argument("--min-size", "--min_size", dest="min_size", type=int,
                   default=default(Lists, "min_size"),
                   help="minimum short side of a training image (default %(default)s = the ESRGAN HR crop)")
    p.add_argument("--test-min-size", "--test_min_size", dest="test_min_size", type=int,
                   default=default(Lists, "test_min_size"),
                   help="minimum short side of a test image (default %(default)s)")
    p.add_argument("--leakage", choices=LEAKAGE_CHECKS, default=default(Lists, "leakage"),
                   help="near (default): reject training images showing a test image in any form (about 0.1 s per "
                   "training image on 2 cores); exact: only identical pixels")


def run(args: argparse.Namespace) -> int:
    from srgan_lib.data.lists import build_lists

    test = dict(args.test or [])
    if len(test) != len(args.test or []):
        raise CLIError("test set names given to --test must be unique")
    start = time.perf_counter()
    results = build_lists(args.train or [], test, args.out, min_size=args.min_size, test_min_size=args.test_min_size,
                          leakage=args.leakage)
    print(f"lists: wrote {args.out}/ ({time.perf_counter() - start:.1f} s; leakage check: {args.leakage})")
    for name, res in results.items():
        reasons: dict[str, int] = {}
        for r in res.rejected:
            reasons[r.reason] = reasons.get(r.reason, 0) + 1
        why = ", ".join(f"{n} {k}" for k, n in sorted(reasons.items())) or "none"
        print(f"  {name:<10} {len(res.images):5d} kept   rejected: {why}")
    return 0


if __name__ == "__main__":
    raise SystemExit(_entry.main(sys.modules[__name__], "srgan data lists"))
