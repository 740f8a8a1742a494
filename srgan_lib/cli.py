"""``srgan``: the command line of the project, a thin dispatcher over :mod:`srgan_lib.commands` (one module each).

Only the chosen command's module is imported, so ``srgan --help`` is instant and each command's code is its own;
``dvc.yaml`` runs the stage commands as ``python -m srgan_lib.commands.NAME`` so that editing this file (or another
command) never invalidates a stage. Machine-readable output (``--json``) goes to a file or stdout; progress bars and
logs go to stderr.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from srgan_lib import __version__
from srgan_lib.commands._entry import execute

# The command table, the one place a command's name, module and one-line help are written: GROUPS holds the help of
# each two-word group (srgan data ..., srgan metrics ...), COMMANDS maps each command's words to (its module under
# srgan_lib.commands, its one-line help)
GROUPS: dict[str, str] = {
    "data": "data stages: embedded default set, lists, LR generation, training store; degradation preview",
    "metrics": "measure images: NIQE, PSNR/SSIM",
    "models": "the papers' networks",
    "params": "params.yaml tools",
}
COMMANDS: dict[tuple[str, ...], tuple[str, str]] = {
    ("data", "embedded"): ("data_embedded", "write the scikit-image photographs (the embedded default) as PNG"),
    ("data", "lists"): ("data_lists", "validate image folders and write JSON lists per split plus rejects.json"),
    ("data", "degrade"): ("data_degrade", "generate LR images (modcrop + bicubic / scale)"),
    ("data", "store"): ("data_store", "decode the training pairs once into the memory-mapped store training reads"),
    ("data", "realworld"): ("data_realworld", "write real-world versions of test sets (Set5-RW, Set14-RW) through "
                            "params.yaml's degradation"),
    ("data", "preview"): ("data_preview", "picture training crops beside their real-world degraded LR, with the "
                          "draws (and log it to MLflow)"),
    ("evaluate",): ("evaluate", "evaluate a method on benchmark sets (PSNR/SSIM on Y and RGB, NIQE)"),
    ("metrics", "niqe"): ("metrics_niqe", "NIQE of each image (MATLAB-calibrated; lower is better)"),
    ("metrics", "compare"): ("metrics_compare", "PSNR and SSIM (Y and RGB) of an SR image against its HR image"),
    ("models", "summary"): ("models_summary", "architecture summary and parameter count"),
    ("train",): ("train", "train one recipe of params.yaml (srresnet, srgan, rrdbnet, esrgan, or yours)"),
    ("interpolate",): ("interpolate", "ESRGAN network interpolation between a PSNR and a GAN generator"),
    ("report",): ("report", "write the evaluation report: papers' table, per-image CSV, comparison figures, "
                  "perception-distortion"),
    ("upscale",): ("upscale", "upscale images or folders with a trained generator (tiled, any size)"),
    ("export",): ("export", "export a generator to ONNX (dynamic batch/height/width)"),
    ("repro",): ("repro", "run the DVC pipeline (what `make run` does) under one MLflow parent run, then print the "
                 "summary"),
    ("sweep",): ("sweep", "sweep a parameter grid: one DVC experiment per combination on N queue workers, compared "
                  "in MLflow, the best offered to the registry gate"),
    ("register",): ("register", "register a generator in the MLflow model registry; the gate decides its alias "
                    "(champion/challenger)"),
    ("params", "check"): ("params_check", "validate params.yaml (unknown keys, types, values, folders)"),
    ("params", "show"): ("params_show", "print the full, validated parameters (an overlay's extends resolved)"),
}


def _chosen(argv: Sequence[str]) -> tuple[str, ...] | None:
    """The command ``argv`` names (its first one or two words), or None when it names none (help, a typo)."""
    words = [w for w in argv if not w.startswith("-")][:2]
    for key in COMMANDS:
        if tuple(words[: len(key)]) == key:
            return key
    return None


def build_parser(chosen: tuple[str, ...] | bool | None = True) -> argparse.ArgumentParser:
    """The ``srgan`` parser: every command listed with its one-line help; the arguments of ``chosen`` only (its
    module imported), or of every command with ``True`` (for tests and documentation)."""
    p = argparse.ArgumentParser(
        prog="srgan",
        description="Train, evaluate and serve SRGAN / ESRGAN 4x super-resolution models.",
        epilog="Run `srgan COMMAND --help` for each command. Docs: README.md and docs/.",
    )
    p.add_argument("--version", action="version", version=f"srgan {__version__}")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    groups: dict[str, argparse._SubParsersAction] = {}
    for key, (module_name, help_text) in COMMANDS.items():
        if len(key) == 2 and key[0] not in groups:
            grp = sub.add_parser(key[0], help=GROUPS[key[0]])
            groups[key[0]] = grp.add_subparsers(dest=f"{key[0]}_command", required=True,
                                                metavar="STAGE" if key[0] == "data" else "ACTION")
        parent = groups[key[0]] if len(key) == 2 else sub
        if chosen is True or chosen == key:
            module = importlib.import_module(f"srgan_lib.commands.{module_name}")
            cmd = parent.add_parser(key[-1], help=help_text, description=module.DESCRIPTION)
            module.add_arguments(cmd)
            cmd.set_defaults(func=module.run)
        else:
            parent.add_parser(key[-1], help=help_text, add_help=False)  # listed; its arguments are its module's
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``srgan`` console script."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser(_chosen(argv)).parse_args(argv)
    return execute(args.func, args)


if __name__ == "__main__":
    raise SystemExit(main())
