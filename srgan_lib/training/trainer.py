"""The one training engine for every recipe (SRResNet, SRGAN, RRDBNet, ESRGAN, Real-ESRNet, Real-ESRGAN), as
``params.yaml`` configures it.

A recipe is a stage section: which generator (and discriminator), which losses with which weights, the optimiser
schedule and the batch. Each iteration is: a generator update on
``w_pix * pixel + w_perc * perceptual + w_gan * adversarial``, then ``d_steps`` discriminator updates, then the EMA.
The same code runs single-process or under ``torchrun`` (DDP: NCCL on GPUs, gloo on CPU); a global batch is split
over the processes. For networks without BatchNorm (RRDBNet, the ESRGAN discriminator) the result matches one process
on the same global batch up to the order of floating-point sums (tests/training/test_training.py). BatchNorm networks
(SRResNet,
the SRGAN discriminator) get SyncBatchNorm on CUDA, so their statistics are the global batch's as in one process; on
CPU, where PyTorch has no SyncBatchNorm, they are refused rather than trained on per-process statistics.
"""

from __future__ import annotations

import contextlib
import copy
import math
import random
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from srgan_lib import losses
from srgan_lib.data.degradations import usm_sharp
from srgan_lib.hardware import resolve_compute_format
from srgan_lib.models import build_model, count_parameters, from_unit, output_range, to_unit
from srgan_lib.training import NonFiniteLoss, TrainingError
from srgan_lib.training.data import PairedPatches
from srgan_lib.training.distributed import Dist
from srgan_lib.training.initial import init_discriminator, init_generator
from srgan_lib.training.optim import EMA, adam, learning_rate, set_lr
from srgan_lib.training.realworld import realworld_lr

if TYPE_CHECKING:
    from srgan_lib.config.params import Params
    from srgan_lib.hardware import ComputeFormat


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


class Trainer:
    """The models, losses and optimisers of one stage, and the step that updates them."""

    def __init__(self, stage: str, params: Params, device: torch.device, ddp: Dist, *,
                 compute: ComputeFormat | None = None) -> None:
        """``compute``: the precision and memory format to train with; by default what ``train.amp`` and
        ``train.channels_last`` ask for, as far as the device runs them fast
        (:func:`srgan_lib.hardware.resolve_compute_format`: bf16 on a CPU only with native bf16 instructions). Master
        weights, optimiser state, losses and EMA stay fp32."""
        self.stage, self.cfg, self.common = stage, params.stage(stage), params.train
        self.scale, self.device, self.ddp = params.scale, device, ddp
        cfg, common = self.cfg, self.common
        self.out_range = output_range(cfg.generator)
        self.cuda = device.type == "cuda"
        self.compute = compute or resolve_compute_format(device, common.amp, common.channels_last)
        self.amp_dtype = self.compute.amp_dtype
        self.memory_format = self.compute.memory_format
        self.sync_every = common.sync_every
        self._nonfinite: torch.Tensor | None = None  # accumulated on the device between host syncs

        _seed_everything(common.seed)
        self.net_g = build_model(cfg.generator, scale=self.scale, **cfg.generator_options)
        self.init_from = self.init_d_from = None
        if cfg.init_from != "none":
            init_generator(self.net_g, Path(cfg.init_from), stage, cfg.generator, cfg.generator_options)
            self.init_from = cfg.init_from
        self.net_d = (None if cfg.discriminator == "none"
                      else build_model(cfg.discriminator, **cfg.discriminator_options))
        if self.net_d is not None and cfg.init_d_from != "none":
            init_discriminator(self.net_d, Path(cfg.init_d_from), stage, cfg.discriminator, cfg.discriminator_options)
            self.init_d_from = cfg.init_d_from
        if ddp.world_size > 1:
            self._sync_batchnorm()
        self.ema = EMA(self.net_g, cfg.ema_decay, foreach=common.ema_foreach) if cfg.ema_decay > 0 else None
        for net in (self.net_g, self.net_d, self.ema.model if self.ema else None):
            if net is not None:
                net.to(device, memory_format=self.memory_format)

        self.pixel = losses.PixelLoss(cfg.pixel.type) if cfg.pixel.type != "none" else None
        self.perceptual = None
        self.vgg_weights = "unused"
        if cfg.perceptual.type != "none":
            self.vgg_weights = common.vgg_weights
            self.perceptual = losses.perceptual_loss(cfg.perceptual.type, cfg.perceptual.layer,
                                                     cfg.perceptual.feature_scale, common.vgg_weights
                                                     ).to(device, memory_format=self.memory_format)
        self.gan_type = cfg.gan.type
        # real-world inputs: Real-ESRGAN's chain on the HR of each batch, from (seed, iteration, global sample)
        self.degradation = params.degradation.settings(self.scale) if cfg.degradation == "realworld" else None
        self.seed, self.last_draws = common.seed, None  # (the last batch's draws: training/degradation_log.py)
        self.paired_prob = params.degradation.paired_prob
        self.usm = any(t.usm and t.type != "none" for t in (cfg.pixel, cfg.perceptual, cfg.gan))

        betas = tuple(cfg.betas)
        fused = common.fused_adam
        self.opt_g = adam(self.net_g.parameters(), cfg.lr, betas, fused=fused)
        self.opt_d = adam(self.net_d.parameters(), cfg.d_lr, betas, fused=fused) if self.net_d is not None else None
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
        self.compile_mode = common.compile
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
        with_bn = [f"{role} {getattr(self.cfg, role)}" for role, net in nets.items()
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

    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    def inputs(self, lr_u8: torch.Tensor, hr_u8: torch.Tensor, iteration: int | None = None,
               own: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """The batch on the device: (LR, HR) in [0, 1]; with ``degradation: realworld`` the LR is made here from the
        HR (:func:`~srgan_lib.training.realworld.realworld_lr`; ``own``: the samples whose stored LR is their
        image's own), keyed by (seed, ``iteration``, global sample)."""
        hr01, lr = (t.to(self.device, non_blocking=self.cuda).float() / 255 for t in (hr_u8, lr_u8))
        hr01 = hr01.contiguous(memory_format=self.memory_format)
        if self.degradation is not None:
            if iteration is None:
                raise TrainingError(f"{self.stage}: realworld inputs need the iteration (their random draws' key)")
            samples = list(range(self.ddp.rank * len(hr01), (self.ddp.rank + 1) * len(hr01)))
            lr, self.last_draws = realworld_lr(hr01, lr, self.degradation, self.seed, iteration, samples, own,
                                               self.paired_prob)
        return lr.contiguous(memory_format=self.memory_format), hr01

    def step(self, lr_u8: torch.Tensor, hr_u8: torch.Tensor, iteration: int | None = None,
             own: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """One generator update and ``d_steps`` discriminator updates of ``iteration``'s batch; the loss terms."""
        cfg = self.cfg
        lr, hr01 = self.inputs(lr_u8, hr_u8, iteration, own)
        hr = from_unit(hr01, self.out_range)  # the generator's native range
        sharp01 = usm_sharp(hr01) if self.usm else hr01  # Real-ESRGAN's targets, per loss term (``usm``)
        sharp = from_unit(sharp01, self.out_range) if self.usm else hr
        terms: dict[str, torch.Tensor] = {}

        # generator
        if self.net_d is not None:
            self.net_d.requires_grad_(False)
        with self._autocast():
            sr = self.g_train(lr)
            total = sr.new_zeros(())
            if self.pixel is not None:
                terms["pixel"] = self.pixel(sr.float(), sharp if cfg.pixel.usm else hr)
                total = total + cfg.pixel.weight * terms["pixel"]
            if self.perceptual is not None:
                terms["perceptual"] = self.perceptual(to_unit(sr, self.out_range),
                                                      sharp01 if cfg.perceptual.usm else hr01).float()
                total = total + cfg.perceptual.weight * terms["perceptual"]
            if self.net_d is not None and self.gan_type != "none":
                # the generator's gradient flows through D, whose weights are frozen here (the unwrapped module,
                # so DDP does not wait for D gradients that never come)
                fake_logits = self.d_frozen(sr).float()
                real_logits = None
                real = sharp if cfg.gan.usm else hr
                if self.gan_type == "ragan":  # a constant for G (detached in the loss): no graph to keep
                    with torch.no_grad():
                        real_logits = self.d_frozen(real).float()
                terms["gan_g"] = losses.generator_adversarial_loss(self.gan_type, fake_logits, real_logits)
                total = total + cfg.gan.weight * terms["gan_g"]
        terms["total_g"] = total.float()
        self._check_finite(terms)
        self.opt_g.zero_grad(set_to_none=True)
        self.scaler.scale(total).backward()
        if cfg.grad_clip:  # bounds a spike's share of Adam's moments; the norm before clipping is logged (grad_norm)
            self.scaler.unscale_(self.opt_g)
            terms["grad_norm"] = torch.nn.utils.clip_grad_norm_(self.net_g.parameters(), cfg.grad_clip, foreach=True)
        self.scaler.step(self.opt_g)
        self.scaler.update()

        # discriminator
        if self.net_d is not None and self.gan_type != "none":
            self.net_d.requires_grad_(True)
            fake = sr.detach()
            for _ in range(cfg.d_steps):
                with self._autocast():
                    real_logits = self.d_train(sharp if cfg.gan.usm else hr).float()
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

    def ranks_agree(self, bad: torch.Tensor) -> tuple[bool, list[int]]:
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
        any_bad, ranks = self.ranks_agree(~torch.isfinite(values).all())
        if any_bad:
            mine = {k: float(v.detach()) for k, v in terms.items() if not math.isfinite(float(v.detach()))}
            raise NonFiniteLoss(f"non-finite loss {mine}" if mine else f"non-finite loss on rank(s) {ranks}")

    def sync(self) -> None:
        """Read the non-finite flag accumulated since the last sync (one host synchronisation; under DDP every rank
        syncs at the same iterations and they agree)."""
        if self.sync_every > 1:
            flag = self._nonfinite if self._nonfinite is not None else torch.zeros((), dtype=torch.bool)
            self._nonfinite = None
            any_bad, ranks = self.ranks_agree(flag)
            if any_bad:
                raise NonFiniteLoss(f"non-finite loss within the last {self.sync_every} iterations on rank(s) "
                                    f"{ranks} (train.sync_every)")

    def weights_finite(self) -> bool:
        return all(bool(torch.isfinite(p).all()) for p in self.net_g.parameters())

    def learning_rate(self, base_lr: float, iteration: int) -> float:
        """The stage's schedule (warm-up, then multistep or cosine) at ``iteration`` for a base rate."""
        cfg = self.cfg
        return learning_rate(base_lr, iteration, schedule=cfg.schedule, iterations=cfg.iterations,
                             warmup=cfg.warmup, milestones=cfg.milestones, gamma=cfg.gamma,
                             lr_min=cfg.lr_min * base_lr / cfg.lr)

    def set_lr(self, iteration: int) -> float:
        lr_g = self.learning_rate(self.cfg.lr, iteration)
        set_lr(self.opt_g, lr_g)
        if self.opt_d is not None:
            set_lr(self.opt_d, self.learning_rate(self.cfg.d_lr, iteration))
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
                    index, size = self.cfg.iterations + 1 + k, self.cfg.batch_size
                    lr, _ = self.inputs(*patches.batch(index, size), index, patches.own_lr(index, size))
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
            term = getattr(cfg, kind)
            if term.type == "none":
                return "none"
            layers = cfg.perceptual.layer
            shown = layers if isinstance(layers, str) else "+".join(f"{k} x{w:g}" for k, w in layers.items())
            where = f" on {shown}" if kind == "perceptual" else ""
            return f"{term.type}{where} x {term.weight:g}{' (USM targets)' if term.usm else ''}"

        return {
            "stage": self.stage, "generator": cfg.generator, "generator_options": dict(cfg.generator_options),
            "parameters": count_parameters(self.net_g), "iterations": cfg.iterations,
            "batch_size": cfg.batch_size, "hr_size": cfg.hr_size, "lr": cfg.lr, "degradation": cfg.degradation,
            "schedule": cfg.schedule, "warmup": cfg.warmup, "ema_decay": cfg.ema_decay,
            "losses": {k: loss(k) for k in ("pixel", "perceptual", "gan")},
            "vgg_weights": self.vgg_weights, "init_from": self.init_from or "none",
            "init_d_from": self.init_d_from or "none",
            "precision": self.compute.precision, "memory_format": self.compute.layout, **extra,
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
