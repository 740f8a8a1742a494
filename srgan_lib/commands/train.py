"""`srgan train RECIPE`: train one recipe of params.yaml (its section plus `train`)."""

from __future__ import annotations

import argparse
import os
import sys

from srgan_lib.commands import _entry

DESCRIPTION = ("Train one stage as params.yaml says (its own section plus `train`). Checkpoints go to "
               "<train.out>/<stage>/checkpoints, the final generator to <train.models>/<stage>.pth as {'params', "
               "'params_ema'}; metrics, validation images and the config go to MLflow (params.yaml tracking.uri, or "
               "MLFLOW_TRACKING_URI). Under torchrun the same command trains with DDP: torchrun --nproc-per-node N "
               "-m srgan_lib.cli train esrgan.")


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The command's arguments (on the dispatcher's sub-parser, or alone under ``python -m``)."""
    p.add_argument("stage", metavar="RECIPE", help="a training recipe: one that params.yaml's `recipes` names (each "
                   "has its own section; `srgan params show` lists them)")
    _entry.add_param_file(p, "esrgan.lr=5e-5 train.device=cpu")
    again = p.add_mutually_exclusive_group()
    again.add_argument("--resume", action="store_true",
                       help="continue from the newest checkpoint of this stage (a fresh start if there is none)")
    again.add_argument("--restart", action="store_true", help="delete this stage's checkpoints and start over")
    again.add_argument("--auto-resume", action="store_true",
                       help="resume a run made with the same parameters, else start over (what dvc.yaml uses)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (logs only)")
    p.add_argument("--stop-after", type=int, metavar="N",
                   help="stop after N iterations of this invocation, without the final model (timing, smoke)")


def run(args: argparse.Namespace) -> int:
    from srgan_lib.config.params import load_params
    from srgan_lib.training.loop import SHOWN_TERMS
    from srgan_lib.training.stage import install_sigterm_handler, train_stage

    params = load_params(args.params, args.set or [])
    install_sigterm_handler()
    res = train_stage(params, args.stage, resume=args.resume, restart=args.restart, auto_resume=args.auto_resume,
                      progress=False if args.no_progress else None, stop_after=args.stop_after)
    if int(os.environ.get("RANK", "0")) != 0:
        return 0
    losses = "  ".join(f"{k} {v:.4g}" for k, v in res.final_losses.items() if k in SHOWN_TERMS)
    print(f"train {res.stage}: {res.iterations} iterations"
          + (f" (resumed at {res.resumed_from})" if res.resumed_from else "")
          + f" in {res.seconds:.1f} s, {res.seconds_per_iteration:.3f} s/iteration")
    print(f"  final losses: {losses or '-'}")
    if res.validation:
        print("  validation: " + "  ".join(f"{k} {v:.4f}" for k, v in res.validation.items()))
    if res.model_path is not None:
        print(f"  generator: {res.model_path}   run folder: {res.run_dir}/")
    if res.mlflow_run_id:
        print(f"  MLflow run: {res.mlflow_run_id}")
    return 0


if __name__ == "__main__":
    raise SystemExit(_entry.main(sys.modules[__name__], "srgan train"))
