"""The ``report`` stage: the report folder from the evaluation results (``srgan_lib.report.markdown``), logged as the
artifacts of an MLflow run ``report``. ``srgan report`` and ``dvc.yaml`` run this."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from srgan_lib import tracking
from srgan_lib.config.fields import default
from srgan_lib.config.sections import Report, Tracking
from srgan_lib.report.markdown import ReportSummary, write_report


@dataclass(frozen=True)
class ReportSettings:
    """Where the results are, which methods the figures show, where the report goes (flags of ``srgan report``)."""

    eval_dirs: Sequence[str]
    out: str
    sr_dir: str | None = None
    figure_methods: Sequence[str] | None = None  # default: bicubic and every trained model
    crop: int = default(Report, "crop")
    tracking_uri: str | None = None
    experiment: str = default(Tracking, "experiment")


@dataclass
class ReportResult:
    summary: ReportSummary
    seconds: float
    run_id: str | None = None
    artifacts: list[str] = field(default_factory=list)


def run_report(s: ReportSettings) -> ReportResult:
    """Write the report, then log its folder to MLflow (a failed upload marks the run FAILED and re-raises)."""
    start = time.perf_counter()
    summary = write_report(s.eval_dirs, s.out, sr_dir=s.sr_dir, figure_methods=s.figure_methods, crop=s.crop)
    run = tracking.Tracker(tracking.resolve_uri(s.tracking_uri or "none"), s.experiment, "report",
                           tags={"srgan.kind": "report"})
    try:
        run.set_tags({"report.perceptual_axis": summary.perceptual_axis})
        run.log_artifacts([s.out], "report")
    except BaseException:
        run.end("FAILED")
        raise
    run.end()
    return ReportResult(summary, time.perf_counter() - start, run.run_id, [s.out])
