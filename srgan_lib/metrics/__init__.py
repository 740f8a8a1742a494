"""The metric table: every metric the evaluation measures, defined once (label, digits, direction, convention).

Evaluation, the report, the CLI's table, the MLflow runs and the Prefect summary all read it, so a metric is added or
relabelled in one place. The implementations live beside it (``psnr_ssim``, ``niqe``, ``ma``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Metric:
    """One metric: how it is named and printed, and what it means."""

    name: str
    label: str
    digits: int
    full_reference: bool  # needs the HR image (False: no-reference, judged on the SR image alone)
    lower_is_better: bool | None  # None: neither (a signed bias such as the colour cast)
    convention: str  # how it is computed, for tables and run descriptions


METRICS: dict[str, Metric] = {m.name: m for m in (
    Metric("psnr_y", "PSNR-Y", 2, True, False,
           "PSNR (dB) on BT.601 Y (16-235, float), shave = scale: the papers' tables"),
    Metric("ssim_y", "SSIM-Y", 4, True, False,
           "SSIM on BT.601 Y, 11x11 Gaussian window sigma 1.5, valid region, shave = scale: the papers' tables"),
    Metric("psnr_rgb", "PSNR-RGB", 2, True, False, "PSNR (dB) on RGB, shave = scale: what BasicSR's model zoo reports"),
    Metric("ssim_rgb", "SSIM-RGB", 4, True, False, "SSIM averaged over R, G, B, shave = scale"),
    Metric("rmse_y", "RMSE-Y", 3, True, True,
           "RMSE on BT.601 Y (0-255), shave = scale: the distortion axis of the PIRM perception-distortion plane"),
    Metric("niqe", "NIQE", 3, False, True,
           "NIQE (MATLAB R2021a-calibrated) on the SR image's Y, shave = scale (PIRM 2018); lower is better"),
    Metric("ma", "Ma", 3, False, False,
           "Ma et al. (2017) score with the authors' trained model, Y, shave = scale (PIRM 2018); higher is better"),
    Metric("pi", "PI", 3, False, True, "perceptual index ((10 - Ma) + NIQE) / 2 (PIRM 2018); lower is better"),
    Metric("lpips", "LPIPS", 4, True, True,
           "LPIPS v0.1 (Zhang et al. 2018; the authors' linear layers on ImageNet AlexNet/VGG16) of SR vs HR, RGB, "
           "shave = scale; lower is better"),
    Metric("cast_r", "cast R", 2, True, None,
           "colour cast: mean of SR - HR on R (grey levels, 0-255), shave = scale; 0 is unbiased"),
    Metric("cast_g", "cast G", 2, True, None, "colour cast: mean of SR - HR on G (grey levels, 0-255), shave = scale"),
    Metric("cast_b", "cast B", 2, True, None, "colour cast: mean of SR - HR on B (grey levels, 0-255), shave = scale"),
)}
NAMES: tuple[str, ...] = tuple(METRICS)
CONVENTIONS: dict[str, str] = {name: m.convention for name, m in METRICS.items()}
# The columns of the papers' table (report) and of the command-line table, in order.
TABLE: tuple[str, ...] = ("psnr_y", "ssim_y", "psnr_rgb", "niqe", "ma", "pi")
CLI_TABLE: tuple[str, ...] = ("psnr_y", "ssim_y", "psnr_rgb", "ssim_rgb", "niqe", "ma", "pi", "lpips")
# What a short summary shows (the Prefect flow's artifact): distortion and perception, two each.
SUMMARY: tuple[str, ...] = ("psnr_y", "ssim_y", "niqe", "pi")
# The perception-distortion sweep's columns.
SWEEP: tuple[str, ...] = ("psnr_y", "rmse_y", "niqe", "pi")
# The one-line legend under every table of results.
LEGEND = ("PSNR/SSIM-Y: BT.601 Y, shave = scale (the papers' convention); -RGB: RGB, same shave (BasicSR's zoo); "
          "NIQE, PI, LPIPS: lower is better; Ma: higher is better")


def format_value(name: str, value: float | None, *, missing: str = "n/a") -> str:
    """``value`` with the metric's digits; ``missing`` where it was not measured, 'inf' for an infinite PSNR."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return missing
    return "inf" if math.isinf(value) else f"{value:.{METRICS[name].digits}f}"
