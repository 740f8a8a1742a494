"""End-of-run summary printed by `srgan repro` (`make run`): the evaluation table of every method the pipeline
evaluated, and where to look next (DVC metrics, the MLflow UI, the Prefect UI)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from srgan_lib.report.tables import format_eval_table

NEXT_STEPS = """\
report: reports/report/report.md (table, comparison figures, perception-distortion plane; per_image.csv beside it)
per-image results: {report_dir}/<method>.json    metrics: `dvc metrics show`    curves: `dvc plots show`
MLflow UI:  make mlflow-ui    -> http://127.0.0.1:5000 (it prints the runs page of experiment 'srgan': select runs, \
Compare; Models: the registry)
Prefect UI: make prefect-up   -> http://127.0.0.1:4200, then `prefect deployment run 'train-esrgan/local'`; \
`make prefect-down` stops it"""


def eval_table(report_dir: str | Path = "reports/eval") -> str | None:
    """The evaluation table of every ``<report_dir>/*.json`` (one per method), or None when there are none yet."""
    files = sorted(Path(report_dir).glob("*.json"))
    if not files:
        return None
    return format_eval_table(*(json.loads(f.read_text(encoding="utf-8")) for f in files))


def registry_lines(registry_dir: str | Path = "reports/registry") -> list[str]:
    """One line per registered generator (the ``register`` stage's records): name, version, alias, gate score."""
    lines = []
    for f in sorted(Path(registry_dir).glob("*.json")):
        r = json.loads(f.read_text(encoding="utf-8"))
        gate = r.get("gate") or {}
        how = (f"{gate['gate.metric']} {float(gate['gate.score']):.3f}: {gate['gate.reason']}" if gate
               else "unchanged weights, already registered")
        lines.append(f"  models:/{r['name']}@{r['alias'] or '-'}  (version {r['version']}; {how})")
    return (["MLflow registry (srgan upscale --model models:/NAME@champion; mlflow models serve -m ...):", *lines]
            if lines else [])


def summarize(report_dir: str | Path = "reports/eval", *, table: bool = True,
              registry_dir: str | Path = "reports/registry") -> str:
    """The evaluation table (see :func:`eval_table`), the registered models and the next commands, to print."""
    lines = []
    if table:
        lines += [eval_table(report_dir) or f"no evaluation results in {report_dir}/ yet: run `make run`", ""]
    registered = registry_lines(registry_dir)
    if registered:
        lines += [*registered, ""]
    lines.append(NEXT_STEPS.format(report_dir=report_dir))
    return "\n".join(lines)


if __name__ == "__main__":
    print(summarize(sys.argv[1] if len(sys.argv) > 1 else "reports/eval"))
