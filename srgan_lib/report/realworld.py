"""The report's real-world part: the sets whose LR is their own (``Set5-RW``: the degradation chain, not bicubic) get
a table of their own (PSNR/SSIM on Y, NIQE) and one figure per image: the degraded LR, each model, the HR. The
papers' table, colour casts and perception-distortion plane stay on the bicubic sets the papers report."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from srgan_lib.metrics import METRICS, format_value
from srgan_lib.report.figures import comparison_figures
from srgan_lib.report.references import display_name
from srgan_lib.report.tables import Evaluations

COLUMNS = ("psnr_y", "ssim_y", "niqe")


def split_realworld(evals: Evaluations) -> tuple[Evaluations, Evaluations]:
    """(the bicubic sets' results, the real-world sets' results) of every method; a set is real-world when its LR was
    its own (``lr_source`` 'own')."""
    rw = {s for sets in evals.values() for s, r in sets.items() if r.get("lr_source") == "own"}
    split = ({m: {s: r for s, r in sets.items() if s not in rw} for m, sets in evals.items()},
             {m: {s: r for s, r in sets.items() if s in rw} for m, sets in evals.items()})
    return split[0], {m: sets for m, sets in split[1].items() if sets}


def realworld_table(rw: Evaluations) -> pd.DataFrame:
    """Rows = methods, columns = set x (PSNR-Y, SSIM-Y, NIQE), formatted."""
    sets = list(dict.fromkeys(s for sets in rw.values() for s in sets))
    rows = {display_name(m): [format_value(k, sets_[s][k]) if s in sets_ and k in sets_[s] else "-"
                              for s in sets for k in COLUMNS] for m, sets_ in rw.items()}
    header = [f"{s} {METRICS[k].label}" for s in sets for k in COLUMNS]
    return pd.DataFrame.from_dict(rows, orient="index", columns=header)


def realworld_lines(rw: Evaluations, sr_dir: Path | None, figs: Path, methods: Sequence[str], crop: int
                    ) -> tuple[list[str], list[Path]]:
    """The report's real-world section (nothing without real-world sets) and its figures."""
    if not rw:
        return [], []
    drawn = comparison_figures(rw, sr_dir, figs, methods, crop) if sr_dir is not None else []
    lines = ["", "## Real-world sets", "",
             "The test sets through params.yaml's `degradation` chain (Real-ESRGAN's second-order blur, resize, "
             "noise and JPEG; one fixed draw per image): what a photograph looks like, not a bicubic reduction. "
             "Every method gets the same degraded LR.", "", realworld_table(rw).to_markdown(disable_numparse=True)]
    if drawn:
        lines += ["", "Crops: the degraded LR (enlarged), each model, the HR; under each: PSNR-Y / NIQE of the whole "
                  "image.", "", *[md for _, md in drawn]]
    return lines, [p for p, _ in drawn]
