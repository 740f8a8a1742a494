"""`srgan register`: register a generator in the MLflow registry; the gate decides its alias."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from srgan_lib.commands import _entry
from srgan_lib.commands._params import add_params, fill_from_params
from srgan_lib.config.fields import default
from srgan_lib.config.sections import Register, Tracking

if TYPE_CHECKING:
    from srgan_lib.config.params import Params

DESCRIPTION = ("Log the checkpoint as an MLflow Model (pyfunc: uint8 H x W x 3 in, x4 out; servable with `mlflow "
               "models serve`) in its training run, register it as a new version of NAME with its metrics, commit "
               "and dvc.lock hash as tags, and move the alias 'champion' to it only if it beats the current champion"
               " on --set: PSNR-Y for PSNR models; PI, else LPIPS, else NIQE for GAN models, which must also keep "
               "PSNR-Y >= the baseline's - --psnr-floor. A version that loses gets 'challenger'. Weights already "
               "registered register nothing new.")


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The command's arguments (on the dispatcher's sub-parser, or alone under ``python -m``)."""
    p.add_argument("--model", required=True, metavar="CKPT", help="the generator checkpoint (models/esrgan.pth)")
    p.add_argument("--name", required=True, help="registered model name (srgan-esrgan)")
    p.add_argument("--metrics", required=True, metavar="JSON",
                   help="its evaluation (srgan evaluate --metrics-json; metrics/esrgan.json)")
    p.add_argument("--baseline", metavar="JSON", help="the baseline's evaluation for the GAN floor "
                   "(metrics/bicubic.json)")
    p.add_argument("--kind", choices=("auto", "psnr", "gan"), default="auto",
                   help="how the gate judges it (auto: gan if the checkpoint was trained with a GAN loss)")
    p.add_argument("--set", dest="test_set", default=default(Register, "set"),
                   help="test set the gate compares on (%(default)s)")
    p.add_argument("--realworld-set", default=default(Register, "realworld_set"),
                   help="test set the gate compares generators trained on real-world degradations on (%(default)s)")
    p.add_argument("--psnr-floor", type=float, default=default(Register, "psnr_floor"),
                   help="GAN models: PSNR-Y >= baseline - this (%(default)s)")
    p.add_argument("--min-gain", type=float, default=default(Register, "min_gain"),
                   help="margin the champion must be beaten by (%(default)s)")
    p.add_argument("--train-run", metavar="JSON", help="runs/<stage>/run.json: the training run to log the model in "
                   "(else a new run register/NAME)")
    p.add_argument("--stage", default="auto", help="DVC stage that trained it (train_gan@esrgan): its dvc.lock hash "
                   "becomes a tag (default auto: the dvc.lock stage whose outputs hold --model; none: no tag)")
    p.add_argument("-o", "--out", metavar="JSON", help="write the registration record here")
    p.add_argument("--tracking-uri", default=None, metavar="URI",
                   help="MLflow store and registry (default: $MLFLOW_TRACKING_URI); dvc.yaml passes tracking.uri")
    p.add_argument("--experiment", default=default(Tracking, "experiment"),
                   help="MLflow experiment name (default %(default)s)")
    add_params(p, "register")


def _from_params(params: Params) -> dict[str, object]:
    """The gate's rule and the store from params.yaml's `register` and `tracking`."""
    r = params.register
    return {"test_set": r.set, "realworld_set": r.realworld_set, "psnr_floor": r.psnr_floor, "min_gain": r.min_gain,
            "tracking_uri": params.tracking.uri, "experiment": params.tracking.experiment}


def run(args: argparse.Namespace) -> int:
    fill_from_params(args, add_arguments, _from_params)
    from srgan_lib.registry.gate import GateRule
    from srgan_lib.registry.stage import RegisterSettings, run_register

    res = run_register(RegisterSettings(
        model=args.model, name=args.name, metrics=args.metrics, baseline=args.baseline, kind=args.kind,
        rule=GateRule(args.test_set, args.psnr_floor, args.min_gain, args.realworld_set), train_run=args.train_run,
        stage=None if args.stage == "none" else args.stage, out=args.out, tracking_uri=args.tracking_uri,
        experiment=args.experiment))
    if res.new and res.decision is not None:
        d = res.decision
        print(f"register: {res.name} version {res.version} -> @{res.alias} ({d.reason}; {d.metric} "
              f"{d.score:.4g} vs champion {'none' if d.champion_score is None else f'{d.champion_score:.4g}'}) "
              f"in {res.seconds:.1f} s")
    else:
        print(f"register: {res.name}: these weights are already version {res.version}"
              + (f" (@{res.alias})" if res.alias else "") + "; nothing registered")
    uri = f"models:/{res.name}@{res.alias}" if res.alias else f"models:/{res.name}/{res.version}"
    print(f"  load it: srgan upscale --model {uri} IMAGE -o OUT   "
          f"serve it: mlflow models serve -m {uri} --env-manager local")
    return 0


if __name__ == "__main__":
    raise SystemExit(_entry.main(sys.modules[__name__], "srgan register"))
