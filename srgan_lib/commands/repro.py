"""`srgan repro`: run the DVC pipeline (what `make run` does) under one MLflow parent run, then print the summary."""

from __future__ import annotations

import argparse
import sys
import time

from srgan_lib import DEFAULT_PARAMS
from srgan_lib.commands import _entry

DESCRIPTION = ("Validate params.yaml (with --set overrides) before any stage runs, open a parent MLflow run, run "
               "`dvc repro [TARGET...]` with every stage's run nested under it, and print the evaluation table. With"
               " --set, the run is `dvc exp run --temp -S ...`: params.yaml is not edited and DVC records the "
               "experiment (`dvc exp show`). Interrupted (Ctrl-C)? Run the same command again: completed stages are "
               "skipped and training resumes from its last checkpoint.")


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The command's arguments (on the dispatcher's sub-parser, or alone under ``python -m``)."""
    p.add_argument("targets", nargs="*", metavar="TARGET", help="stages to reproduce (default: all)")
    p.add_argument("--set", nargs="+", action="extend", metavar="KEY=VALUE",
                   help="override params for this run only, e.g. esrgan.gan.weight=1e-2 (recorded in MLflow + DVC)")
    p.add_argument("--name", default="repro", help="name of the MLflow parent run (default repro)")
    p.add_argument("--exp-name", help="name of the DVC experiment (with --set; default: DVC picks one)")
    p.add_argument("--force", action="store_true", help="run the stages even if nothing changed")


def run(args: argparse.Namespace) -> int:
    from srgan_lib.orchestration.dvc import dvc_command, pipeline_run, run_dvc
    from srgan_lib.report.summary import summarize

    overrides = args.set or []
    start = time.perf_counter()
    try:
        with pipeline_run(args.name, overrides) as run:
            print(f"params: {DEFAULT_PARAMS} is valid" + (f" with {' '.join(overrides)}" if overrides else "")
                  + (f"; MLflow parent run {run.run_id}" if run.run_id else ""), flush=True)
            run_dvc(dvc_command(args.targets, overrides, experiment=args.exp_name, force=args.force), run.env)
    except KeyboardInterrupt:
        print("\nsrgan repro: interrupted. Stages that completed are recorded in dvc.lock and an interrupted "
              "training stage keeps its checkpoints: run the same command again to continue.", file=sys.stderr)
        return 130
    print(f"\nrepro: done in {time.perf_counter() - start:.0f} s\n")
    if overrides:
        print("the experiment ran in a temporary copy (params.yaml untouched): `dvc exp show` compares it, "
              "`dvc exp apply NAME` brings its results into the workspace")
        print(summarize(table=False))
    else:
        print(summarize())
    return 0


if __name__ == "__main__":
    raise SystemExit(_entry.main(sys.modules[__name__], "srgan repro"))
