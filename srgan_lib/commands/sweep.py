"""`srgan sweep`: a parameter grid as DVC experiments on N queue workers, compared in MLflow, the best gated."""

from __future__ import annotations

import argparse
import sys

from srgan_lib.commands import _entry

DESCRIPTION = (
    "Sweep a grid of params.yaml values: every combination is validated first (an unknown key, a wrong type, an "
    "empty grid or more than --max combinations is refused before any stage runs), the stages no swept key affects "
    "run once in the workspace, then one DVC experiment per combination (`dvc exp run --queue`) reproduces only the "
    "stages the keys affect, on --jobs DVC queue workers. Each experiment is an MLflow child run of one sweep run. "
    "The end: a table (combination, metrics, experiment name for `dvc exp apply NAME`, MLflow run), "
    "reports/sweeps/<id>/ (sweep.md, sweep.csv, the perception-distortion plane with its Pareto front), and the "
    "best combination by --metric offered to the registry gate of params.yaml `register`. Interrupted (Ctrl-C)? "
    "Run the same command again: finished combinations are not run again.")
EPILOG = ("examples:\n"
          "  srgan sweep esrgan.gan.weight=1e-3,5e-3,1e-2 --jobs 2\n"
          "  srgan sweep esrgan.lr=5e-5,1e-4 esrgan.perceptual.weight=0.5,1 --metric pi\n"
          "  srgan sweep srresnet.lr=2e-3,4e-3 --metric psnr_y --no-gate")


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The command's arguments (on the dispatcher's sub-parser, or alone under ``python -m``)."""
    import textwrap

    from srgan_lib.orchestration.sweep.grid import MAX_COMBINATIONS

    p.description, p.epilog = textwrap.fill(DESCRIPTION, 100), EPILOG
    p.formatter_class = argparse.RawDescriptionHelpFormatter  # keeps the examples' lines
    p.add_argument("grid", nargs="+", metavar="SECTION.KEY=V1,V2",
                   help="one axis per key; values are YAML (1e-3, [1, 2], pil), commas inside brackets do not split")
    p.add_argument("--stages", nargs="+", default=[], metavar="STAGE",
                   help="what each experiment reproduces (default: the evaluation of every generator the keys change)")
    p.add_argument("-j", "--jobs", type=int, default=1, help="DVC queue workers, one experiment each (default 1)")
    p.add_argument("--metric", default="niqe",
                   help="what picks the best: psnr_y, ssim_y (higher wins), niqe, pi, lpips (lower wins); default niqe")
    p.add_argument("--set", dest="test_set", default=None,
                   help="test set the metric is read on (default: params.yaml register.set)")
    p.add_argument("--max", dest="maximum", type=int, default=MAX_COMBINATIONS,
                   help="refuse a grid with more combinations than this (default %(default)s)")
    p.add_argument("--no-gate", dest="gate", action="store_false", help="compare only: register nothing")


def run(args: argparse.Namespace) -> int:
    from srgan_lib.orchestration.sweep.run import SweepSettings, run_sweep

    try:
        res = run_sweep(SweepSettings(grid=tuple(args.grid), stages=tuple(args.stages), jobs=args.jobs,
                                      metric=args.metric, test_set=args.test_set, maximum=args.maximum,
                                      gate=args.gate), say=lambda line: print(line, flush=True))
    except KeyboardInterrupt:
        print("\nsrgan sweep: interrupted. The running experiments were stopped and the queued ones dropped; run the "
              "same command again to continue (finished combinations are kept).", file=sys.stderr)
        return 130
    print(f"\nsweep {res.ident}: {sum(o.status == 'success' for o in res.outcomes)} of {len(res.outcomes)} "
          f"combinations succeeded\n")
    print(res.table.to_string(index=False))
    print("\n`dvc exp show` compares the experiments; `dvc exp apply NAME` brings one into the workspace.")
    print(f"table and figures: {res.folder}/ (sweep.md, sweep.csv, pd_plane_*.png)")
    if res.link:
        print(f"MLflow: {res.link} (make mlflow-ui; select the child runs and Compare)")
    for line in res.gate:
        print(f"gate: {line}")
    failed = [o for o in res.outcomes if o.status != "success"]
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(_entry.main(sys.modules[__name__], "srgan sweep"))
