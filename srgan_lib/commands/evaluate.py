"""`srgan evaluate`: evaluate a method on benchmark sets (PSNR/SSIM on Y and RGB, NIQE)."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from srgan_lib.commands import _entry
from srgan_lib.commands._entry import add_tracking, emit_json, named_path
from srgan_lib.commands._params import add_params, fill_from_params
from srgan_lib.config.fields import default
from srgan_lib.config.sections import DEFAULT_SCALE, LPIPS_NETS, LR_SOURCES, Evaluate, Lpips, Ma
from srgan_lib.data.resize import KERNELS

if TYPE_CHECKING:
    from srgan_lib.config.params import Params

DESCRIPTION = ("Super-resolve every image of each test set and report PSNR-Y, SSIM-Y, PSNR-RGB, SSIM-RGB (shave = "
               "scale) and NIQE, per set and per image. Without --json a table is printed, with the paper's numbers "
               "beside ours where known.")


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The command's arguments (on the dispatcher's sub-parser, or alone under ``python -m``)."""
    p.add_argument("--model", required=True,
                   help="bicubic, nearest, a generator checkpoint (models/esrgan.pth, BasicSR/Real-ESRGAN x4 RRDB), "
                   "a folder of checkpoints (models/interp: each is labelled by its file name), or a registered "
                   "version: models:/NAME@ALIAS, models:/NAME/VERSION (resolved in --tracking-uri's registry)")
    p.add_argument("--name", help="label for the results (default: the baseline's name or the checkpoint's stem)")
    p.add_argument("--no-ema", action="store_true", help="use 'params' rather than 'params_ema' from a checkpoint")
    p.add_argument("--set", nargs="+", action="extend", type=named_path, metavar="NAME=PATH",
                   help="test set folder laid out like data/benchmarks/Set5 (HR/, optional LR_bicubic/X4/)")
    p.add_argument("--lists", nargs="+", action="extend", metavar="DIR",
                   help="use every test list in DIR (written by `srgan data lists`)")
    p.add_argument("--lr-source", "--lr_source", dest="lr_source", choices=LR_SOURCES,
                   default=default(Evaluate, "lr_source"),
                   help="generate LR with the project's bicubic, or read LR_bicubic/X<scale> (default %(default)s)")
    p.add_argument("--kernel", choices=KERNELS, default=default(Evaluate, "kernel"),
                   help="kernel for generated LR (default %(default)s)")
    p.add_argument("--scale", type=int, default=DEFAULT_SCALE, help="scale factor (default %(default)s)")
    p.add_argument("--json", metavar="OUT", help="write all results (per image too) as JSON to OUT ('-' for "
                   "stdout); a folder of <label>.json when --model is a folder")
    p.add_argument("--metrics-json", "--metrics_json", dest="metrics_json", metavar="OUT",
                   help="write per-set means only, {label: {set: {metric: value}}} (for `dvc metrics`)")
    p.add_argument("--sr-dir", metavar="DIR", help="keep the SR images as DIR/<label>/<set>/<image>.png "
                   "(the report's comparison figures read them)")
    p.add_argument("--precision", choices=("fp32", "auto", "bf16"), default="fp32",
                   help="inference precision of trained generators: fp32 (default; the papers' tables), auto (bf16 "
                   "where the device runs it natively) or bf16; recorded in the results")
    p.add_argument("--tile", type=int, default=None, metavar="N",
                   help="generator inference in NxN LR tiles (default: from the free memory; 0: whole images)")
    p.add_argument("--ma-model", default=None, metavar="FILE",
                   help="the authors' Ma model (model.mat, see docs/evaluation.md); missing: Ma and PI recorded as "
                   "unavailable")
    p.add_argument("--ma-sha256", default=default(Ma, "sha256"), metavar="HEX",
                   help="expected sha256 of the Ma model file")
    p.add_argument("--ma-download", type=str.lower, choices=("true", "false"),
                   default=str(default(Ma, "download")).lower(),
                   help="download the Ma model when missing (needs --ma-sha256; default false)")
    p.add_argument("--lpips-net", choices=LPIPS_NETS, default=default(Lpips, "net"),
                   help="LPIPS v0.1 on AlexNet (the authors' recommended metric) or VGG16; none: off (default)")
    p.add_argument("--lpips-weights", default=None, metavar="FILE",
                   help="the authors' v0.1 linear layers (alex.pth / vgg.pth; docs/evaluation.md 'LPIPS'); missing: "
                   "LPIPS recorded as unavailable")
    p.add_argument("--lpips-sha256", default=default(Lpips, "sha256"), metavar="HEX",
                   help="expected sha256 of --lpips-weights (default: the authors' published file's)")
    p.add_argument("--lpips-backbone", default=default(Lpips, "backbone"), metavar="imagenet|FILE",
                   help="the backbone's ImageNet weights: torchvision's cache (imagenet) or a state dict file")
    p.add_argument("--reuse", nargs="+", action="extend", metavar="JSON",
                   help="earlier results (--json files): a network with bit-identical weights evaluated under the "
                   "same settings takes them instead of running again (the sweep's alpha 0 and 1)")
    p.add_argument("--log-model", action="store_true",
                   help="also log each checkpoint as an MLflow Model (pyfunc, as `srgan register` logs trained ones) "
                   "in its evaluation run: what the interpolation sweep's alphas are served from (mlflow models "
                   "serve -m models:/<id>); needs tracking")
    add_tracking(p, "the per-set means as one run per model")
    add_params(p, "evaluate")


def _from_params(params: Params) -> dict[str, object]:
    """The flags params.yaml's `evaluate`, `lists`, `scale` and `tracking` give (what dvc.yaml's stages use)."""
    e = params.evaluate
    return {"scale": params.scale, "lr_source": e.lr_source, "kernel": e.kernel,
            "ma_model": e.ma.model, "ma_sha256": e.ma.sha256, "ma_download": str(e.ma.download).lower(),
            "lpips_net": e.lpips.net, "lpips_weights": e.lpips.weights, "lpips_sha256": e.lpips.sha256,
            "lpips_backbone": e.lpips.backbone, "tracking_uri": params.tracking.uri,
            "experiment": params.tracking.experiment}


def run(args: argparse.Namespace) -> int:
    from srgan_lib.evaluation.stage import EvaluateSettings, ModelEvaluation, run_evaluate
    from srgan_lib.report.tables import format_eval_table

    params = fill_from_params(args, add_arguments, _from_params)
    if params is not None and not args.set and not args.lists:  # the lists stage's test lists (+ real-world ones)
        args.lists = [params.lists.out, *([f"{params.realworld.out}/lists"] if params.realworld.sets else [])]

    settings = EvaluateSettings(
        model=args.model, name=args.name, sets=args.set or [], lists=args.lists or [], scale=args.scale,
        lr_source=args.lr_source, kernel=args.kernel, precision=args.precision, tile=args.tile, ema=not args.no_ema,
        json=args.json, metrics_json=args.metrics_json, sr_dir=args.sr_dir, ma_model=args.ma_model,
        ma_sha256=args.ma_sha256, ma_download=args.ma_download == "true", lpips_net=args.lpips_net,
        lpips_weights=args.lpips_weights, lpips_sha256=args.lpips_sha256, lpips_backbone=args.lpips_backbone,
        tracking_uri=args.tracking_uri,
        experiment=args.experiment, reuse=args.reuse or [], log_model=args.log_model)

    def show(e: ModelEvaluation) -> None:
        if args.json == "-":
            emit_json(e.results, "-")
        else:
            print(format_eval_table(e.results))
        n = sum(r["n_images"] for r in e.results.values())
        how = f"reused from {e.reused_from}" if e.reused_from else f"LR {args.lr_source}"
        where = (f"; MLflow run {e.run_id}" if e.run_id else "") + (f", model {e.model_uri}" if e.model_uri else "")
        print(f"evaluate: {e.label} on {len(e.results)} set(s), {n} images, {how} ({e.seconds:.1f} s){where}",
              file=sys.stderr if args.json == "-" else sys.stdout)

    run_evaluate(settings, on_result=show)
    return 0


if __name__ == "__main__":
    raise SystemExit(_entry.main(sys.modules[__name__], "srgan evaluate"))
