"""`srgan data realworld`: real-world versions of test sets (Set5-RW, Set14-RW) from params.yaml's degradation."""

from __future__ import annotations

import argparse
import sys
import time

from srgan_lib.commands import _entry

DESCRIPTION = ("Write a real-world version of each test set params.yaml's `realworld.sets` names: every HR image "
               "(modcropped) through the `degradation` chain once, its draw fixed by (realworld.seed, set, image "
               "name), as <realworld.out>/<SET><suffix>/LR/X<scale>/, with a test list in <realworld.out>/lists/ "
               "that evaluation reads (the LR is the set's own, not bicubic).")


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The command's arguments (on the dispatcher's sub-parser, or alone under ``python -m``)."""
    _entry.add_param_file(p, "realworld.sets=[Set5]")


def run(args: argparse.Namespace) -> int:
    from srgan_lib.config.params import load_params
    from srgan_lib.data.realworld import write_realworld_sets

    start = time.perf_counter()
    params = load_params(args.params, args.set or (), folders=False)
    rw = params.realworld
    s = write_realworld_sets(params.lists.out, list(rw.sets), rw.out, params.degradation.settings(params.scale),
                             seed=rw.seed, suffix=rw.suffix)
    sets = ", ".join(f"{name} ({n} images)" for name, n in s.sets.items()) or "none"
    print(f"realworld: {sets} -> {s.out}/  ({time.perf_counter() - start:.1f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(_entry.main(sys.modules[__name__], "srgan data realworld"))
