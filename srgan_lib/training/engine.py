"""One training engine for the four recipes (SRResNet, SRGAN, RRDBNet, ESRGAN), configured by ``params.yaml``.

A recipe is a stage section: which generator (and discriminator), which losses with which weights, the optimiser
schedule and the batch. Each iteration is: a generator update on
``w_pix * pixel + w_perc * perceptual + w_gan * adversarial``, then ``d_steps`` discriminator updates, then the EMA.
The same code runs single-process or under ``torchrun`` (DDP: NCCL on GPUs, gloo on CPU); a global batch is split
over the processes. For networks without BatchNorm (RRDBNet, the ESRGAN discriminator) the result matches one process
on the same global batch up to the order of floating-point sums (tests/test_training.py). BatchNorm networks (SRResNet,
the SRGAN discriminator) get SyncBatchNorm on CUDA, so their statistics are the global batch's as in one process; on
CPU, where PyTorch has no SyncBatchNorm, they are refused rather than trained on per-process statistics.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import io
import json
import logging
import math
import os
import random
import signal
import time
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from srgan_lib import losses
from srgan_lib.hardware import Levers, cpu_name, resolve_device, resolve_levers
from srgan_lib.imageio import atomic_path, file_sha256, write_json
from srgan_lib.models import OUTPUT_RANGES, build_model, count_parameters, from_unit, load_generator_state, to_unit
from srgan_lib.models.vgg import VGGFeatureExtractor, VGGWeightsMissing
from srgan_lib.training import NonFiniteLoss, TrainingError
from srgan_lib.training import checkpoint as ckpt_io
from srgan_lib.training.data import PairedPatches, batch_loader
from srgan_lib.training.loop import (
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
from srgan_lib.training.optim import EMA, adam, learning_rate, set_lr
from srgan_lib.training.store import open_training_store
from srgan_lib.training.validation import Validator

log = logging.getLogger("srgan.train")
# Keys whose change does not alter the optimisation trajectory: a run may be resumed with different values
# (``iterations`` only under the multistep schedule: the cosine schedule is drawn over the whole run).
RESUMABLE_KEYS = ("iterations", "val_every", "ckpt_every", "log_every")


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


@dataclass
class Dist:
    """This process's place in a (possibly single-process) job."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.world_size > 1:
            dist.barrier()

    def broadcast_checkpoint(self, ckpt: dict[str, Any] | None, device: torch.device) -> dict[str, Any] | None:
        """Rank 0's checkpoint (or None) on every rank, so the hosts of a multi-node job need no shared ``train.out``:
        sent as ``torch.save`` bytes and read back with ``weights_only=True``, like a checkpoint file."""
        if self.world_size <= 1:
            return ckpt
        on = device if dist.get_backend() == "nccl" else torch.device("cpu")
        payload = torch.empty(0, dtype=torch.uint8)
        if self.main and ckpt is not None:
            buf = io.BytesIO()
            torch.save(ckpt, buf)
            payload = torch.frombuffer(bytearray(buf.getvalue()), dtype=torch.uint8)
        size = torch.tensor([payload.numel()], dtype=torch.int64, device=on)
        dist.broadcast(size, 0)
        if int(size.item()) == 0:
            return None
        data = payload.to(on) if self.main else torch.empty(int(size.item()), dtype=torch.uint8, device=on)
        dist.broadcast(data, 0)
        if self.main:
            return ckpt
        return torch.load(io.BytesIO(data.cpu().numpy().tobytes()), map_location="cpu", weights_only=True)


def init_distributed(device: str, timeout_s: float = 600) -> Dist:
    """Join the ``torchrun`` job described by the environment (WORLD_SIZE > 1), or run single-process. A collective
    that waits longer than ``timeout_s`` (``train.dist_timeout``: a peer died) fails instead of hanging."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.startswith("cuda") else "gloo",
                                timeout=timedelta(seconds=timeout_s))
    return Dist(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def config_hash(stage_cfg: dict[str, Any], common: dict[str, Any], scale: int,
                inputs: dict[str, str] | None = None) -> str:
    """Fingerprint of everything that shapes the optimisation trajectory (resumable keys excluded): the parameters
    and, in ``inputs``, the content of what the stage reads (:func:`input_digests`), so that a checkpoint made from
    another PSNR parent or other training photographs under the same paths is never resumed."""
    resumable = RESUMABLE_KEYS if stage_cfg.get("schedule", "multistep") == "multistep" else RESUMABLE_KEYS[1:]
    relevant = {k: v for k, v in stage_cfg.items() if k not in resumable}
    shared = {k: common[k] for k in ("seed", "amp", "channels_last", "vgg_weights", "train_list", "lr_dir")}
    blob = json.dumps({"stage": relevant, "train": shared, "scale": scale, "inputs": inputs or {}}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def input_digests(stage_cfg: dict[str, Any], common: dict[str, Any], scale: int) -> dict[str, str]:
    """Content digests of a stage's inputs: the training data (the store's fingerprint: list + LR manifest) and the
    ``init_from`` generator file. A missing input digests as 'missing' (opening it later gives the actionable error)."""
    from srgan_lib.training.store import fingerprint

    try:
        data = fingerprint(common["train_list"], Path(common["lr_dir"]) / f"X{scale}", scale)
    except OSError:
        data = "missing"
    init = stage_cfg["init_from"]
    if init == "none":
        parent = "none"
    elif Path(init).is_file():
        parent = file_sha256(init)
    else:
        parent = "missing"
    return {"data": data, "init_from": parent}


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


class Trainer:
    """The models, losses and optimisers of one stage, and the step that updates them."""

    def __init__(self, stage: str, params: dict[str, Any], device: torch.device, ddp: Dist, *,
                 levers: Levers | None = None) -> None:
        """``levers``: the precision and memory format to train with; by default what ``train.amp`` and
        ``train.channels_last`` ask for, as far as the device runs them fast (:func:`srgan_lib.hardware.resolve_levers`:
        bf16 on a CPU only with native bf16 instructions). Master weights, optimiser state, losses and EMA stay fp32."""
        self.stage, self.cfg, self.common = stage, params[stage], params["train"]
        self.scale, self.device, self.ddp = params["scale"], device, ddp
        cfg, common = self.cfg, self.common
        self.out_range = OUTPUT_RANGES[cfg["generator"]]
        self.cuda = device.type == "cuda"
        self.levers = levers or resolve_levers(device, common["amp"], common["channels_last"])
        self.amp_dtype = self.levers.amp_dtype
        self.memory_format = self.levers.memory_format
        self.sync_every = common["sync_every"]
        self._nonfinite: torch.Tensor | None = None  # accumulated on the device between host syncs

        _seed_everything(common["seed"])
        self.net_g = build_model(cfg["generator"], scale=self.scale, **cfg["generator_options"])
        self.init_from = None
        if cfg["init_from"] != "none":
            self._init_generator(Path(cfg["init_from"]))
        self.net_d = (None if cfg["discriminator"] == "none"
                      else build_model(cfg["discriminator"], **cfg["discriminator_options"]))
        if ddp.world_size > 1:
            self._sync_batchnorm()
        self.ema = EMA(self.net_g, cfg["ema_decay"], foreach=common["ema_foreach"]) if cfg["ema_decay"] > 0 else None
        for net in (self.net_g, self.net_d, self.ema.model if self.ema else None):
            if net is not None:
                net.to(device, memory_format=self.memory_format)

        self.pixel = losses.PixelLoss(cfg["pixel"]["type"]) if cfg["pixel"]["type"] != "none" else None
        self.perceptual = None
        self.vgg_weights = "unused"
        if cfg["perceptual"]["type"] != "none":
            self.vgg_weights = common["vgg_weights"]
            try:
                extractor = VGGFeatureExtractor(cfg["perceptual"]["layer"], weights=common["vgg_weights"])
            except VGGWeightsMissing as exc:
                raise VGGWeightsMissing(f"{exc} (params: train.vgg_weights)") from None
            self.perceptual = losses.PerceptualLoss(
                extractor, cfg["perceptual"]["type"], cfg["perceptual"]["feature_scale"]
            ).to(device, memory_format=self.memory_format)
        self.gan_type = cfg["gan"]["type"]

        betas = tuple(cfg["betas"])
        fused = common["fused_adam"]
        self.opt_g = adam(self.net_g.parameters(), cfg["lr"], betas, fused=fused)
        self.opt_d = adam(self.net_d.parameters(), cfg["d_lr"], betas, fused=fused) if self.net_d is not None else None
        # fp16 loss scaling: one scaler per optimiser, each stepped once and updated once per step() of its own (a
        # shared scaler stepped for G and again for each of d_steps D updates raises "step() has already been called")
        fp16 = self.amp_dtype == torch.float16
        self.scaler = torch.amp.GradScaler(device.type, enabled=fp16)
        self.scaler_d = torch.amp.GradScaler(device.type, enabled=fp16 and self.net_d is not None)

        self.g_train, self.d_train = self.net_g, self.net_d
        if ddp.world_size > 1:
            ids = [device.index] if self.cuda else None
            self.g_train = nn.parallel.DistributedDataParallel(self.net_g, device_ids=ids)
            if self.net_d is not None:
                self.d_train = nn.parallel.DistributedDataParallel(self.net_d, device_ids=ids)
        # torch.compile wraps only the forward calls: the modules (and their state_dict keys) stay the plain ones
        self.compile_mode = common["compile"]
        self.d_frozen = self.net_d
        if self.compile_mode != "none":
            compiled = lambda m: torch.compile(m, mode=self.compile_mode, dynamic=False)  # noqa: E731
            self.g_train = compiled(self.g_train)
            if self.net_d is not None:
                self.d_train, self.d_frozen = compiled(self.d_train), compiled(self.net_d)
            if self.perceptual is not None:
                self.perceptual.extractor = compiled(self.perceptual.extractor)

    def _sync_batchnorm(self) -> None:
        """Under DDP, BatchNorm must see the global batch: SyncBatchNorm on CUDA, a refusal on CPU (see the module
        docstring). Parameters are shared with the converted modules, so this precedes the EMA and optimisers."""
        nets = {"generator": self.net_g, "discriminator": self.net_d}
        with_bn = [f"{role} {self.cfg[role]}" for role, net in nets.items()
                   if net is not None and any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in net.modules())]
        if not with_bn:
            return
        if not self.cuda:
            raise TrainingError(
                f"{self.stage}: the {' and the '.join(with_bn)} use BatchNorm, and DDP on CPU cannot synchronise its "
                "batch statistics (PyTorch's SyncBatchNorm needs CUDA): each process would normalise its own part of "
                f"the batch and the result would not be the one-process run's. Train {self.stage} in one process "
                "(without torchrun), on GPUs, or choose a network without BatchNorm (rrdbnet, esrgan)")
        self.net_g = nn.SyncBatchNorm.convert_sync_batchnorm(self.net_g)
        if self.net_d is not None:
            self.net_d = nn.SyncBatchNorm.convert_sync_batchnorm(self.net_d)

    def _init_generator(self, path: Path) -> None:
        if not path.is_file():
            raise FileNotFoundError(
                f"'{self.stage}.init_from': generator checkpoint '{path}' not found; train the PSNR stage first "
                f"(`srgan train {'srresnet' if self.cfg['generator'] == 'srresnet' else 'rrdbnet'}`) or point "
                "init_from at a checkpoint"
            )
        state = load_generator_state(path, prefer_ema=True)
        try:
            self.net_g.load_state_dict(state, strict=True)
        except RuntimeError as exc:
            raise ValueError(
                f"'{path}' does not fit {self.cfg['generator']} with options {self.cfg['generator_options']}: "
                f"{str(exc).splitlines()[0]} (generator_options must match the PSNR stage's)"
            ) from None
        self.init_from = str(path)

    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    def step(self, lr_u8: torch.Tensor, hr_u8: torch.Tensor) -> dict[str, torch.Tensor]:
        """One generator update and ``d_steps`` discriminator updates; returns the (detached) loss terms."""
        cfg = self.cfg
        nb = self.cuda
        lr = (lr_u8.to(self.device, non_blocking=nb).float() / 255).contiguous(memory_format=self.memory_format)
        hr01 = (hr_u8.to(self.device, non_blocking=nb).float() / 255).contiguous(memory_format=self.memory_format)
        hr = from_unit(hr01, self.out_range)  # the generator's native range
        terms: dict[str, torch.Tensor] = {}

        # generator
        if self.net_d is not None:
            self.net_d.requires_grad_(False)
        with self._autocast():
            sr = self.g_train(lr)
            total = sr.new_zeros(())
            if self.pixel is not None:
                terms["pixel"] = self.pixel(sr.float(), hr)
                total = total + cfg["pixel"]["weight"] * terms["pixel"]
            if self.perceptual is not None:
                terms["perceptual"] = self.perceptual(to_unit(sr, self.out_range), hr01).float()
                total = total + cfg["perceptual"]["weight"] * terms["perceptual"]
            if self.net_d is not None and self.gan_type != "none":
                # the generator's gradient flows through D, whose weights are frozen here (the unwrapped module,
                # so DDP does not wait for D gradients that never come)
                fake_logits = self.d_frozen(sr).float()
                real_logits = None
                if self.gan_type == "ragan":  # a constant for G (detached in the loss): no graph to keep
                    with torch.no_grad():
                        real_logits = self.d_frozen(hr).float()
                terms["gan_g"] = losses.generator_adversarial_loss(self.gan_type, fake_logits, real_logits)
                total = total + cfg["gan"]["weight"] * terms["gan_g"]
        terms["total_g"] = total.float()
        self._check_finite(terms)
        self.opt_g.zero_grad(set_to_none=True)
        self.scaler.scale(total).backward()
        self.scaler.step(self.opt_g)
        self.scaler.update()

        # discriminator
        if self.net_d is not None and self.gan_type != "none":
            self.net_d.requires_grad_(True)
            fake = sr.detach()
            for _ in range(cfg["d_steps"]):
                with self._autocast():
                    real_logits = self.d_train(hr).float()
                    fake_logits = self.d_train(fake).float()
                    loss_d = losses.discriminator_loss(self.gan_type, real_logits, fake_logits)
                terms["gan_d"] = loss_d.detach()
                terms["d_real"] = real_logits.detach().mean()
                terms["d_fake"] = fake_logits.detach().mean()
                self._check_finite({"gan_d": terms["gan_d"]})
                self.opt_d.zero_grad(set_to_none=True)
                self.scaler_d.scale(loss_d).backward()
                self.scaler_d.step(self.opt_d)
                self.scaler_d.update()
        if self.ema is not None:
            self.ema.update(self.net_g)
        return {k: v.detach() for k, v in terms.items()}

    def _ranks_agree(self, bad: torch.Tensor) -> tuple[bool, list[int]]:
        """Under DDP every rank learns whether any rank saw a non-finite loss (one all-gather of a flag), so all of
        them stop together instead of the healthy ones waiting in the next gradient all-reduce until the timeout.
        Returns (any bad, the ranks that were)."""
        if self.ddp.world_size <= 1:
            return bool(bad), [self.ddp.rank] if bool(bad) else []
        flags = [torch.zeros((), dtype=torch.int32, device=self.device) for _ in range(self.ddp.world_size)]
        dist.all_gather(flags, bad.to(device=self.device, dtype=torch.int32).reshape(()))
        ranks = [r for r, f in enumerate(flags) if int(f)]
        return bool(ranks), ranks

    def _check_finite(self, terms: dict[str, torch.Tensor]) -> None:
        """Every step with ``sync_every: 1`` (the update is refused); otherwise the flag stays on the device and
        :meth:`sync` reads it, so the step never waits for the device."""
        values = torch.stack([v.detach().float() for v in terms.values()])
        if self.sync_every > 1:
            bad = ~torch.isfinite(values).all()
            self._nonfinite = bad if self._nonfinite is None else self._nonfinite | bad
            return
        any_bad, ranks = self._ranks_agree(~torch.isfinite(values).all())
        if any_bad:
            mine = {k: float(v.detach()) for k, v in terms.items() if not math.isfinite(float(v.detach()))}
            raise NonFiniteLoss(f"non-finite loss {mine}" if mine else f"non-finite loss on rank(s) {ranks}")

    def sync(self) -> None:
        """Read the non-finite flag accumulated since the last sync (one host synchronisation; under DDP every rank
        syncs at the same iterations and they agree)."""
        if self.sync_every > 1:
            flag = self._nonfinite if self._nonfinite is not None else torch.zeros((), dtype=torch.bool)
            self._nonfinite = None
            any_bad, ranks = self._ranks_agree(flag)
            if any_bad:
                raise NonFiniteLoss(f"non-finite loss within the last {self.sync_every} iterations on rank(s) "
                                    f"{ranks} (train.sync_every)")

    def weights_finite(self) -> bool:
        return all(bool(torch.isfinite(p).all()) for p in self.net_g.parameters())

    def learning_rate(self, base_lr: float, iteration: int) -> float:
        """The stage's schedule (warm-up, then multistep or cosine) at ``iteration`` for a base rate."""
        cfg = self.cfg
        return learning_rate(base_lr, iteration, schedule=cfg["schedule"], iterations=cfg["iterations"],
                             warmup=cfg["warmup"], milestones=cfg["milestones"], gamma=cfg["gamma"],
                             lr_min=cfg["lr_min"] * base_lr / cfg["lr"])

    def set_lr(self, iteration: int) -> float:
        lr_g = self.learning_rate(self.cfg["lr"], iteration)
        set_lr(self.opt_g, lr_g)
        if self.opt_d is not None:
            set_lr(self.opt_d, self.learning_rate(self.cfg["d_lr"], iteration))
        return lr_g

    def state(self) -> dict[str, Any]:
        """Everything but the iteration, RNG and bookkeeping: the models, optimisers, EMA and AMP scaler."""
        return {
            "generator": self.net_g.state_dict(),
            "discriminator": self.net_d.state_dict() if self.net_d is not None else None,
            "ema": self.ema.state_dict() if self.ema is not None else None,
            "opt_g": self.opt_g.state_dict(),
            "opt_d": self.opt_d.state_dict() if self.opt_d is not None else None,
            "scaler": self.scaler.state_dict(),
            "scaler_d": self.scaler_d.state_dict(),
        }

    def load_state(self, state: dict[str, Any]) -> None:
        self.net_g.load_state_dict(state["generator"])
        if self.net_d is not None:
            self.net_d.load_state_dict(state["discriminator"])
        if self.ema is not None:
            self.ema.load_state_dict(state["ema"])
        self.opt_g.load_state_dict(state["opt_g"])
        if self.opt_d is not None:
            self.opt_d.load_state_dict(state["opt_d"])
        self.scaler.load_state_dict(state["scaler"])
        if "scaler_d" in state:  # checkpoints before the discriminator had its own scaler: a fresh one
            self.scaler_d.load_state_dict(state["scaler_d"])

    def final_generators(self, patches: PairedPatches, batches: int) -> tuple[nn.Module, nn.Module | None]:
        """The generator and its EMA as delivered: copies whose BatchNorm statistics are recomputed over ``batches``
        training batches ("precise BN", as ``torch.optim.swa_utils.update_bn`` does for averaged weights).

        Why: the EMA averages the weights but copies the live network's running statistics, which belong to other
        weights (on SRResNet that mismatch cost 0.12 dB and a +3 grey-level green cast on Set5), and momentum-0.1
        running statistics are noisy. The training state itself is left alone, so resume stays exact. Networks
        without BatchNorm, or ``batches`` 0, are returned as they are."""
        nets = [self.net_g, self.ema.model if self.ema is not None else None]
        if batches == 0 or not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in self.net_g.modules()):
            return nets[0], nets[1]
        out = []
        with torch.no_grad():
            for net in nets:
                if net is None:
                    out.append(None)
                    continue
                net = _plain_batchnorm(copy.deepcopy(net))  # rank 0 alone: no SyncBatchNorm collectives
                for m in net.modules():
                    if isinstance(m, nn.modules.batchnorm._BatchNorm):
                        m.reset_running_stats()
                        m.momentum = None  # a cumulative average over the batches
                net.train()
                for k in range(batches):  # batches beyond the run's own: a pure function of (seed, index)
                    lr_u8, _ = patches.batch(self.cfg["iterations"] + 1 + k, self.cfg["batch_size"])
                    lr = (lr_u8.to(self.device).float() / 255).contiguous(memory_format=self.memory_format)
                    with self._autocast():
                        net(lr)
                for m in net.modules():
                    if isinstance(m, nn.modules.batchnorm._BatchNorm):
                        m.momentum = 0.1
                out.append(net.eval())
        return out[0], out[1]

    def generator_checkpoint(self, meta: dict[str, Any] | None = None,
                             nets: tuple[nn.Module, nn.Module | None] | None = None) -> dict[str, Any]:
        """The deliverable: ``{'params': G, 'params_ema': EMA(G)}`` (BasicSR/Real-ESRGAN layout; loaders that read
        those keys ignore the rest) and ``meta``, what trained it (:func:`srgan_lib.models.checkpoint_meta`).
        ``nets``: the (generator, EMA) to store, by default the training ones (see :meth:`final_generators`)."""
        g, ema_net = nets or (self.net_g, self.ema.model if self.ema is not None else None)
        params = {k: v.detach().cpu().contiguous() for k, v in g.state_dict().items()}
        ema = ({k: v.detach().cpu().contiguous() for k, v in ema_net.state_dict().items()}
               if ema_net is not None else params)
        return {"params": params, "params_ema": ema, "meta": self.meta(**(meta or {}))}

    def meta(self, **extra: Any) -> dict[str, Any]:
        """What trained this generator, in plain values (safe under ``weights_only`` loading)."""
        cfg = self.cfg

        def loss(kind: str) -> str:
            term = cfg[kind]
            if term["type"] == "none":
                return "none"
            where = f" on {term['layer']}" if kind == "perceptual" else ""
            return f"{term['type']}{where} x {term['weight']:g}"

        return {
            "stage": self.stage, "generator": cfg["generator"], "generator_options": dict(cfg["generator_options"]),
            "parameters": count_parameters(self.net_g), "iterations": cfg["iterations"],
            "batch_size": cfg["batch_size"], "hr_size": cfg["hr_size"], "lr": cfg["lr"],
            "schedule": cfg["schedule"], "warmup": cfg["warmup"], "ema_decay": cfg["ema_decay"],
            "losses": {k: loss(k) for k in ("pixel", "perceptual", "gan")},
            "vgg_weights": self.vgg_weights, "init_from": self.init_from or "none",
            "precision": self.levers.precision, "memory_format": self.levers.layout, **extra,
        }


def _plain_batchnorm(module: nn.Module) -> nn.Module:
    """``module`` with every SyncBatchNorm replaced by a BatchNorm2d holding the same parameters and statistics."""
    if isinstance(module, nn.SyncBatchNorm):
        bn = nn.BatchNorm2d(module.num_features, module.eps, module.momentum, module.affine,
                            module.track_running_stats)
        bn.load_state_dict(module.state_dict())
        return bn.to(next(iter(module.state_dict().values())).device).train(module.training)
    for name, child in module.named_children():
        setattr(module, name, _plain_batchnorm(child))
    return module


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
    params: dict[str, Any],
    stage: str,
    *,
    resume: bool = False,
    restart: bool = False,
    auto_resume: bool = False,
    progress: bool | None = None,
    stop_after: int | None = None,
    levers: Levers | None = None,
) -> TrainResult:
    """Train one stage (``srresnet``, ``srgan``, ``rrdbnet``, ``esrgan``) as ``params`` says; see the module docstring.

    ``resume`` continues from the newest compatible checkpoint in ``<train.out>/<stage>`` (a fresh start when there is
    none); ``restart`` deletes that stage's checkpoints first; ``auto_resume`` resumes a compatible run and starts
    over otherwise. ``stop_after`` ends the process after that many
    iterations of this invocation without a final checkpoint (for timing and smoke runs). ``levers`` overrides the
    precision and memory format the hardware rule picks (:func:`srgan_lib.hardware.resolve_levers`), e.g. to check
    bf16 numerics on a CPU that only emulates it.
    """
    from srgan_lib import tracking

    t_start = time.perf_counter()
    cfg, common, scale = params[stage], params["train"], params["scale"]
    if common["threads"]:
        torch.set_num_threads(common["threads"])
    ddp = init_distributed(resolve_device(common["device"]).type, common["dist_timeout"])
    device = resolve_device(common["device"], ddp.local_rank)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    run_dir = Path(common["out"]) / stage
    cfg_hash = config_hash(cfg, common, scale, input_digests(cfg, common, scale))
    ckpt = _prepare_run_dir(run_dir, resume, restart, cfg_hash, auto_resume) if ddp.main else None
    ckpt = ddp.broadcast_checkpoint(ckpt, device)  # other hosts' train.out may be empty or stale

    trainer = Trainer(stage, params, device, ddp, levers=levers)
    if trainer.vgg_weights == "random":
        log.warning("%s: perceptual loss on a RANDOMLY initialised VGG19 (train.vgg_weights: random) - not the "
                    "paper's loss; tagged vgg_weights=random in MLflow", stage)
    store = open_training_store(common["store"], common["train_list"], Path(common["lr_dir"]) / f"X{scale}", scale)
    data = PairedPatches(store, hr_size=cfg["hr_size"], augment=cfg["augment"], seed=common["seed"])
    validator = (Validator(common["val_list"], common["val_images"], common["val_crop"], scale,
                           params["degrade"]["kernel"]) if ddp.main else None)

    start_iter, history, val_history, run_id = 0, [], [], None
    if ckpt is not None:
        trainer.load_state(ckpt)
        ckpt_io.set_rng_state(ckpt["rng"])
        start_iter, history, val_history = ckpt["iteration"], list(ckpt["history"]), list(ckpt["val_history"])
        run_id = ckpt.get("mlflow_run_id")
        if ddp.main:
            log.info("%s: resuming from %s at iteration %d", stage, ckpt["path"], start_iter)
    # resumed from the final checkpoint (re-run after a lever that does not change the result, e.g. fused_adam):
    # nothing to train; the outputs are written again from that checkpoint and its MLflow run stays as it ended
    finished = start_iter >= cfg["iterations"] and stop_after is None

    total = cfg["iterations"]
    end_iter = total if stop_after is None else min(total, start_iter + stop_after)
    loader = batch_loader(data, range(start_iter + 1, end_iter + 1), cfg["batch_size"], workers=common["workers"],
                          pin_memory=device.type == "cuda", rank=ddp.rank, world_size=ddp.world_size)
    run = Run(stage, cfg, common, run_dir, trainer, ddp, device, cfg_hash, start_iter, end_iter, loader, len(data),
              history, val_history, run_id)
    tracker = tracking.Tracker(None, "", "")
    if ddp.main and finished:
        log.info("%s: already trained to iteration %d (MLflow run %s kept as it ended); writing the outputs from "
                 "its final checkpoint", stage, start_iter, run_id or "none")
    elif ddp.main:
        tracker = _open_tracker(run, params, data)
        run.mlflow_run_id = tracker.run_id
    validation, checkpoints, mlflow = Validation(validator), Checkpointing(), MLflowTracking(tracker)
    run.callbacks = [Progress(run, progress), HistoryCSV(), validation, checkpoints, mlflow]
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
        model_path = Path(common["models"]) / f"{stage}.pth"
        val_row: dict[str, float] = {}
        if ddp.main:
            final = trainer.final_generators(data, common["precise_bn"])
            val_row = validation.validate(run, total, final)
            if not finished:
                checkpoints.save(run, total)
            write_history(run)
            with atomic_path(model_path) as tmp:
                meta = {"train_images": len(data), "config_hash": cfg_hash, "precise_bn": common["precise_bn"]}
                torch.save(trainer.generator_checkpoint(meta, final), tmp)
            write_summary(run, model_path, val_row, seconds_per_it, count_parameters(trainer.net_g))
            mlflow.log_final(run, model_path, seconds_per_it)
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


def _open_tracker(run: Run, params: dict[str, Any], data: PairedPatches) -> Any:
    """The stage's MLflow run (reopened when resuming), its parameters, tags and config file (main process)."""
    from srgan_lib import tracking

    stage, cfg, common, trainer, ddp, device = run.stage, run.cfg, run.common, run.trainer, run.ddp, run.device
    tracker = tracking.Tracker(
        tracking.resolve_uri(params["tracking"]["uri"]), params["tracking"]["experiment"], stage,
        run_id=run.mlflow_run_id, tags={"srgan.stage": stage, "srgan.kind": "train"},
    )
    if run.mlflow_run_id is None:
        tracker.log_params(tracking.flatten({"scale": params["scale"], "train": common, stage: cfg}))
        tracker.log_dataset(Path(common["train_list"]).stem, common["train_list"], "training", len(data))
        if common["val_images"]:
            tracker.log_dataset(Path(common["val_list"]).stem, common["val_list"], "validation",
                                common["val_images"])
    device_name = (torch.cuda.get_device_name(device) if device.type == "cuda"
                   else f"cpu {cpu_name()} ({torch.get_num_threads()} threads)")
    tracker.set_tags({
        # (dvc.lock's entry of this stage exists only after the run: the register stage tags it, dvc_lock_stage_hash)
        "git_commit": tracking.git_commit(),
        "device": device_name,
        "torch_version": torch.__version__, "vgg_weights": trainer.vgg_weights, "config_hash": run.cfg_hash,
        "world_size": str(ddp.world_size), "init_from": trainer.init_from or "none",
        "precision": trainer.levers.precision, "memory_format": trainer.levers.layout,
        "precision_reason": trainer.levers.reason or "as requested",
        "generator_parameters": str(count_parameters(trainer.net_g)),
        "train_images": str(len(data)),
    })
    run.run_dir.mkdir(parents=True, exist_ok=True)
    write_json(run.run_dir / "config.json", {"stage": stage, "scale": params["scale"], "train": common, stage: cfg,
                                             "config_hash": run.cfg_hash})
    tracker.log_artifacts([run.run_dir / "config.json"])
    return tracker


def install_sigterm_handler() -> None:
    """Turn SIGTERM (a scheduler stopping the job) into KeyboardInterrupt so the MLflow run is closed as KILLED."""
    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    with contextlib.suppress(ValueError):  # not in the main thread
        signal.signal(signal.SIGTERM, handler)
