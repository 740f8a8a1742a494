"""The evaluation report: the papers' table, the per-image CSV, comparison figures and the perception-distortion plane.

Reads what the evaluation stages wrote (``reports/eval/<method>.json``, ``reports/interp/interp_<alpha>.json`` and the
SR images under ``reports/sr/<method>/<set>/``) and writes one self-contained folder: ``report.md`` with its pictures
beside it, ``table.md``, ``per_image.csv``, ``figures/<set>_<image>.png`` (the papers' zoomed-crop comparisons) and
``perception_distortion.png`` (ESRGAN Fig. 2: RMSE against PI, the interpolation sweep as a curve).
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from srgan_lib.config.fields import default
from srgan_lib.config.sections import BASELINE_NAMES, Report
from srgan_lib.io.images import atomic_path, write_text
from srgan_lib.metrics import CONVENTIONS, METRICS, SWEEP, TABLE, format_value
from srgan_lib.report.figures import comparison_figures, perception_distortion_figure
from srgan_lib.report.realworld import realworld_lines, split_realworld
from srgan_lib.report.references import PAPER_NAMES, PAPER_ROWS, display_name
from srgan_lib.report.tables import Evaluations


def load_evaluations(*folders: str | Path) -> Evaluations:
    """Every ``<folder>/<method>.json`` written by ``srgan evaluate --json``, in a stable method order."""
    evals: Evaluations = {}
    for folder in folders:
        for path in sorted(Path(folder).glob("*.json")):
            data = json.loads(path.read_text(encoding="utf-8"))
            method = next(iter(data.values()))["model"]
            evals[method] = data
    order = {m: i for i, m in enumerate(PAPER_NAMES)}
    return dict(sorted(evals.items(), key=lambda kv: (kv[0].startswith("interp_"), order.get(kv[0], 99), kv[0])))


def per_image_frame(evals: Evaluations) -> pd.DataFrame:
    """One row per (method, set, image) with every metric measured."""
    rows = [{"method": m, "set": s, "image": name, **values}
            for m, sets in evals.items() for s, r in sets.items() for name, values in r["images"].items()]
    return pd.DataFrame(rows)


def means_frame(evals: Evaluations) -> pd.DataFrame:
    """Per-set means: index method, columns (set, metric); Ma/PI NaN where unavailable."""
    data = {m: {(s, k): r.get(k, math.nan) for s, r in sets.items() for k in dict.fromkeys((*TABLE, *SWEEP))}
            for m, sets in evals.items()}
    frame = pd.DataFrame.from_dict(data, orient="index")
    frame.columns = pd.MultiIndex.from_tuples(frame.columns, names=["set", "metric"])
    return frame


def paper_table(evals: Evaluations, *, include_interp: bool = False) -> pd.DataFrame:
    """The papers' layout: rows = methods (ours, then the published rows labelled '(paper)'), columns = set x metric,
    formatted as strings ('n/a' where a metric was unavailable, '-' where a paper gives no number)."""
    means = means_frame({m: v for m, v in evals.items() if include_interp or not m.startswith("interp_")})
    sets = list(dict.fromkeys(s for s, _ in means.columns))
    columns = [(s, k) for s in sets for k in TABLE]
    rows = {}
    for method, row in means.iterrows():
        rows[f"{display_name(str(method))} (ours)"] = [
            format_value(c[1], None if pd.isna(row.get(c)) else float(row[c])) for c in columns]
    for method, ref in PAPER_ROWS.items():
        if method not in means.index and method != "bicubic":
            continue
        cells = []
        for s, k in columns:
            value = ref["sets"].get(s)
            cells.append(format_value(k, value[0]) if value and k == "psnr_y" else
                         format_value(k, value[1]) if value and k == "ssim_y" else "-")
        rows[ref["label"]] = cells
    header = pd.MultiIndex.from_tuples([(s, METRICS[k].label) for s, k in columns])
    return pd.DataFrame.from_dict(rows, orient="index", columns=header)


def cast_table(evals: Evaluations) -> pd.DataFrame:
    """Per method and set: the colour cast (mean SR - HR per channel) as 'R / G / B' strings."""
    rows = {}
    for method, sets in evals.items():
        rows[display_name(method)] = {
            s: ("n/a" if "cast_r" not in r else f"{r['cast_r']:+.2f} / {r['cast_g']:+.2f} / {r['cast_b']:+.2f}")
            for s, r in sets.items()}
    frame = pd.DataFrame.from_dict(rows, orient="index")
    frame.columns = [f"{c} R / G / B" for c in frame.columns]
    return frame


def table_markdown(table: pd.DataFrame) -> str:
    flat = table.copy()
    flat.columns = [f"{s} {m}" for s, m in table.columns]
    return flat.to_markdown(colalign=("left", *["right"] * len(flat.columns)), disable_numparse=True)


# --------------------------------------------------------------------------------------------------------- report


@dataclass
class ReportSummary:
    """What :func:`write_report` produced."""

    report: Path
    table: pd.DataFrame
    figures: list[Path] = field(default_factory=list)
    perceptual_axis: str = "niqe"


def _interpolation_lines(means: pd.DataFrame, interp: list[str]) -> list[str]:
    """The network interpolation sweep's table and, per set, whether NIQE falls monotonically along it."""
    sweep = means.loc[interp]
    cols = [(s, k) for s in dict.fromkeys(s for s, _ in means.columns) for k in SWEEP]
    sweep_tab = pd.DataFrame({f"{s} {METRICS[k].label}":
                              [format_value(k, None if pd.isna(v) else float(v)) for v in sweep[(s, k)]]
                              for s, k in cols},
                             index=[display_name(m) for m in interp])
    lines = ["", "### Network interpolation sweep", "", sweep_tab.to_markdown(disable_numparse=True), ""]
    for set_name in dict.fromkeys(s for s, _ in means.columns):
        niqe = [float(v) for v in sweep[(set_name, "niqe")]]
        trend = ("falls monotonically" if all(b < a for a, b in itertools.pairwise(niqe))
                 else "does not fall monotonically")
        lines.append(f"- {set_name}: NIQE {trend} from α={interp[0].removeprefix('interp_')} "
                     f"({niqe[0]:.3f}) to α={interp[-1].removeprefix('interp_')} ({niqe[-1]:.3f}).")
    return lines


def write_report(eval_dirs: Sequence[str | Path], out_dir: str | Path, *, sr_dir: str | Path | None = None,
                 figure_methods: Sequence[str] | None = None, crop: int = default(Report, "crop")) -> ReportSummary:
    """Write the report folder (see the module docstring) from the evaluation results; returns what it wrote.
    ``figure_methods``: the methods in the comparison figures (default: bicubic and every trained model)."""
    out, figs = Path(out_dir), Path(out_dir) / "figures"
    every = load_evaluations(*eval_dirs)
    evals, rw = split_realworld(every)  # the papers' sets here; the real-world ones in a section of their own
    if figure_methods is None:
        figure_methods = ["bicubic", *(m for m in evals if m not in BASELINE_NAMES and not m.startswith("interp_"))]
    if not every:
        raise FileNotFoundError(f"no evaluation results (*.json) in {', '.join(map(str, eval_dirs))}: run the "
                                "evaluate stages first (`srgan repro`)")
    out.mkdir(parents=True, exist_ok=True)
    frame = per_image_frame(every)
    with atomic_path(out / "per_image.csv") as tmp:
        frame.to_csv(tmp, index=False, float_format="%.6g")
    table = paper_table(evals)
    write_text(out / "table.md", table_markdown(table) + "\n")
    means = means_frame(evals)
    pd_path, axis = perception_distortion_figure(out / "perception_distortion.png", means)
    figures = [pd_path]
    any_set = next(iter(evals.values()))
    figure_md: list[str] = []
    if sr_dir is not None:
        drawn = comparison_figures(evals, Path(sr_dir), figs, figure_methods, crop)
        figures += [path for path, _ in drawn]
        figure_md = [md for _, md in drawn]
    reasons = {k: v for r in any_set.values() for k, v in r.get("unavailable", {}).items()}
    interp = [m for m in evals if m.startswith("interp_")]
    lines = [
        "# srgan evaluation report",
        "",
        f"Methods: {', '.join(display_name(m) for m in evals)}. Sets: {', '.join(any_set)} "
        f"(x{next(iter(any_set.values()))['scale']}, LR: {next(iter(any_set.values()))['lr_source']}, "
        f"kernel {next(iter(any_set.values()))['lr_kernel']}). Per-image values: [per_image.csv](per_image.csv).",
        "",
        "## Results in the papers' layout",
        "",
        table_markdown(table),
        "",
        "Rows marked *(paper)* are the published numbers (PSNR/SSIM on Y, shave 4), printed beside ours for "
        "comparison; `-`: the paper gives no number.",
        "",
        *[f"- **{k}**: {v}" for k, v in CONVENTIONS.items()],
    ]
    configs = {m: next(iter(sets.values())).get("configuration") for m, sets in evals.items()
               if not m.startswith("interp_")}
    if any(configs.values()):
        lines += ["", "### What each row is", "",
                  *[f"- **{display_name(m)} (ours)**: {c}" for m, c in configs.items() if c]]
    lines += ["", "### Colour cast", "", "Mean of SR - HR per channel (grey levels on 0-255, shave = scale), averaged "
              "over each set's images: a tint or brightness shift that PSNR hides (0 is unbiased).", "",
              cast_table(evals).to_markdown(disable_numparse=True)]
    if reasons:
        lines += ["", f"**n/a** (Ma, PI): {reasons.get('ma', '')}. Nothing is estimated in their place; see the "
                  "docs/evaluation.md, *Ma's score and the perceptual index*, for how to obtain the authors' model."]
    lines += ["", "## Perception-distortion plane", "",
              f"RMSE against {'the perceptual index' if axis == 'pi' else 'NIQE (PI unavailable)'}; lower-left is "
              "better. The interpolation sweep goes from the PSNR-oriented RRDB (α=0) to ESRGAN (α=1) "
              "(ESRGAN paper, Fig. 2 and Sec. 4.5).", "", "![perception-distortion](perception_distortion.png)"]
    if interp:
        lines += _interpolation_lines(means, interp)
    if figure_md:
        lines += ["", "## Comparisons", "", "Full image with the zoomed region in red; under each crop: PSNR-Y / NIQE "
                  "of the whole image.", "", *figure_md]
    rw_lines, rw_figures = realworld_lines(rw, Path(sr_dir) if sr_dir else None, figs, figure_methods, crop)
    lines, figures = lines + rw_lines, figures + rw_figures
    report = write_text(out / "report.md", "\n".join(lines) + "\n")
    return ReportSummary(report, table, figures, axis)
