"""``--params`` for the stage commands that otherwise take their settings as flags (evaluate, register, report): the
file's sections fill every flag left at its default, so ``dvc.yaml`` passes the file, not a flag per key. Kept out
of :mod:`._entry` so that only these commands' stages depend on the whole settings model."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from srgan_lib.config.params import Params


def add_params(parser: argparse.ArgumentParser, section: str) -> None:
    """--params: a stage command reads its settings from a parameter file (what dvc.yaml passes), as train does."""
    parser.add_argument("--params", metavar="FILE",
                        help=f"take the settings of params.yaml's `{section}` (and `tracking`) from this file "
                        "(dvc.yaml passes params.yaml); a flag given with another value than its default wins")


def fill_from_params(args: argparse.Namespace, add_arguments: Callable[[argparse.ArgumentParser], None],
                     values: Callable[[Params], dict[str, object]]) -> Params | None:
    """With ``--params``: every flag still at its default takes the file's value (``values``: flag dest -> value).
    Returns the loaded params (None without ``--params``)."""
    if not getattr(args, "params", None):
        return None
    from srgan_lib.config.params import load_params  # torch and the networks: only when a file is given

    params = load_params(args.params, folders=False)
    parser = argparse.ArgumentParser(add_help=False)
    add_arguments(parser)
    for dest, value in values(params).items():
        if getattr(args, dest) == parser.get_default(dest):
            setattr(args, dest, value)
    return params
