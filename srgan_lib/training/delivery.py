"""Which generator a finished run delivers (``deliver``): the last one, or the best validated one, so a fine-tune that
drifts into artifacts late in the run does not silently ship its last step. With ``deliver: psnr_y | niqe`` every
validation that beats all earlier ones (the EMA's score when the run has an EMA: what inference uses) writes its
generators to ``<run>/best.pth`` (atomically; tagged with the run's config hash and iteration); at the end the
stage delivers that file when the final validation did not beat it."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from srgan_lib.io.weights import load_weights, save_torch
from srgan_lib.training import TrainingError
from srgan_lib.training.loop import Callback

if TYPE_CHECKING:
    from srgan_lib.training.loop import Run

log = logging.getLogger("srgan.train")
BEST = "best.pth"
HIGHER_IS_BETTER = {"psnr_y": True, "niqe": False}


def run_meta(run: Run) -> dict[str, Any]:
    """What a delivered generator's ``meta`` records about the run, beside the recipe (trainer.meta)."""
    return {"train_images": run.train_images, "config_hash": run.cfg_hash, "precise_bn": run.common.precise_bn}


def metric_key(run: Run) -> str:
    """The validation column ``deliver`` ranks by: the EMA's when the run keeps one."""
    return f"ema_{run.cfg.deliver}" if run.trainer.ema is not None else run.cfg.deliver


def best_row(run: Run) -> dict[str, Any] | None:
    """The validation row with the best ``deliver`` metric (the earliest of equals), or None (``deliver: last``)."""
    if run.cfg.deliver == "last" or not run.val_history:
        return None
    key, sign = metric_key(run), 1 if HIGHER_IS_BETTER[run.cfg.deliver] else -1
    rows = [r for r in run.val_history if key in r]
    return max(rows, key=lambda r: (sign * r[key], -r["iteration"])) if rows else None


class KeepBest(Callback):
    """Writes ``best.pth`` whenever a validation beats every earlier one (``deliver`` other than ``last``)."""

    def on_start(self, run: Run) -> None:
        if run.start_iter == 0:  # a fresh run: an earlier run's best is not ours
            (run.run_dir / BEST).unlink(missing_ok=True)

    def on_validation(self, run: Run, iteration: int, row: dict[str, float], picture: Path) -> None:
        key = metric_key(run)
        if key not in row:
            raise TrainingError(f"{run.stage}: deliver: {run.cfg.deliver} needs {run.cfg.deliver} in the validation, "
                                f"which it does not have (NIQE needs crops of two 96-px blocks: train.val_crop >= 200)")
        if best_row(run) is row and iteration != run.total:  # the final one is delivered from the final generators
            meta = {"iteration": iteration, "config_hash": run.cfg_hash, key: row[key]}
            save_torch(run.trainer.generator_checkpoint({**run_meta(run), "delivered": meta}), run.run_dir / BEST)


def delivered_checkpoint(run: Run, final: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """The generator checkpoint to deliver (``final``, or ``best.pth`` when an earlier validation beat the final one)
    and the validation row it was picked by (None: ``deliver: last``)."""
    row = best_row(run)
    if row is None:
        return final, None
    key = metric_key(run)
    if row["iteration"] == run.total:
        final["meta"]["delivered"] = {"iteration": run.total, "config_hash": run.cfg_hash, key: row[key]}
        return final, row
    path = run.run_dir / BEST
    best = load_weights(path, "best validated generator") if path.is_file() else {}
    meta = best.get("meta", {}).get("delivered", {}) if isinstance(best, dict) else {}
    if meta.get("config_hash") != run.cfg_hash or meta.get("iteration") != row["iteration"]:
        raise TrainingError(f"{run.stage}: the best validation was at iteration {row['iteration']}, but '{path}' "
                            f"holds {meta or 'nothing usable'}; re-run with --restart (or deliver: last)")
    log.info("%s: delivering the generator of iteration %d (best %s %.4g; the final one: %.4g)", run.stage,
             row["iteration"], key, row[key], run.val_history[-1].get(key, float("nan")))
    return best, row
