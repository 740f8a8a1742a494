"""`srgan params check`: validate params.yaml (unknown keys, types, values, folders)."""

from __future__ import annotations

import argparse
import sys

from srgan_lib import DEFAULT_PARAMS
from srgan_lib.commands import _entry

DESCRIPTION = ("validate params.yaml (unknown keys, types, values, folders)")


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The command's arguments (on the dispatcher's sub-parser, or alone under ``python -m``)."""
    p.add_argument("params", nargs="?", default=str(DEFAULT_PARAMS))


def run(args: argparse.Namespace) -> int:
    from srgan_lib.config.params import load_params

    params = load_params(args.params)
    sections = ", ".join(k for k, v in params.as_dict().items() if isinstance(v, dict))
    print(f"params: {args.params} is valid (sections: {sections})")
    return 0


if __name__ == "__main__":
    raise SystemExit(_entry.main(sys.modules[__name__], "srgan params check"))
