"""`srgan params show`: print the full, validated parameters (an overlay's extends resolved)."""

from __future__ import annotations

import argparse
import sys

from srgan_lib import DEFAULT_PARAMS
from srgan_lib.commands import _entry

DESCRIPTION = ("Print the validated parameters of a file as one complete YAML mapping, an overlay's 'extends:' chain"
               " resolved (configs/paper.yaml lays the papers' settings over params.yaml). `srgan params show "
               "configs/paper.yaml -o params.yaml` makes them the pipeline's (dvc repro reads params.yaml only; the "
               "old file is read before it is replaced). The data folders need not exist yet (`srgan params check` "
               "and every stage require them).")


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The command's arguments (on the dispatcher's sub-parser, or alone under ``python -m``)."""
    p.add_argument("params", nargs="?", default=str(DEFAULT_PARAMS))
    p.add_argument("-o", "--out", metavar="FILE", help="write there (atomically) instead of printing")


def run(args: argparse.Namespace) -> int:
    import yaml

    from srgan_lib.config.params import load_params
    from srgan_lib.io.images import atomic_path

    params = load_params(args.params, folders=False).as_dict()  # data may be downloaded later: `params check` looks
    text = (f"# {args.params}, resolved and validated by `srgan params show`\n"
            + yaml.safe_dump(params, sort_keys=False, default_flow_style=None, width=120))
    if not args.out:
        print(text, end="")
        return 0
    with atomic_path(args.out) as tmp:
        tmp.write_text(text, encoding="utf-8")
    print(f"params: {args.params} resolved -> {args.out} ({len(params)} sections; validate: srgan params check "
          f"{args.out})")
    return 0


if __name__ == "__main__":
    raise SystemExit(_entry.main(sys.modules[__name__], "srgan params show"))
