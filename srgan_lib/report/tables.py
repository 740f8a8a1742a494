"""Result tables as text: the one formatter of evaluation results for the terminal (``srgan evaluate``, the end of
``make run``); the report's Markdown tables and the Prefect summary read the same metric table (labels, digits)."""

from __future__ import annotations

from srgan_lib.metrics import CLI_TABLE, LEGEND, METRICS, format_value
from srgan_lib.report.references import PAPER_ROWS

Evaluations = dict[str, dict[str, dict]]  # method -> set -> evaluation result (what `srgan evaluate --json` writes)
_WIDTH = {"psnr_y": 7, "ssim_y": 7, "psnr_rgb": 8, "ssim_rgb": 8, "niqe": 6, "ma": 6, "pi": 6, "lpips": 6}
_GAP_BEFORE = {"psnr_rgb", "niqe"}  # two spaces before a new group of columns


def _cells(values: dict[str, str]) -> str:
    return "".join(("  " if k in _GAP_BEFORE else " ") + f"{values[k]:>{_WIDTH[k]}}" for k in CLI_TABLE)


def format_eval_table(*evaluations: dict[str, dict]) -> str:
    """Human-readable table of one or more evaluations (set -> metrics each), rows grouped by set, with the paper's
    row beside ours where one is known. Ma and PI read 'n/a' where the Ma model was unavailable, LPIPS where its
    weights were."""
    lines = [f"{'set':<10} {'model':<12} {'n':>3} " + _cells({k: METRICS[k].label for k in CLI_TABLE})
             + "   paper PSNR-Y/SSIM-Y"]
    rows = [(name, r) for ev in evaluations for name, r in ev.items()]
    order = list(dict.fromkeys(name for name, _ in rows))
    reasons = {}
    for name, r in sorted(rows, key=lambda nr: order.index(nr[0])):
        ref = PAPER_ROWS.get(r["model"], {}).get("sets", {}).get(name)
        paper = f"{format_value('psnr_y', ref[0])} / {format_value('ssim_y', ref[1])}" if ref else "-"
        reasons.update(r.get("unavailable", {}))
        lines.append(f"{name:<10} {r['model']:<12} {r['n_images']:>3} "
                     + _cells({k: format_value(k, r.get(k)) for k in CLI_TABLE}) + f"   {paper}")
    lines.append(LEGEND)
    if "ma" in reasons:
        lines.append(f"Ma, PI n/a: {reasons['ma']}")
    if "lpips" in reasons:
        lines.append(f"LPIPS n/a: {reasons['lpips']}")
    return "\n".join(lines)
