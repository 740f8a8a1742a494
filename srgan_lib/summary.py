"""End-of-run summary printed by `make run`: the evaluation table of every method the pipeline evaluated."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from srgan_lib.cli import format_eval_table


def summarize(report_dir: str | Path = "reports/eval") -> str:
    """The evaluation tables of every ``reports/eval/*.json`` (one per method), ready to print."""
    files = sorted(Path(report_dir).glob("*.json"))
    if not files:
        return f"no evaluation results in {report_dir}/ yet: run `dvc repro`"
    table = format_eval_table(*(json.loads(f.read_text(encoding="utf-8")) for f in files))
    return table + f"\n\nper-image results: {report_dir}/<method>.json   metrics: `dvc metrics show`"


if __name__ == "__main__":
    print(summarize(sys.argv[1] if len(sys.argv) > 1 else "reports/eval"))
