"""`srgan report`: the evaluation report (papers' table, per-image CSV, figures, perception-distortion)."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from srgan_lib.commands import _entry
from srgan_lib.commands._entry import add_tracking
from srgan_lib.commands._params import add_params, fill_from_params
from srgan_lib.config.fields import default
from srgan_lib.config.sections import Report

if TYPE_CHECKING:
    from srgan_lib.config.params import Params

DESCRIPTION = ("Collect the evaluation results (srgan evaluate --json) into one folder: report.md with the table in "
               "the papers' layout (our rows and the published rows, labelled), table.md, per_image.csv, a "
               "zoomed-crop comparison figure per test image (from the SR images kept with --sr-dir) and the "
               "perception-distortion plane with the network-interpolation sweep. Logged to MLflow as a run "
               "'report'.")


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The command's arguments (on the dispatcher's sub-parser, or alone under ``python -m``)."""
    p.add_argument("--eval", nargs="+", required=True, action="extend", metavar="DIR",
                   help="folder(s) of <method>.json evaluation results (reports/eval reports/interp)")
    p.add_argument("--sr-dir", metavar="DIR", help="SR images as DIR/<method>/<set>/<image>.png (figures)")
    p.add_argument("--methods", nargs="+", default=None, metavar="M",
                   help="methods in the comparison figures, in order (default bicubic and every trained model)")
    p.add_argument("--crop", type=int, default=default(Report, "crop"),
                   help="side of the zoomed HR crop in pixels (default %(default)s)")
    p.add_argument("-o", "--out", required=True, metavar="DIR", help="output folder (report.md and its pictures)")
    add_tracking(p, "the report folder as the artifacts of a run 'report'")
    add_params(p, "report")


def _from_params(params: Params) -> dict[str, object]:
    """The crop and the store from params.yaml's `report` and `tracking`."""
    return {"crop": params.report.crop, "tracking_uri": params.tracking.uri, "experiment": params.tracking.experiment}


def run(args: argparse.Namespace) -> int:
    fill_from_params(args, add_arguments, _from_params)
    from srgan_lib.report.markdown import table_markdown
    from srgan_lib.report.stage import ReportSettings, run_report

    res = run_report(ReportSettings(eval_dirs=args.eval, out=args.out, sr_dir=args.sr_dir,
                                    figure_methods=args.methods, crop=args.crop,
                                    tracking_uri=args.tracking_uri, experiment=args.experiment))
    print(table_markdown(res.summary.table))
    print(f"report: {res.summary.report} ({len(res.summary.figures)} figures, {res.seconds:.1f} s)"
          + (f"; MLflow run {res.run_id} (artifacts 'report/')" if res.run_id else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(_entry.main(sys.modules[__name__], "srgan report"))
