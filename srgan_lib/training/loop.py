"""The training loop and what watches it: the loop steps the :class:`~srgan_lib.training.trainer.Trainer` and emits
events; the progress bar, the history CSV, validation, checkpoints and MLflow are callbacks, one concern each (the way
DVC's example projects attach trackers to a loop). :func:`srgan_lib.training.stage.train_stage` wires them up.

Events, in order: ``on_start``; per iteration ``on_log`` (every ``log_every``, with the history row) and
``on_iteration``; ``on_validation`` (a validation row and its picture) and ``on_checkpoint`` when those happen;
``on_end`` with the final status (``FINISHED``, ``FAILED``, ``KILLED``), also after an error.
"""

from __future__ import annotations

import csv
import io
import logging
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from srgan_lib.io.images import write_json, write_png, write_text
from srgan_lib.training import Diverged, NonFiniteLoss
from srgan_lib.training import checkpoint as ckpt_io
from srgan_lib.training.divergence import diverged

if TYPE_CHECKING:
    from srgan_lib.config.training import Recipe, Train
    from srgan_lib.tracking import Tracker
    from srgan_lib.training.distributed import Dist
    from srgan_lib.training.trainer import Trainer
    from srgan_lib.training.validation import Validator

log = logging.getLogger("srgan.train")
SHOWN_TERMS = ("pixel", "perceptual", "gan_g", "gan_d", "total_g")  # in progress lines and `srgan train`'s summary
# Measured, not computed: kept in the checkpoint, MLflow and the logs, never in a DVC output (outputs are a function of
# the inputs, byte-identical on every clone and host)
WALL_CLOCK = ("it_per_s",)
RUN_RECORD = "run.json"  # <train.out>/<stage>/run.json: this host's MLflow run id and speed (not a DVC output)


def write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    """Rows as CSV (atomically), the columns in order of first appearance; nothing for no rows."""
    if not rows:
        return
    fields: list[str] = []
    for r in rows:
        fields.extend(k for k in r if k not in fields)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=fields)
    writer.writeheader()
    writer.writerows(rows)
    write_text(path, buf.getvalue())


@dataclass
class Run:
    """What the loop and its callbacks share about one stage's run (the checkpoint is made from it)."""

    stage: str
    cfg: Recipe
    common: Train
    run_dir: Path
    trainer: Trainer
    ddp: Dist
    device: torch.device
    cfg_hash: str
    start_iter: int
    end_iter: int
    loader: Any  # (LR, HR) uint8 batches for iterations start_iter + 1 .. end_iter
    train_images: int
    history: list[dict[str, Any]] = field(default_factory=list)
    val_history: list[dict[str, Any]] = field(default_factory=list)
    mlflow_run_id: str | None = None
    last_terms: dict[str, float] = field(default_factory=dict)
    callbacks: list[Callback] = field(default_factory=list)
    own_lr: Any = None  # iteration -> which samples of this rank's batch have their own LR (paired data), or None

    @property
    def total(self) -> int:
        return int(self.cfg.iterations)

    def emit(self, event: str, *args: Any) -> None:
        for cb in self.callbacks:
            getattr(cb, event)(self, *args)


class Callback:
    """A watcher of the loop; every hook does nothing unless overridden."""

    def on_start(self, run: Run) -> None:
        pass

    def on_log(self, run: Run, iteration: int, row: dict[str, float]) -> None:
        pass

    def on_iteration(self, run: Run, iteration: int) -> None:
        pass

    def on_validation(self, run: Run, iteration: int, row: dict[str, float], picture: Path) -> None:
        pass

    def on_checkpoint(self, run: Run, iteration: int) -> None:
        pass

    def on_end(self, run: Run, status: str) -> None:
        pass


class Progress(Callback):
    """A progress bar on a terminal; otherwise a concise log line every 30 s (and at the end)."""

    def __init__(self, run: Run, progress: bool | None) -> None:
        self.bar = tqdm(total=run.total, initial=run.start_iter, desc=run.stage, unit="it", dynamic_ncols=True,
                        disable=(not run.ddp.main) or progress is False
                        or (progress is None and not sys.stderr.isatty()))
        self.last_line = time.perf_counter()

    def on_start(self, run: Run) -> None:
        if run.ddp.main:
            log.info("%s: iterations %d..%d of %d, batch %d, HR %d, %d training images, device %s, %s", run.stage,
                     run.start_iter + 1, run.end_iter, run.total, run.cfg.batch_size, run.cfg.hr_size,
                     run.train_images, run.device, run.trainer.compute.describe())

    def on_log(self, run: Run, iteration: int, row: dict[str, float]) -> None:
        shown = {k: f"{v:.4g}" for k, v in row.items() if k in SHOWN_TERMS} | {"lr": f"{row['lr']:.1e}"}
        self.bar.set_postfix(shown, refresh=False)
        now = time.perf_counter()
        if self.bar.disable and run.ddp.main and (now - self.last_line > 30 or iteration == run.end_iter):
            self.last_line = now
            log.info("%s: iteration %d/%d  %s  %.2f it/s", run.stage, iteration, run.total,
                     "  ".join(f"{k} {v}" for k, v in shown.items()), row["it_per_s"])

    def on_iteration(self, run: Run, iteration: int) -> None:
        self.bar.update(1)

    def on_end(self, run: Run, status: str) -> None:
        self.bar.close()


def write_history(run: Run) -> None:
    """``history.csv``: the logged losses and learning rate per iteration (the speed is in MLflow: see
    :data:`WALL_CLOCK`)."""
    write_csv(run.run_dir / "history.csv", [{k: v for k, v in row.items() if k not in WALL_CLOCK}
                                            for row in run.history])


class HistoryCSV(Callback):
    """``history.csv`` beside every checkpoint and at the end (:func:`write_history`)."""

    def on_checkpoint(self, run: Run, iteration: int) -> None:
        if run.ddp.main:
            write_history(run)

    def on_end(self, run: Run, status: str) -> None:
        # stopped early, or failed (the rows that led to a divergence are what to look at); FINISHED writes it
        # before uploading it
        if run.ddp.main and status in ("KILLED", "FAILED"):
            write_history(run)


class Validation(Callback):
    """PSNR-Y/SSIM-Y of the live and EMA generators every ``val_every`` iterations (main process), a picture per
    validation, ``validation.csv``; one row per iteration, also when a finished run writes its outputs again."""

    def __init__(self, validator: Validator | None) -> None:
        self.validator = validator

    def validate(self, run: Run, iteration: int, nets: tuple[nn.Module, nn.Module | None] | None = None
                 ) -> dict[str, float]:
        if not self.validator:
            return {}
        t = run.trainer
        g, ema_net = nets or (t.net_g, t.ema.model if t.ema is not None else None)
        scores, picture = self.validator.run(g, t.out_range, run.device, t.compute)
        row = {"iteration": iteration, **scores}
        if ema_net is not None:
            ema_scores, ema_picture = self.validator.run(ema_net, t.out_range, run.device, t.compute)
            row.update({f"ema_{k}": v for k, v in ema_scores.items()})
            picture = np.concatenate([picture, np.full((4, picture.shape[1], 3), 255, np.uint8), ema_picture])
        run.val_history[:] = [r for r in run.val_history if r["iteration"] != iteration] + [row]
        image = write_png(run.run_dir / "val" / f"iter_{iteration:08d}.png", picture)
        write_csv(run.run_dir / "validation.csv", run.val_history)
        run.emit("on_validation", iteration, row, image)
        return row

    def on_iteration(self, run: Run, iteration: int) -> None:
        every = run.cfg.val_every
        if run.ddp.main and every and iteration % every == 0 and iteration != run.total:
            self.validate(run, iteration)


class Checkpointing(Callback):
    """A resumable checkpoint every ``ckpt_every`` iterations (main process writes; every rank waits for it)."""

    def save(self, run: Run, iteration: int) -> None:
        if run.ddp.main:
            t = run.trainer
            if not t.weights_finite():
                raise NonFiniteLoss(f"generator weights are not finite at iteration {iteration}; checkpoint not "
                                    "written")
            config = {run.stage: run.cfg.model_dump(), "train": run.common.model_dump()}
            state = {**t.state(), "rng": ckpt_io.rng_state(), "config": config,
                     "config_hash": run.cfg_hash, "stage": run.stage, "history": run.history,
                     "val_history": run.val_history, "mlflow_run_id": run.mlflow_run_id,
                     "sampler": {"seed": run.common.seed, "next_iteration": iteration + 1}}
            ckpt_io.save_checkpoint(run.run_dir, iteration, state, run.common.keep_checkpoints)

    def on_iteration(self, run: Run, iteration: int) -> None:
        if iteration % run.cfg.ckpt_every == 0 and iteration != run.total:
            self.save(run, iteration)
            run.emit("on_checkpoint", iteration)
            run.ddp.barrier()


class MLflowTracking(Callback):
    """The stage's MLflow run: parameters and tags at the start, losses, validation scores and pictures as they
    come, the generator and the CSVs at the end, closed with the final status."""

    def __init__(self, tracker: Tracker) -> None:
        self.tracker = tracker

    def on_log(self, run: Run, iteration: int, row: dict[str, float]) -> None:
        terms = {f"loss_{k}": v for k, v in row.items() if k not in ("iteration", "lr", "it_per_s")}
        self.tracker.log_metrics({**terms, "lr": row["lr"], "it_per_s": row["it_per_s"]}, iteration)

    def on_validation(self, run: Run, iteration: int, row: dict[str, float], picture: Path) -> None:
        self.tracker.log_metrics({f"val_{k}": v for k, v in row.items() if k != "iteration"}, iteration, flush=True)
        if self.tracker.active:  # per step: the UI's image slider shows the output as training goes on
            from PIL import Image

            with Image.open(picture) as im:
                self.tracker.log_image(im.convert("RGB"), "validation", iteration)

    def log_final(self, run: Run, model_path: Path, seconds_per_it: float) -> None:
        self.tracker.log_metrics({"seconds_per_iteration": seconds_per_it}, run.total)
        self.tracker.log_artifacts([model_path], "model")
        self.tracker.log_artifacts([run.run_dir / "history.csv", run.run_dir / "validation.csv",
                                    run.run_dir / "summary.json"])

    def on_end(self, run: Run, status: str) -> None:
        self.tracker.end(status)


class StopRequest:
    """A polite stop (SIGTERM from a scheduler, single process): the loop finishes the step it is in, writes a
    checkpoint of it and stops as KILLED, so ``--auto-resume`` loses nothing. Outside the loop, under torchrun (ranks
    would stop at different steps and wait on each other) or on a second SIGTERM, the stop is immediate."""

    def __init__(self) -> None:
        self.in_loop = False
        self.requested = False

    def polite(self) -> bool:
        """Whether a stop asked now can wait for the step boundary (else the caller stops at once)."""
        return self.in_loop and not self.requested


STOP = StopRequest()


def run_loop(run: Run) -> None:
    """Iterations ``start_iter + 1 .. end_iter`` of the run, batches from ``loader``; every event to the callbacks.
    A non-finite loss stops it with the last good checkpoint named; a :data:`STOP` request after a checkpoint."""
    STOP.requested, STOP.in_loop = False, run.ddp.world_size == 1
    try:
        _iterations(run)
    finally:
        STOP.in_loop = False


def _stop_here(run: Run, it: int) -> None:
    """The step is done: checkpoint it (unless the cadence just did) and stop as KILLED."""
    if it % run.cfg.ckpt_every:
        run.trainer.sync()
        Checkpointing().save(run, it)
        run.emit("on_checkpoint", it)
    log.warning("%s: stopped by SIGTERM after iteration %d (checkpoint written; --auto-resume continues)",
                run.stage, it)
    raise KeyboardInterrupt(f"SIGTERM after iteration {it}")


def _iterations(run: Run) -> None:
    trainer, cfg = run.trainer, run.cfg
    window_t, window_n = time.perf_counter(), 0
    for it, (lr_u8, hr_u8) in zip(range(run.start_iter + 1, run.end_iter + 1), run.loader, strict=True):
        lr_now = trainer.set_lr(it)
        try:
            terms = trainer.step(lr_u8, hr_u8, it, run.own_lr(it) if run.own_lr else None)
            if it % trainer.sync_every == 0 or it % cfg.log_every == 0 or it % cfg.ckpt_every == 0 \
                    or it == run.end_iter:
                trainer.sync()
        except NonFiniteLoss as exc:
            last = ckpt_io.list_checkpoints(run.run_dir)
            keep = f"the last good checkpoint is '{last[-1][1]}'" if last else "no checkpoint was written yet"
            raise NonFiniteLoss(
                f"{run.stage}: {exc} at iteration {it} (lr {lr_now:.3g}); training stopped, {keep}. Check the data "
                f"and --resume (same params), or lower {run.stage}.lr and --restart (a new lr is a new run)"
            ) from None
        window_n += 1
        if it % cfg.log_every == 0 or it == run.end_iter:
            now = time.perf_counter()
            ips = window_n / max(now - window_t, 1e-9)
            window_t, window_n = now, 0
            run.last_terms = {k: float(v) for k, v in terms.items()}
            row = {"iteration": it, "lr": lr_now, **run.last_terms, "it_per_s": ips}
            run.history.append(row)
            run.emit("on_log", it, row)
            _check_divergence(run, lr_now)
        run.emit("on_iteration", it)
        if STOP.requested and it != run.end_iter:  # (at the end the outputs follow in seconds: finish them)
            _stop_here(run, it)


def _check_divergence(run: Run, lr_now: float) -> None:
    """Stop a run whose logged loss diverged (:func:`srgan_lib.training.divergence.diverged`); under DDP every rank
    learns whether any rank's did, so they stop together."""
    found = diverged(run.history)
    stop, ranks = run.trainer.ranks_agree(torch.tensor(found is not None))
    if not stop:
        return
    before = [p for i, p in ckpt_io.list_checkpoints(run.run_dir) if found is None or i < found.began]
    kept = (f"the last checkpoint from before it is '{before[-1]}'" if before
            else "no checkpoint from before it is left")
    what = found.describe() if found is not None else f"rank(s) {ranks} diverged"
    raise Diverged(f"{run.stage}: training diverged: {what} (lr {lr_now:.3g}); training stopped, {kept}. Lower "
                   f"{run.stage}.lr (or raise {run.stage}.warmup) and --restart")


def write_summary(run: Run, model_path: Path, validation: dict[str, float], seconds_per_it: float,
                  parameters: int) -> None:
    """``summary.json``: what the stage produced (the DVC metrics file of the stage: results only, the same bytes on
    every clone); and :data:`RUN_RECORD` beside it: how this host ran it (MLflow run, speed, where it resumed)."""
    write_json(run.run_dir / "summary.json", {
        "stage": run.stage, "iterations": run.total, "model": str(model_path), "final_losses": run.last_terms,
        "validation": validation, "generator_parameters": parameters})
    write_json(run.run_dir / RUN_RECORD, {"mlflow_run_id": run.mlflow_run_id, "seconds_per_iteration": seconds_per_it,
                                          "resumed_from": run.start_iter})
