"""`srgan models summary`: architecture summary and parameter count."""

from __future__ import annotations

import argparse
import sys

from srgan_lib.commands import _entry
from srgan_lib.commands._entry import CLIError, emit_json

DESCRIPTION = ("Summarise srresnet, srgan_discriminator, rrdbnet or esrgan_discriminator in the paper configuration,"
               " or with options such as num_block=4.")


def option_value(text: str) -> tuple[str, int | float | str]:
    """``KEY=VALUE`` with the value as int, float or str (the first that parses)."""
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE (for example num_block=4), got {text!r}")
    key, raw = text.split("=", 1)
    for cast in (int, float):
        try:
            return key, cast(raw)
        except ValueError:
            continue
    return key, raw


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The command's arguments (on the dispatcher's sub-parser, or alone under ``python -m``)."""
    p.add_argument("name", help="srresnet | srgan_discriminator | rrdbnet | esrgan_discriminator")
    p.add_argument("--option", nargs="+", action="extend", type=option_value, metavar="KEY=VALUE",
                   help="constructor options, e.g. num_block=4 num_feat=32")
    p.add_argument("--json", metavar="OUT", help="write the summary as JSON to OUT ('-' for stdout)")


def run(args: argparse.Namespace) -> int:
    from srgan_lib.models import SPECS, summarize

    if args.name not in SPECS:
        raise CLIError(f"unknown model {args.name!r}; available: {', '.join(SPECS)}")
    try:
        info = summarize(args.name, **dict(args.option or []))
    except TypeError as exc:
        raise CLIError(f"bad option for {args.name}: {exc}") from None
    if args.json:
        emit_json(info, args.json)
        return 0
    print(f"{info['name']} ({info['class']}), options {info['options'] or 'paper configuration'}")
    for child in info["children"]:
        print(f"  {child['name']:<14} {child['type']:<20} {child['parameters']:>12,d}")
    paper = f"  (paper: {info['paper_parameters']:,d})" if info["paper_parameters"] else ""
    print(f"parameters: {info['parameters']:,d}{paper}   input {info['input_shape']} -> output {info['output_shape']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(_entry.main(sys.modules[__name__], "srgan models summary"))
