"""A training stage from start to end: the run folder's resume policy, the data, the trainer, the loop and its
callbacks, the delivered generator and the MLflow run (``srgan train STAGE``, ``dvc.yaml``'s training stages and
the Prefect flows all call :func:`train_stage`).
"""

from __future__ import annotations

import contextlib
import json
import logging
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.distributed as dist

from srgan_lib.data.store import open_training_store
from srgan_lib.hardware import ComputeFormat, cpu_name, resolve_device
from srgan_lib.io.images import write_json
from srgan_lib.io.weights import save_torch
from srgan_lib.models import count_parameters
from srgan_lib.training import TrainingError
from srgan_lib.training import checkpoint as ckpt_io
from srgan_lib.training.data import PairedPatches, batch_loader
from srgan_lib.training.degradation_log import DegradationDraws
from srgan_lib.training.delivery import KeepBest, delivered_checkpoint, run_meta
from srgan_lib.training.distributed import Dist, init_distributed
from srgan_lib.training.loop import (
    STOP,
    Checkpointing,
    HistoryCSV,
    MLflowTracking,
    Progress,
    Run,
    Validation,
    run_loop,
    write_history,
    write_summary,
)
from srgan_lib.training.trainer import Trainer
from srgan_lib.training.trajectory import config_hash, input_digests
from srgan_lib.training.validation import Validator

if TYPE_CHECKING:
    from srgan_lib.config.params import Params, Train
    from srgan_lib.config.training import Recipe

log = logging.getLogger("srgan.train")


class ResumeError(TrainingError):
    """The run folder's checkpoints cannot be used for this run (or exist when no resume was asked for)."""


@dataclass
class TrainResult:
    """What a training stage produced."""

    stage: str
    iterations: int
    model_path: Path | None  # None: stopped before the end (stop_after), no generator written
    run_dir: Path
    seconds: float
    resumed_from: int = 0
    final_losses: dict[str, float] = field(default_factory=dict)
    validation: dict[str, float] = field(default_factory=dict)
    mlflow_run_id: str | None = None
    seconds_per_iteration: float = 0.0


def _prepare_run_dir(run_dir: Path, resume: bool, restart: bool, cfg_hash: str,
                     auto: bool = False) -> dict[str, Any] | None:
    """The checkpoint to resume from (or None), enforcing: never silently mix two runs in one folder.

    ``auto`` (what ``dvc.yaml`` uses): resume a compatible run, and start over when the parameters changed.
    """
    existing = ckpt_io.list_checkpoints(run_dir)
    if auto and existing:
        ckpt = ckpt_io.latest_checkpoint(run_dir)
        if ckpt is not None and ckpt["config_hash"] == cfg_hash:
            return ckpt
        log.warning("%s: checkpoints were made with other parameters (or are unreadable); starting over", run_dir)
        restart = True
    if restart:
        for _, p in existing:
            p.unlink()
        return None
    if not existing:
        return None
    if not resume:
        raise ResumeError(
            f"'{run_dir}' already holds checkpoints up to iteration {existing[-1][0]}; pass --resume to continue "
            "that run or --restart to delete them and start over"
        )
    ckpt = ckpt_io.latest_checkpoint(run_dir)
    if ckpt is None:
        raise ResumeError(f"no readable checkpoint in '{run_dir}/checkpoints'; pass --restart to start over")
    if ckpt["config_hash"] != cfg_hash:
        raise ResumeError(
            f"checkpoint '{ckpt['path']}' was made with different parameters (config {ckpt['config_hash']}, now "
            f"{cfg_hash}; it recorded {json.dumps(ckpt['config'], sort_keys=True)[:300]}...); pass --restart to "
            "start over with the current params, or restore the old ones to resume"
        )
    return ckpt


def train_stage(
    params: Params,
    stage: str,
    *,
    resume: bool = False,
    restart: bool = False,
    auto_resume: bool = False,
    progress: bool | None = None,
    stop_after: int | None = None,
    compute: ComputeFormat | None = None,
) -> TrainResult:
    """Train one stage (``srresnet``, ``srgan``, ``rrdbnet``, ``esrgan``) as ``params`` says; see the module docstring.

    ``resume`` continues from the newest compatible checkpoint in ``<train.out>/<stage>`` (a fresh start when there is
    none); ``restart`` deletes that stage's checkpoints first; ``auto_resume`` resumes a compatible run and starts
    over otherwise. ``stop_after`` ends the process after that many
    iterations of this invocation without a final checkpoint (for timing and smoke runs). ``compute`` overrides the
    precision and memory format the hardware rule picks (:func:`srgan_lib.hardware.resolve_compute_format`), e.g. to
    check bf16 numerics on a CPU that only emulates it.
    """

    t_start = time.perf_counter()
    cfg, common, scale = params.stage(stage), params.train, params.scale
    ddp, device = _devices(common)
    run_dir = Path(common.out) / stage
    cfg_hash = config_hash(cfg, common, scale, input_digests(cfg, common, scale), params.degradation)
    ckpt = _prepare_run_dir(run_dir, resume, restart, cfg_hash, auto_resume) if ddp.main else None
    ckpt = ddp.broadcast_checkpoint(ckpt, device)  # other hosts' train.out may be empty or stale

    trainer = Trainer(stage, params, device, ddp, compute=compute)
    if trainer.vgg_weights == "random":
        log.warning("%s: perceptual loss on a RANDOMLY initialised VGG19 (train.vgg_weights: random) - not the "
                    "paper's loss; tagged vgg_weights=random in MLflow", stage)
    store = open_training_store(common.store, common.train_list, Path(common.lr_dir) / f"X{scale}", scale)
    data = PairedPatches(store, hr_size=cfg.hr_size, augment=cfg.augment, seed=common.seed)
    validator = (Validator(_val_list(cfg, common), common.val_images, common.val_crop, scale,
                           params.degrade.kernel) if ddp.main else None)

    start_iter, history, val_history, run_id = _restore(trainer, ckpt, stage, ddp)
    # resumed from the final checkpoint (re-run after a lever that does not change the result, e.g. fused_adam):
    # nothing to train; the outputs are written again from that checkpoint and its MLflow run stays as it ended
    finished = start_iter >= cfg.iterations and stop_after is None
    total = cfg.iterations
    end_iter = total if stop_after is None else min(total, start_iter + stop_after)
    loader = batch_loader(data, range(start_iter + 1, end_iter + 1), cfg.batch_size, workers=common.workers,
                          pin_memory=device.type == "cuda", rank=ddp.rank, world_size=ddp.world_size)
    run = Run(stage=stage, cfg=cfg, common=common, run_dir=run_dir, trainer=trainer, ddp=ddp, device=device,
              cfg_hash=cfg_hash, start_iter=start_iter, end_iter=end_iter, loader=loader, train_images=len(data),
              history=history, val_history=val_history, mlflow_run_id=run_id)
    tracker = _tracker(run, params, data, finished)
    validation, checkpoints, mlflow = Validation(validator), Checkpointing(), MLflowTracking(tracker)
    run.callbacks = [Progress(run, progress), HistoryCSV(), validation, checkpoints, mlflow,
                     *_realworld_hooks(run, tracker, data), *([KeepBest()] if cfg.deliver != "last" else [])]
    status, t_loop = "FAILED", time.perf_counter()
    try:
        run.emit("on_start")
        run_loop(run)
        seconds_per_it = (time.perf_counter() - t_loop) / max(end_iter - start_iter, 1)
        if stop_after is not None and end_iter < total:
            status = "KILLED"
            return TrainResult(stage, end_iter, None, run_dir, time.perf_counter() - t_start, start_iter,
                               run.last_terms, {}, run.mlflow_run_id, seconds_per_it)
        if finished and history:  # what the run recorded, not this invocation's zero iterations
            run.last_terms = {k: v for k, v in history[-1].items() if k not in ("iteration", "lr", "it_per_s")}
            seconds_per_it = 1.0 / max(float(np.mean([h["it_per_s"] for h in history])), 1e-9)
        model_path = Path(common.models) / f"{stage}.pth"
        val_row = (_deliver(run, data, model_path, validation, checkpoints, mlflow, finished, seconds_per_it)
                   if ddp.main else {})
        ddp.barrier()
        status = "FINISHED"
        return TrainResult(stage, total, model_path, run_dir, time.perf_counter() - t_start, start_iter,
                           run.last_terms, {k: v for k, v in val_row.items() if k != "iteration"},
                           run.mlflow_run_id, seconds_per_it)
    except KeyboardInterrupt:
        status = "KILLED"
        raise
    finally:
        run.emit("on_end", status)
        if ddp.world_size > 1 and dist.is_initialized():
            dist.destroy_process_group()


def _val_list(cfg: Recipe, common: Train) -> str:
    """The validation list of a recipe: the real-world one (own LR, e.g. Set5-RW) for ``degradation: realworld``."""
    return common.val_list_realworld if cfg.degradation == "realworld" else common.val_list


def _realworld_hooks(run: Run, tracker: Any, data: PairedPatches) -> list[DegradationDraws]:
    """A realworld recipe's draws logger, and which samples have their own LR (paired data) for the loop."""
    if run.cfg.degradation != "realworld":
        return []
    if data.any_paired:
        run.own_lr = lambda it: data.own_lr(it, run.cfg.batch_size, run.ddp.rank, run.ddp.world_size)
    return [DegradationDraws(tracker, run.common.log_degradations)]


def _devices(common: Train) -> tuple[Dist, torch.device]:
    """This process's torchrun group (a single process outside torchrun) and its device; CPU threads as set."""
    if common.threads:
        torch.set_num_threads(common.threads)
    ddp = init_distributed(resolve_device(common.device).type, common.dist_timeout)
    device = resolve_device(common.device, ddp.local_rank)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    return ddp, device


def _restore(trainer: Trainer, ckpt: dict[str, Any] | None, stage: str,
             ddp: Dist) -> tuple[int, list[dict[str, Any]], list[dict[str, Any]], str | None]:
    """Models, optimisers, EMA and RNG from the checkpoint being resumed: (iteration, history, validation history,
    MLflow run id); a fresh start without one."""
    if ckpt is None:
        return 0, [], [], None
    trainer.load_state(ckpt)
    ckpt_io.set_rng_state(ckpt["rng"])
    if ddp.main:
        log.info("%s: resuming from %s at iteration %d", stage, ckpt["path"], ckpt["iteration"])
    return ckpt["iteration"], list(ckpt["history"]), list(ckpt["val_history"]), ckpt.get("mlflow_run_id")


def _deliver(run: Run, data: PairedPatches, model_path: Path, validation: Validation, checkpoints: Checkpointing,
             mlflow: MLflowTracking, finished: bool, seconds_per_it: float) -> dict[str, float]:
    """The outputs of a finished run (main process): the delivered generators validated, the final checkpoint,
    history, ``models/<stage>.pth``, the summary and the MLflow run's final records; the validation row."""
    trainer, common = run.trainer, run.common
    final = trainer.final_generators(data, common.precise_bn)
    val_row = validation.validate(run, run.total, final)
    if not finished:
        checkpoints.save(run, run.total)
    write_history(run)
    checkpoint, picked = delivered_checkpoint(run, trainer.generator_checkpoint(run_meta(run), final))
    save_torch(checkpoint, model_path)
    if picked is not None:  # the validation row of what is delivered (deliver: psnr_y | niqe)
        val_row = picked
        mlflow.tracker.set_tags({"delivered_iteration": str(picked["iteration"])})
    write_summary(run, model_path, val_row, seconds_per_it, count_parameters(trainer.net_g))
    mlflow.log_final(run, model_path, seconds_per_it)
    return val_row


def _tracker(run: Run, params: Params, data: PairedPatches, finished: bool) -> Any:
    """The stage's MLflow tracker: its run opened (main process, a run to train), or off (other ranks, a run that
    is only writing its outputs again from its final checkpoint, whose MLflow run stays as it ended)."""
    from srgan_lib import tracking

    if not run.ddp.main:
        return tracking.Tracker(None, "", "")
    if finished:
        log.info("%s: already trained to iteration %d (MLflow run %s kept as it ended); writing the outputs from "
                 "its final checkpoint", run.stage, run.start_iter, run.mlflow_run_id or "none")
        return tracking.Tracker(None, "", "")
    tracker = _open_tracker(run, params, data)
    run.mlflow_run_id = tracker.run_id
    return tracker


def _open_tracker(run: Run, params: Params, data: PairedPatches) -> Any:
    """The stage's MLflow run (reopened when resuming), its parameters, tags and config file (main process)."""
    from srgan_lib import tracking

    stage, cfg, common, trainer, ddp, device = run.stage, run.cfg, run.common, run.trainer, run.ddp, run.device
    tracker = tracking.Tracker(
        tracking.resolve_uri(params.tracking.uri), params.tracking.experiment, stage,
        run_id=run.mlflow_run_id, tags={"srgan.stage": stage, "srgan.kind": "train"},
    )
    if run.mlflow_run_id is None:
        realworld = {"degradation": params.degradation.model_dump()} if cfg.degradation == "realworld" else {}
        tracker.log_params(tracking.flatten({"scale": params.scale, "train": common.model_dump(),
                                             stage: cfg.model_dump(), **realworld}))
        tracker.log_dataset(Path(common.train_list).stem, common.train_list, "training", len(data))
        if common.val_images:
            val_list = _val_list(cfg, common)
            tracker.log_dataset(Path(val_list).stem, val_list, "validation", common.val_images)
    device_name = (torch.cuda.get_device_name(device) if device.type == "cuda"
                   else f"cpu {cpu_name()} ({torch.get_num_threads()} threads)")
    tracker.set_tags({
        # (dvc.lock's entry of this stage exists only after the run: the register stage tags it, dvc_lock_stage_hash)
        "git_commit": tracking.git_commit(),
        "device": device_name,
        "torch_version": torch.__version__, "vgg_weights": trainer.vgg_weights, "config_hash": run.cfg_hash,
        "world_size": str(ddp.world_size), "init_from": trainer.init_from or "none",
        "precision": trainer.compute.precision, "memory_format": trainer.compute.layout,
        "precision_reason": trainer.compute.reason or "as requested",
        "generator_parameters": str(count_parameters(trainer.net_g)),
        "train_images": str(len(data)),
    })
    run.run_dir.mkdir(parents=True, exist_ok=True)
    write_json(run.run_dir / "config.json", {"stage": stage, "scale": params.scale, "train": common.model_dump(),
                                             stage: cfg.model_dump(), "config_hash": run.cfg_hash})
    tracker.log_artifacts([run.run_dir / "config.json"])
    return tracker


def install_sigterm_handler() -> None:
    """SIGTERM (a scheduler stopping the job) ends the run as KILLED: in the training loop after the current step
    and a checkpoint of it (:class:`~srgan_lib.training.loop.StopRequest`), elsewhere at once (KeyboardInterrupt)."""
    def handler(signum: int, frame: Any) -> None:
        if STOP.polite():
            STOP.requested = True  # acted on by the loop (no logging here: a signal handler may not take locks)
            return
        raise KeyboardInterrupt(f"signal {signum}")

    with contextlib.suppress(ValueError):  # not in the main thread
        signal.signal(signal.SIGTERM, handler)
