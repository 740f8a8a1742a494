"""``srgan``: the command line of the project. Each sub-command calls one library function and ends with a summary.

Machine-readable output (``--json``) goes to a file or stdout; progress bars and logs go to stderr.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from collections.abc import Sequence

from srgan_lib import DEFAULT_PARAMS, UserError, __version__, telemetry_off
from srgan_lib.data.lists import LEAKAGE_CHECKS
from srgan_lib.imageio import ImageReadError, read_image, write_json
from srgan_lib.resize import KERNELS

log = logging.getLogger("srgan")


class CLIError(UserError):
    """A user-facing error: printed as one line, exit status 2."""


def _named_path(text: str) -> tuple[str, str]:
    if "=" not in text or not all(text.split("=", 1)):
        raise argparse.ArgumentTypeError(f"expected NAME=PATH (for example Set5=data/benchmarks/Set5), got {text!r}")
    name, path = text.split("=", 1)
    return name, path


def _emit_json(obj: object, dest: str) -> None:
    if dest == "-":
        json.dump(obj, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        write_json(dest, obj)


# ---------------------------------------------------------------------------------------------------------------- data


def cmd_data_embedded(args: argparse.Namespace) -> int:
    from srgan_lib.data.embedded import write_embedded

    paths = write_embedded(args.out, args.names)
    print(f"embedded: wrote {len(paths)} scikit-image photographs to {args.out}/")
    return 0


def cmd_data_lists(args: argparse.Namespace) -> int:
    from srgan_lib.data.lists import build_lists

    test = dict(args.test or [])
    if len(test) != len(args.test or []):
        raise CLIError("test set names given to --test must be unique")
    start = time.perf_counter()
    results = build_lists(args.train or [], test, args.out, min_size=args.min_size, test_min_size=args.test_min_size,
                          leakage=args.leakage)
    print(f"lists: wrote {args.out}/ ({time.perf_counter() - start:.1f} s; leakage check: {args.leakage})")
    for name, res in results.items():
        reasons: dict[str, int] = {}
        for r in res.rejected:
            reasons[r.reason] = reasons.get(r.reason, 0) + 1
        why = ", ".join(f"{n} {k}" for k, n in sorted(reasons.items())) or "none"
        print(f"  {name:<10} {len(res.images):5d} kept   rejected: {why}")
    return 0


def cmd_data_degrade(args: argparse.Namespace) -> int:
    from srgan_lib.data.degrade import degrade, sources_from_folder, sources_from_list

    sources = sources_from_list(args.list) if args.list else sources_from_folder(args.hr)
    start = time.perf_counter()
    s = degrade(sources, args.out, scale=args.scale, kernel=args.kernel)
    print(
        f"degrade: x{args.scale} {args.kernel} bicubic -> {s.out_dir}/  written {s.written}, "
        f"up to date {s.up_to_date}, removed {s.removed}  ({time.perf_counter() - start:.1f} s)"
    )
    return 0


def cmd_data_store(args: argparse.Namespace) -> int:
    from srgan_lib.training.store import build_store

    s = build_store(args.list, args.lr_dir, args.out, scale=args.scale)
    print(f"store: {s.images} training pairs -> {s.out}/  HR {s.hr_bytes / 2**20:.1f} MiB, LR "
          f"{s.lr_bytes / 2**20:.1f} MiB (uint8, memory-mapped by training)  ({s.seconds:.1f} s)")
    return 0


# ------------------------------------------------------------------------------------------------------------ evaluate


def cmd_evaluate(args: argparse.Namespace) -> int:
    from srgan_lib.stages.evaluate import EvaluateSettings, ModelEvaluation, run_evaluate
    from srgan_lib.tables import format_eval_table

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
            _emit_json(e.results, "-")
        else:
            print(format_eval_table(e.results))
        n = sum(r["n_images"] for r in e.results.values())
        how = f"reused from {e.reused_from}" if e.reused_from else f"LR {args.lr_source}"
        where = (f"; MLflow run {e.run_id}" if e.run_id else "") + (f", model {e.model_uri}" if e.model_uri else "")
        print(f"evaluate: {e.label} on {len(e.results)} set(s), {n} images, {how} ({e.seconds:.1f} s){where}",
              file=sys.stderr if args.json == "-" else sys.stdout)

    run_evaluate(settings, on_result=show)
    return 0


# ------------------------------------------------------------------------------------------------------------- metrics


def cmd_metrics_niqe(args: argparse.Namespace) -> int:
    from srgan_lib.metrics.niqe import niqe

    values = {}
    failed = 0
    for path in args.images:
        try:
            values[path] = niqe(read_image(path), shave=args.shave)
        except (ImageReadError, ValueError) as exc:
            print(f"error: {path}: {exc}", file=sys.stderr)
            failed += 1
            continue
        if not args.json:
            print(f"{values[path]:.6f}  {path}")
    if args.json:
        _emit_json(values, args.json)
    if len(args.images) > 1:
        print(f"niqe: {len(values)} image(s) measured, {failed} failed", file=sys.stderr)
    return 1 if failed else 0


def cmd_metrics_compare(args: argparse.Namespace) -> int:
    from srgan_lib.metrics.psnr_ssim import psnr, ssim

    sr, hr = read_image(args.sr), read_image(args.hr)
    if sr.shape != hr.shape:
        raise CLIError(f"{args.sr} is {sr.shape[1]}x{sr.shape[0]} but {args.hr} is {hr.shape[1]}x{hr.shape[0]}")
    out = {
        "psnr_y": psnr(sr, hr, space="y", shave=args.shave),
        "ssim_y": ssim(sr, hr, space="y", shave=args.shave),
        "psnr_rgb": psnr(sr, hr, space="rgb", shave=args.shave),
        "ssim_rgb": ssim(sr, hr, space="rgb", shave=args.shave),
    }
    if args.json:
        _emit_json(out, args.json)
    else:
        print("  ".join(f"{k} {v:.4f}" for k, v in out.items()) + f"  (shave {args.shave})")
    return 0


def _option_value(text: str) -> tuple[str, int | float | str]:
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE (for example num_block=4), got {text!r}")
    key, raw = text.split("=", 1)
    for cast in (int, float):
        try:
            return key, cast(raw)
        except ValueError:
            continue
    return key, raw


def cmd_models_summary(args: argparse.Namespace) -> int:
    from srgan_lib.models import MODELS, summarize

    if args.name not in MODELS:
        raise CLIError(f"unknown model {args.name!r}; available: {', '.join(MODELS)}")
    try:
        info = summarize(args.name, **dict(args.option or []))
    except TypeError as exc:
        raise CLIError(f"bad option for {args.name}: {exc}") from None
    if args.json:
        _emit_json(info, args.json)
        return 0
    print(f"{info['name']} ({info['class']}), options {info['options'] or 'paper configuration'}")
    for child in info["children"]:
        print(f"  {child['name']:<14} {child['type']:<20} {child['parameters']:>12,d}")
    paper = f"  (paper: {info['paper_parameters']:,d})" if info["paper_parameters"] else ""
    print(f"parameters: {info['parameters']:,d}{paper}   input {info['input_shape']} -> output {info['output_shape']}")
    return 0


def cmd_params_check(args: argparse.Namespace) -> int:
    from srgan_lib.config import load_params

    params = load_params(args.params)
    sections = ", ".join(k for k in params if isinstance(params[k], dict))
    print(f"params: {args.params} is valid (sections: {sections})")
    return 0


def cmd_params_show(args: argparse.Namespace) -> int:
    import yaml

    from srgan_lib.config import load_params
    from srgan_lib.imageio import atomic_path

    params = load_params(args.params, folders=False)  # data may be downloaded later: `params check` looks
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


# -------------------------------------------------------------------------------------------------------------- parser


def _add_model_source(parser: argparse.ArgumentParser) -> None:
    """--model / --no-ema / --tracking-uri: a generator from a checkpoint or the MLflow model registry."""
    parser.add_argument("--model", required=True,
                        help="checkpoint (.pth) or models:/NAME@ALIAS | models:/NAME/VERSION")
    parser.add_argument("--no-ema", action="store_true", help="use 'params' rather than 'params_ema'")
    parser.add_argument("--tracking-uri", default=None, help="MLflow store for models:/ URIs (default: "
                        "$MLFLOW_TRACKING_URI, else sqlite:///mlflow/mlflow.db)")


def _add_tracking(parser: argparse.ArgumentParser, what: str) -> None:
    """--tracking-uri / --experiment of a command that logs ``what`` to MLflow."""
    parser.add_argument("--tracking-uri", default=None, metavar="URI",
                        help=f"log {what} to this MLflow store (default: $MLFLOW_TRACKING_URI, else no tracking); "
                        "dvc.yaml passes params.yaml's tracking.uri")
    parser.add_argument("--experiment", default="srgan", help="MLflow experiment name (default srgan)")


def build_parser() -> argparse.ArgumentParser:
    """The full ``srgan`` argument parser."""
    p = argparse.ArgumentParser(
        prog="srgan",
        description="Train, evaluate and serve SRGAN / ESRGAN 4x super-resolution models.",
        epilog="Run `srgan COMMAND --help` for each command. Docs: README.md.",
    )
    p.add_argument("--version", action="version", version=f"srgan {__version__}")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    data = sub.add_parser("data", help="data stages: embedded default set, lists, LR generation, training store")
    dsub = data.add_subparsers(dest="data_command", required=True, metavar="STAGE")

    emb = dsub.add_parser("embedded", help="write the scikit-image photographs (the embedded default) as PNG")
    emb.add_argument("--out", required=True, help="output folder")
    emb.add_argument("--names", nargs="+", help="subset of images (default: all)")
    emb.set_defaults(func=cmd_data_embedded)

    lst = dsub.add_parser(
        "lists",
        help="validate image folders and write JSON lists per split plus rejects.json",
        description="Scan training folders and test sets; keep images that decode, convert to RGB and are large "
        "enough; reject duplicates and training images that show a test image (identical, or with --leakage near "
        "also resized, re-encoded, flipped, rotated, grey or cropped). Writes OUT/train.json, OUT/<TEST>.json and "
        "OUT/rejects.json (every rejected file with the reason).",
    )
    lst.add_argument("--train", nargs="+", action="extend", metavar="DIR", help="training image folder(s)")
    lst.add_argument("--test", nargs="+", action="extend", type=_named_path, metavar="NAME=DIR",
                     help="test set folder(s) (benchmark layout with HR/, or a plain folder)")
    lst.add_argument("--out", required=True, help="output folder for the lists")
    lst.add_argument("--min-size", "--min_size", dest="min_size", type=int, default=128,
                     help="minimum short side of a training image (default 128 = the ESRGAN HR crop)")
    lst.add_argument("--test-min-size", "--test_min_size", dest="test_min_size", type=int, default=16,
                     help="minimum short side of a test image (default 16)")
    lst.add_argument("--leakage", choices=LEAKAGE_CHECKS, default="near",
                     help="near (default): reject training images showing a test image in any form (about 0.1 s per "
                     "training image on 2 cores); exact: only identical pixels")
    lst.set_defaults(func=cmd_data_lists)

    deg = dsub.add_parser(
        "degrade",
        help="generate LR images (modcrop + bicubic / scale)",
        description="Modcrop every HR image to a multiple of the scale and downsample it; MATLAB imresize by "
        "default (bit-exact with the literature's LR_bicubic files), Pillow bicubic with --kernel pil. "
        "Incremental: unchanged images are not recomputed.",
    )
    src = deg.add_mutually_exclusive_group(required=True)
    src.add_argument("--hr", metavar="DIR", help="folder of HR images (recursive)")
    src.add_argument("--list", metavar="FILE", help="a data list written by `srgan data lists`")
    deg.add_argument("--out", required=True, metavar="DIR", help="output folder for the LR PNGs")
    deg.add_argument("--scale", type=int, default=4, help="downsampling factor (default 4)")
    deg.add_argument("--kernel", choices=KERNELS, default="matlab", help="bicubic flavour (default matlab)")
    deg.set_defaults(func=cmd_data_degrade)

    sto = dsub.add_parser(
        "store",
        help="decode the training pairs once into the memory-mapped store training reads",
        description="Decode every HR image of a training list (modcropped) and its LR from the degrade stage into "
        "OUT/hr.u8 and OUT/lr.u8 (uint8, back to back) with OUT/index.json. Training cuts its random crops from "
        "these memory maps instead of decoding PNGs. Rebuilt whole, atomically (a killed build leaves the old "
        "store or none).",
    )
    sto.add_argument("--list", required=True, metavar="FILE", help="training list (`srgan data lists`)")
    sto.add_argument("--lr-dir", required=True, metavar="DIR", help="the degrade stage's LR folder (.../X4)")
    sto.add_argument("--out", required=True, metavar="DIR", help="store folder (params: train.store)")
    sto.add_argument("--scale", type=int, default=4, help="the LR scale (default 4)")
    sto.set_defaults(func=cmd_data_store)

    ev = sub.add_parser(
        "evaluate",
        help="evaluate a method on benchmark sets (PSNR/SSIM on Y and RGB, NIQE)",
        description="Super-resolve every image of each test set and report PSNR-Y, SSIM-Y, PSNR-RGB, SSIM-RGB "
        "(shave = scale) and NIQE, per set and per image. Without --json a table is printed, with the paper's "
        "numbers beside ours where known.",
    )
    ev.add_argument("--model", required=True,
                    help="bicubic, nearest, a generator checkpoint (models/esrgan.pth, BasicSR/Real-ESRGAN x4 RRDB), "
                    "a folder of checkpoints (models/interp: each is labelled by its file name), or a registered "
                    "version: models:/NAME@ALIAS, models:/NAME/VERSION (resolved in --tracking-uri's registry)")
    ev.add_argument("--name", help="label for the results (default: the baseline's name or the checkpoint's stem)")
    ev.add_argument("--no-ema", action="store_true", help="use 'params' rather than 'params_ema' from a checkpoint")
    ev.add_argument("--set", nargs="+", action="extend", type=_named_path, metavar="NAME=PATH",
                    help="test set folder laid out like data/benchmarks/Set5 (HR/, optional LR_bicubic/X4/)")
    ev.add_argument("--lists", nargs="+", action="extend", metavar="DIR",
                    help="use every test list in DIR (written by `srgan data lists`)")
    ev.add_argument("--lr-source", "--lr_source", dest="lr_source", choices=("generate", "folder"),
                    default="generate", help="generate LR with the project's bicubic, or read LR_bicubic/X<scale>")
    ev.add_argument("--kernel", choices=KERNELS, default="matlab", help="kernel for generated LR (default matlab)")
    ev.add_argument("--scale", type=int, default=4, help="scale factor (default 4)")
    ev.add_argument("--json", metavar="OUT", help="write all results (per image too) as JSON to OUT ('-' for "
                    "stdout); a folder of <label>.json when --model is a folder")
    ev.add_argument("--metrics-json", "--metrics_json", dest="metrics_json", metavar="OUT",
                    help="write per-set means only, {label: {set: {metric: value}}} (for `dvc metrics`)")
    ev.add_argument("--sr-dir", metavar="DIR", help="keep the SR images as DIR/<label>/<set>/<image>.png "
                    "(the report's comparison figures read them)")
    ev.add_argument("--precision", choices=("fp32", "auto", "bf16"), default="fp32",
                    help="inference precision of trained generators: fp32 (default; the papers' tables), auto (bf16 "
                    "where the device runs it natively) or bf16; recorded in the results")
    ev.add_argument("--tile", type=int, default=None, metavar="N",
                    help="generator inference in NxN LR tiles (default: from the free memory; 0: whole images)")
    ev.add_argument("--ma-model", default=None, metavar="FILE",
                    help="the authors' Ma model (model.mat, see README); missing: Ma and PI recorded as unavailable")
    ev.add_argument("--ma-sha256", default="", metavar="HEX", help="expected sha256 of the Ma model file")
    ev.add_argument("--ma-download", type=str.lower, choices=("true", "false"), default="false",
                    help="download the Ma model when missing (needs --ma-sha256; default false)")
    ev.add_argument("--lpips-net", choices=("alex", "vgg", "none"), default="none",
                    help="LPIPS v0.1 on AlexNet (the authors' recommended metric) or VGG16; none: off (default)")
    ev.add_argument("--lpips-weights", default=None, metavar="FILE",
                    help="the authors' v0.1 linear layers (alex.pth / vgg.pth; README 'LPIPS'); missing: LPIPS "
                    "recorded as unavailable")
    ev.add_argument("--lpips-sha256", default="", metavar="HEX",
                    help="expected sha256 of --lpips-weights (default: the authors' published file's)")
    ev.add_argument("--lpips-backbone", default="imagenet", metavar="imagenet|FILE",
                    help="the backbone's ImageNet weights: torchvision's cache (imagenet) or a state dict file")
    ev.add_argument("--reuse", nargs="+", action="extend", metavar="JSON",
                    help="earlier results (--json files): a network with bit-identical weights evaluated under the "
                    "same settings takes them instead of running again (the sweep's alpha 0 and 1)")
    ev.add_argument("--log-model", action="store_true",
                    help="also log each checkpoint as an MLflow Model (pyfunc, as `srgan register` logs trained ones) "
                    "in its evaluation run: what the interpolation sweep's alphas are served from (mlflow models "
                    "serve -m models:/<id>); needs tracking")
    _add_tracking(ev, "the per-set means as one run per model")
    ev.set_defaults(func=cmd_evaluate)

    met = sub.add_parser("metrics", help="measure images: NIQE, PSNR/SSIM")
    msub = met.add_subparsers(dest="metrics_command", required=True, metavar="METRIC")
    nq = msub.add_parser("niqe", help="NIQE of each image (MATLAB-calibrated; lower is better)")
    nq.add_argument("images", nargs="+", metavar="IMAGE")
    nq.add_argument("--shave", type=int, default=0, help="border to remove first (PIRM uses the scale; default 0)")
    nq.add_argument("--json", metavar="OUT", help="write {image: value} as JSON to OUT ('-' for stdout)")
    nq.set_defaults(func=cmd_metrics_niqe)
    cmp_ = msub.add_parser("compare", help="PSNR and SSIM (Y and RGB) of an SR image against its HR image")
    cmp_.add_argument("sr")
    cmp_.add_argument("hr")
    cmp_.add_argument("--shave", type=int, default=4, help="border to remove (default 4, the x4 convention)")
    cmp_.add_argument("--json", metavar="OUT", help="write the values as JSON to OUT ('-' for stdout)")
    cmp_.set_defaults(func=cmd_metrics_compare)

    mod = sub.add_parser("models", help="the papers' networks")
    modsub = mod.add_subparsers(dest="models_command", required=True, metavar="ACTION")
    summ = modsub.add_parser(
        "summary",
        help="architecture summary and parameter count",
        description="Summarise srresnet, srgan_discriminator, rrdbnet or esrgan_discriminator in the paper "
        "configuration, or with options such as num_block=4.",
    )
    summ.add_argument("name", help="srresnet | srgan_discriminator | rrdbnet | esrgan_discriminator")
    summ.add_argument("--option", nargs="+", action="extend", type=_option_value, metavar="KEY=VALUE",
                      help="constructor options, e.g. num_block=4 num_feat=32")
    summ.add_argument("--json", metavar="OUT", help="write the summary as JSON to OUT ('-' for stdout)")
    summ.set_defaults(func=cmd_models_summary)

    tr = sub.add_parser(
        "train",
        help="train one stage: srresnet, srgan, rrdbnet or esrgan",
        description="Train one stage as params.yaml says (its own section plus `train`). Checkpoints go to "
        "<train.out>/<stage>/checkpoints, the final generator to <train.models>/<stage>.pth as "
        "{'params', 'params_ema'}; metrics, validation images and the config go to MLflow "
        "(params.yaml tracking.uri, or MLFLOW_TRACKING_URI). Under torchrun the same command trains with DDP: "
        "torchrun --nproc-per-node N -m srgan_lib.cli train esrgan.",
    )
    tr.add_argument("stage", choices=("srresnet", "srgan", "rrdbnet", "esrgan"))
    tr.add_argument("--params", default=str(DEFAULT_PARAMS), help="parameter file (default params.yaml)")
    tr.add_argument("--set", nargs="+", action="extend", metavar="KEY=VALUE",
                    help="override parameters for this run, e.g. esrgan.lr=5e-5 train.device=cpu")
    again = tr.add_mutually_exclusive_group()
    again.add_argument("--resume", action="store_true",
                       help="continue from the newest checkpoint of this stage (a fresh start if there is none)")
    again.add_argument("--restart", action="store_true", help="delete this stage's checkpoints and start over")
    again.add_argument("--auto-resume", action="store_true",
                       help="resume a run made with the same parameters, else start over (what dvc.yaml uses)")
    tr.add_argument("--no-progress", action="store_true", help="no progress bar (logs only)")
    tr.add_argument("--stop-after", type=int, metavar="N",
                    help="stop after N iterations of this invocation, without the final model (timing, smoke)")
    tr.set_defaults(func=cmd_train)

    it = sub.add_parser(
        "interpolate",
        help="ESRGAN network interpolation between a PSNR and a GAN generator",
        description="Write one generator per alpha: theta = (1 - alpha) * theta_PSNR + alpha * theta_GAN "
        "(EMA weights when the checkpoints have them). Both must be the same architecture.",
    )
    it.add_argument("--psnr", required=True, metavar="CKPT", help="the PSNR-oriented generator (alpha 0)")
    it.add_argument("--gan", required=True, metavar="CKPT", help="the GAN generator (alpha 1)")
    it.add_argument("--alpha", required=True, type=float, nargs="+", action="extend", metavar="A",
                    help="one or more alphas in [0, 1], e.g. --alpha 0 0.2 0.4 0.6 0.8 1")
    it.add_argument("-o", "--out", required=True, metavar="DIR", help="output folder for interp_<alpha>.pth")
    it.add_argument("--format", choices=("pth", "safetensors"), default="pth",
                    help="pth ({'params': ...}, BasicSR layout) or safetensors (a flat state dict + meta)")
    it.set_defaults(func=cmd_interpolate)

    rep = sub.add_parser(
        "report",
        help="write the evaluation report: papers' table, per-image CSV, comparison figures, perception-distortion",
        description="Collect the evaluation results (srgan evaluate --json) into one folder: report.md with the "
        "table in the papers' layout (our rows and the published rows, labelled), table.md, per_image.csv, a "
        "zoomed-crop comparison figure per test image (from the SR images kept with --sr-dir) and the "
        "perception-distortion plane with the network-interpolation sweep. Logged to MLflow as a run 'report'.",
    )
    rep.add_argument("--eval", nargs="+", required=True, action="extend", metavar="DIR",
                     help="folder(s) of <method>.json evaluation results (reports/eval reports/interp)")
    rep.add_argument("--sr-dir", metavar="DIR", help="SR images as DIR/<method>/<set>/<image>.png (figures)")
    rep.add_argument("--methods", nargs="+", default=None, metavar="M",
                     help="methods in the comparison figures, in order (default bicubic srresnet srgan rrdbnet esrgan)")
    rep.add_argument("--crop", type=int, default=96, help="side of the zoomed HR crop in pixels (default 96)")
    rep.add_argument("-o", "--out", required=True, metavar="DIR", help="output folder (report.md and its pictures)")
    _add_tracking(rep, "the report folder as the artifacts of a run 'report'")
    rep.set_defaults(func=cmd_report)

    upc = sub.add_parser(
        "upscale",
        help="upscale images or folders with a trained generator (tiled, any size)",
        description="Upscale image files and folders (recursively, keeping sub-folders) with a generator checkpoint "
        "(this project's, BasicSR's or Real-ESRGAN's x4 RRDBNet / SRResNet) or a registered MLflow model "
        "(models:/NAME@ALIAS, models:/NAME/VERSION). Greyscale, 16-bit greyscale, alpha and palette images keep "
        "their mode; EXIF orientation is applied, the ICC profile kept. Tiles stream from CPU memory, so memory "
        "is bounded by the tile size. Exit status 1 when any file failed (the others are still written).",
    )
    upc.add_argument("inputs", nargs="+", metavar="INPUT", help="image files and/or folders")
    upc.add_argument("-o", "--out", required=True, metavar="DIR", help="output folder")
    _add_model_source(upc)
    upc.add_argument("--tile", type=int, default=None,
                     help="tile size in input pixels (default: the fastest side for this model, device, precision "
                     "and threads, measured once in under a minute and cached in ~/.cache/srgan/tiles.json, "
                     "$SRGAN_CACHE_DIR; never above a quarter of the free memory; 0: whole image in one pass)")
    upc.add_argument("--tile-pad", type=int, default=16, help="context around each tile, input pixels (default 16)")
    upc.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N (default auto)")
    upc.add_argument("--precision", choices=("auto", "fp32", "bf16", "fp16"), default="auto",
                     help="auto (default): bf16 autocast where the device runs bf16 natively (CUDA with bf16; CPUs "
                     "with AVX512_BF16 or AMX), else fp32; fp32: always exact; fp16 needs CUDA. Autocast output is "
                     "guarded (--guard-db)")
    upc.add_argument("--guard-db", type=float, default=None, metavar="DB",
                     help="accuracy guard of bf16/fp16: a 64x64 probe of each image also runs in fp32, and the image "
                     "is redone in fp32 when the two differ by more than this PSNR (default 40 dB, "
                     "srgan_lib.upscale.DEFAULT_GUARD_DB; 0: no probe). Non-finite tiles are always redone in fp32")
    upc.add_argument("--alpha", choices=("bicubic", "model"), default="bicubic",
                     help="how an alpha channel is upscaled (default bicubic)")
    upc.add_argument("--format", choices=("auto", "png", "jpg", "webp", "tiff"), default="auto",
                     help="output format (auto: the input's, PNG where it cannot hold the result)")
    upc.add_argument("--quality", type=int, default=95, help="JPEG/WebP quality (default 95)")
    upc.add_argument("--suffix", default="", help="added to output file names, e.g. _x4")
    exist = upc.add_mutually_exclusive_group()
    exist.add_argument("--skip-existing", action="store_true", help="leave existing outputs alone")
    exist.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    upc.add_argument("--max-pixels", type=int, default=200_000_000,
                     help="refuse inputs with more pixels (decompression bombs; default 200e6, 0: no limit)")
    upc.set_defaults(func=cmd_upscale)

    exp = sub.add_parser(
        "export",
        help="export a generator to ONNX (dynamic batch/height/width)",
        description="Export a checkpoint or registered MLflow model to ONNX. The graph takes 'lr' (N x 3 x H x W, "
        "RGB in [0, 1]) and returns 'sr' in [0, 1]; it is checked against PyTorch with onnxruntime when installed.",
    )
    _add_model_source(exp)
    exp.add_argument("--format", choices=("onnx", "safetensors"), default="onnx",
                     help="onnx (a graph for onnxruntime/TensorRT) or safetensors (the weights as one flat state "
                     "dict with the checkpoint's meta: what spandrel/chaiNNer load; no code can hide in it)")
    exp.add_argument("-o", "--out", required=True, metavar="FILE", help="output file, e.g. esrgan.onnx")
    exp.add_argument("--opset", type=int, default=18, help="ONNX opset (default 18)")
    exp.add_argument("--no-verify", action="store_true", help="skip the onnxruntime comparison")
    exp.set_defaults(func=cmd_export)

    rp = sub.add_parser(
        "repro",
        help="run the DVC pipeline (what `make run` does) under one MLflow parent run, then print the summary",
        description="Validate params.yaml (with --set overrides) before any stage runs, open a parent MLflow run, "
        "run `dvc repro [TARGET...]` with every stage's run nested under it, and print the evaluation table. With "
        "--set, the run is `dvc exp run --temp -S ...`: params.yaml is not edited and DVC records the experiment "
        "(`dvc exp show`). Interrupted (Ctrl-C)? Run the same command again: completed stages are skipped and "
        "training resumes from its last checkpoint.",
    )
    rp.add_argument("targets", nargs="*", metavar="TARGET", help="stages to reproduce (default: all)")
    rp.add_argument("--set", nargs="+", action="extend", metavar="KEY=VALUE",
                    help="override params for this run only, e.g. esrgan.gan.weight=1e-2 (recorded in MLflow + DVC)")
    rp.add_argument("--name", default="repro", help="name of the MLflow parent run (default repro)")
    rp.add_argument("--exp-name", help="name of the DVC experiment (with --set; default: DVC picks one)")
    rp.add_argument("--force", action="store_true", help="run the stages even if nothing changed")
    rp.set_defaults(func=cmd_repro)

    reg = sub.add_parser(
        "register",
        help="register a generator in the MLflow model registry; the gate decides its alias (champion/challenger)",
        description="Log the checkpoint as an MLflow Model (pyfunc: uint8 H x W x 3 in, x4 out; servable with "
        "`mlflow models serve`) in its training run, register it as a new version of NAME with its metrics, commit "
        "and dvc.lock hash as tags, and move the alias 'champion' to it only if it beats the current champion on "
        "--set: PSNR-Y for PSNR models; PI, else LPIPS, else NIQE for GAN models, which must also keep PSNR-Y >= "
        "the baseline's - --psnr-floor. A version that loses gets 'challenger'. Weights already registered "
        "register nothing new.",
    )
    reg.add_argument("--model", required=True, metavar="CKPT", help="the generator checkpoint (models/esrgan.pth)")
    reg.add_argument("--name", required=True, help="registered model name (srgan-esrgan)")
    reg.add_argument("--metrics", required=True, metavar="JSON",
                     help="its evaluation (srgan evaluate --metrics-json; metrics/esrgan.json)")
    reg.add_argument("--baseline", metavar="JSON", help="the baseline's evaluation for the GAN floor "
                     "(metrics/bicubic.json)")
    reg.add_argument("--kind", choices=("auto", "psnr", "gan"), default="auto",
                     help="how the gate judges it (auto: gan if the checkpoint was trained with a GAN loss)")
    reg.add_argument("--set", dest="test_set", default="Set14", help="test set the gate compares on (Set14)")
    reg.add_argument("--psnr-floor", type=float, default=1.5, help="GAN models: PSNR-Y >= baseline - this (1.5)")
    reg.add_argument("--min-gain", type=float, default=0.0, help="margin the champion must be beaten by (0)")
    reg.add_argument("--train-summary", metavar="JSON", help="runs/<stage>/summary.json: the training run to log "
                     "the model in (else a new run register/NAME)")
    reg.add_argument("--stage", default="auto", help="DVC stage that trained it (train_gan@esrgan): its dvc.lock hash "
                     "becomes a tag (default auto: the dvc.lock stage whose outputs hold --model; none: no tag)")
    reg.add_argument("-o", "--out", metavar="JSON", help="write the registration record here")
    reg.add_argument("--tracking-uri", default=None, metavar="URI",
                     help="MLflow store and registry (default: $MLFLOW_TRACKING_URI); dvc.yaml passes tracking.uri")
    reg.add_argument("--experiment", default="srgan", help="MLflow experiment name (default srgan)")
    reg.set_defaults(func=cmd_register)

    par = sub.add_parser("params", help="params.yaml tools")
    psub = par.add_subparsers(dest="params_command", required=True, metavar="ACTION")
    chk = psub.add_parser("check", help="validate params.yaml (unknown keys, types, values, folders)")
    chk.add_argument("params", nargs="?", default=str(DEFAULT_PARAMS))
    chk.set_defaults(func=cmd_params_check)
    shw = psub.add_parser("show", help="print the full, validated parameters (an overlay's extends resolved)",
                          description="Print the validated parameters of a file as one complete YAML mapping, an "
                          "overlay's 'extends:' chain resolved (configs/paper.yaml lays the papers' settings over "
                          "params.yaml). `srgan params show configs/paper.yaml -o params.yaml` makes them the "
                          "pipeline's (dvc repro reads params.yaml only; the old file is read before it is replaced). "
                          "The data folders need not exist yet (`srgan params check` and every stage require them).")
    shw.add_argument("params", nargs="?", default=str(DEFAULT_PARAMS))
    shw.add_argument("-o", "--out", metavar="FILE", help="write there (atomically) instead of printing")
    shw.set_defaults(func=cmd_params_show)
    return p


def cmd_train(args: argparse.Namespace) -> int:
    from srgan_lib.config import load_params
    from srgan_lib.training.engine import install_sigterm_handler, train_stage
    from srgan_lib.training.loop import SHOWN_TERMS

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
    if res.model_path.name:
        print(f"  generator: {res.model_path}   run folder: {res.run_dir}/")
    if res.mlflow_run_id:
        print(f"  MLflow run: {res.mlflow_run_id}")
    return 0


def cmd_repro(args: argparse.Namespace) -> int:
    from srgan_lib.pipeline import dvc_command, pipeline_run, run_dvc
    from srgan_lib.summary import summarize

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


def cmd_upscale(args: argparse.Namespace) -> int:
    from srgan_lib.upscale import DEFAULT_GUARD_DB, Upscaler, upscale_files

    if args.tile is not None and args.tile < 0:
        raise CLIError(f"--tile must be >= 0 (0: whole image in one pass), got {args.tile}")
    if args.guard_db is not None and args.guard_db < 0:
        raise CLIError(f"--guard-db must be >= 0 (0: no probe), got {args.guard_db}")
    up = Upscaler(args.model, device=args.device, tile=args.tile, tile_pad=args.tile_pad, precision=args.precision,
                  alpha=args.alpha, prefer_ema=not args.no_ema, tracking_uri=args.tracking_uri,
                  guard_db=DEFAULT_GUARD_DB if args.guard_db is None else args.guard_db, autotune=True)
    existing = "skip" if args.skip_existing else "overwrite" if args.overwrite else "error"
    s = upscale_files(up, args.inputs, args.out, fmt=args.format, quality=args.quality, suffix=args.suffix,
                      existing=existing, max_pixels=args.max_pixels)
    rate = s.input_pixels / 1e6 / s.seconds if s.seconds and s.input_pixels else 0.0
    print(f"upscale: x{up.scale} -> {args.out}/  processed {len(s.written)}, skipped {len(s.skipped)}, "
          f"failed {len(s.failed)}, not images {len(s.ignored)}  ({s.seconds:.1f} s, {rate:.3f} input MP/s, "
          f"{up.device}, {up.describe_runs()}, {up.describe_tile()})")
    for src, why in s.failed.items():
        print(f"  failed: {src}: {why}", file=sys.stderr)
    for src, why in s.ignored.items():
        print(f"  not an image, left out: {src}: {why}", file=sys.stderr)
    if up.guard_psnr:
        print(f"  accuracy guard: {up.precision} vs fp32 on the probes {min(up.guard_psnr):.1f} dB at worst "
              f"(bound {up.guard_db:g} dB)")
    if up.fp32_retries:
        print(f"  {up.fp32_retries} tile(s) redone in fp32 (non-finite {up.precision} output)")
    return 1 if s.failed else 0


def cmd_export(args: argparse.Namespace) -> int:
    from srgan_lib.export import export_onnx
    from srgan_lib.models import load_generator
    from srgan_lib.upscale import resolve_model_path

    source = resolve_model_path(args.model, args.tracking_uri)
    if args.format == "safetensors":
        from srgan_lib.weights import load_weights, save_generator_safetensors

        start = time.perf_counter()
        checkpoint = load_weights(source, "generator checkpoint")
        model = load_generator(source, prefer_ema=not args.no_ema)  # refuses anything that is not a generator
        which = save_generator_safetensors(checkpoint if isinstance(checkpoint, dict) else {}, args.out,
                                           prefer_ema=not args.no_ema)
        print(f"export: {args.model} -> {args.out} (safetensors, {which} weights, {model.architecture} "
              f"{model.options or 'paper configuration'}; {time.perf_counter() - start:.1f} s)")
        return 0
    model = load_generator(source, prefer_ema=not args.no_ema)
    start = time.perf_counter()
    try:
        res = export_onnx(model, args.out, opset=args.opset, verify=not args.no_verify)
    except RuntimeError as exc:
        raise CLIError(str(exc)) from None
    check = (f"onnxruntime vs PyTorch on {res.checked_shape}: max |diff| {res.max_abs_diff:.2e}"
             if res.max_abs_diff is not None else "not checked (onnxruntime missing or --no-verify)")
    print(f"export: {args.model} -> {res.path} (ONNX opset {args.opset}, input 'lr' N x 3 x H x W in [0, 1], "
          f"output 'sr' x{model.scale}, {model.architecture} {model.options or 'paper configuration'}; "
          f"{time.perf_counter() - start:.1f} s); {check}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from srgan_lib.report import FIGURE_METHODS, table_markdown
    from srgan_lib.stages.report import ReportSettings, run_report

    res = run_report(ReportSettings(eval_dirs=args.eval, out=args.out, sr_dir=args.sr_dir,
                                    figure_methods=args.methods or FIGURE_METHODS, crop=args.crop,
                                    tracking_uri=args.tracking_uri, experiment=args.experiment))
    print(table_markdown(res.summary.table))
    print(f"report: {res.summary.report} ({len(res.summary.figures)} figures, {res.seconds:.1f} s)"
          + (f"; MLflow run {res.run_id} (artifacts 'report/')" if res.run_id else ""))
    return 0


def cmd_register(args: argparse.Namespace) -> int:
    from srgan_lib.registry import GateRule
    from srgan_lib.stages.register import RegisterSettings, run_register

    res = run_register(RegisterSettings(
        model=args.model, name=args.name, metrics=args.metrics, baseline=args.baseline, kind=args.kind,
        rule=GateRule(args.test_set, args.psnr_floor, args.min_gain), train_summary=args.train_summary,
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


def cmd_interpolate(args: argparse.Namespace) -> int:
    from srgan_lib.interpolate import interpolate_files

    for a in args.alpha:
        if not 0 <= a <= 1:
            raise CLIError(f"--alpha must be in [0, 1], got {a}")
    paths = interpolate_files(args.psnr, args.gan, args.alpha, args.out, fmt=args.format)
    print(f"interpolate: {len(paths)} network(s) between {args.psnr} (alpha 0) and {args.gan} (alpha 1)")
    for a, path in zip(args.alpha, paths, strict=True):
        print(f"  alpha {a:.2f} -> {path}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``srgan`` console script."""
    args = build_parser().parse_args(argv)
    telemetry_off()
    quiet_rank = int(os.environ.get("RANK", "0")) != 0  # under torchrun only rank 0 talks
    logging.basicConfig(
        level=logging.ERROR if quiet_rank else logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    if not args.verbose:  # MLflow's store set-up chatter ("Creating initial MLflow database tables...")
        for name in ("mlflow", "alembic"):
            logging.getLogger(name).setLevel(logging.WARNING)
        os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")  # MLflow resets its loggers when imported
    try:
        return int(args.func(args) or 0)
    except (UserError, FileNotFoundError, ValueError) as exc:
        print(f"srgan: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("srgan: interrupted; checkpoints written so far are kept (continue with --resume)", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
