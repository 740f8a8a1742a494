"""`srgan data embedded`: write the scikit-image photographs (the embedded default) as PNG."""

from __future__ import annotations

import argparse
import sys

from srgan_lib.commands import _entry

DESCRIPTION = ("write the scikit-image photographs (the embedded default) as PNG")


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The command's arguments (on the dispatcher's sub-parser, or alone under ``python -m``)."""
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--names", nargs="+", help="subset of images (default: all)")


def run(args: argparse.Namespace) -> int:
    from srgan_lib.data.embedded import write_embedded

    paths = write_embedded(args.out, args.names)
    print(f"embedded: wrote {len(paths)} scikit-image photographs to {args.out}/")
    return 0


if __name__ == "__main__":
    raise SystemExit(_entry.main(sys.modules[__name__], "srgan data embedded"))
