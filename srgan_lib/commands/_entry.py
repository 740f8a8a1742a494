"""What every command shares: its error type, argument helpers and the runner (logging, telemetry, exit status).

A command module has ``DESCRIPTION``, ``add_arguments(parser)`` and ``run(args) -> int``; it runs as
``srgan GROUP NAME ...`` (the :mod:`srgan_lib.cli` dispatcher) or as ``python -m srgan_lib.commands.NAME ...``
(what ``dvc.yaml`` calls, so a stage's code dependencies are its own module's import closure, not the whole CLI).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Callable, Sequence
from types import ModuleType

from srgan_lib import DEFAULT_PARAMS, UserError, telemetry_off
from srgan_lib.config.fields import default
from srgan_lib.config.sections import Tracking
from srgan_lib.io.images import write_json


class CLIError(UserError):
    """A user-facing error: printed as one line, exit status 2."""


def named_path(text: str) -> tuple[str, str]:
    """``NAME=PATH`` (a test set, for example) as a pair; argparse reports anything else."""
    if "=" not in text or not all(text.split("=", 1)):
        raise argparse.ArgumentTypeError(f"expected NAME=PATH (for example Set5=data/benchmarks/Set5), got {text!r}")
    name, path = text.split("=", 1)
    return name, path


def emit_json(obj: object, dest: str) -> None:
    """``obj`` as JSON to the file ``dest`` (atomically) or to stdout for ``-``."""
    if dest == "-":
        json.dump(obj, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        write_json(dest, obj)


def add_param_file(parser: argparse.ArgumentParser, example: str) -> None:
    """--params FILE / --set KEY=VALUE: a command that reads the whole parameter file, with overrides for this run."""
    parser.add_argument("--params", default=str(DEFAULT_PARAMS), help="parameter file (default params.yaml)")
    parser.add_argument("--set", nargs="+", action="extend", metavar="KEY=VALUE",
                        help=f"override parameters for this run, e.g. {example}")


def add_tracking(parser: argparse.ArgumentParser, what: str) -> None:
    """--tracking-uri / --experiment of a command that logs ``what`` to MLflow."""
    parser.add_argument("--tracking-uri", default=None, metavar="URI",
                        help=f"log {what} to this MLflow store (default: $MLFLOW_TRACKING_URI, else no tracking); "
                        "dvc.yaml passes params.yaml's tracking.uri")
    parser.add_argument("--experiment", default=default(Tracking, "experiment"),
                        help="MLflow experiment name (default %(default)s)")


def add_model_source(parser: argparse.ArgumentParser) -> None:
    """--model / --no-ema / --tracking-uri: a generator from a checkpoint or the MLflow model registry."""
    parser.add_argument("--model", required=True,
                        help="checkpoint (.pth) or models:/NAME@ALIAS | models:/NAME/VERSION")
    parser.add_argument("--no-ema", action="store_true", help="use 'params' rather than 'params_ema'")
    parser.add_argument("--tracking-uri", default=None, help="MLflow store for models:/ URIs (default: "
                        "$MLFLOW_TRACKING_URI, else sqlite:///mlflow/mlflow.db)")


def execute(func: Callable[[argparse.Namespace], int], args: argparse.Namespace) -> int:
    """Run a command's ``run`` with the project's logging and telemetry settings; a user error is one line and exit
    status 2, Ctrl-C exit status 130."""
    telemetry_off()
    quiet_rank = int(os.environ.get("RANK", "0")) != 0  # under torchrun only rank 0 talks
    verbose = getattr(args, "verbose", False)
    logging.basicConfig(
        level=logging.ERROR if quiet_rank else logging.DEBUG if verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    if not verbose:  # MLflow's store set-up chatter ("Creating initial MLflow database tables...")
        for name in ("mlflow", "alembic"):
            logging.getLogger(name).setLevel(logging.WARNING)
        os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")  # MLflow resets its loggers when imported
    try:
        return int(func(args) or 0)
    except (UserError, FileNotFoundError, ValueError) as exc:
        print(f"srgan: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("srgan: interrupted; checkpoints written so far are kept (continue with --resume)", file=sys.stderr)
        return 130


def main(module: ModuleType, prog: str, argv: Sequence[str] | None = None) -> int:
    """``python -m srgan_lib.commands.NAME``: the command alone, as ``srgan`` would run it."""
    parser = argparse.ArgumentParser(prog=prog, description=module.DESCRIPTION)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    module.add_arguments(parser)
    return execute(module.run, parser.parse_args(argv))
