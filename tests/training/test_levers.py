"""The training-step levers of ``params.yaml`` (``train.*``) checked for numerics on CPU against the plain step: fused
Adam, the foreach EMA, torch.compile, channels_last, bf16 autocast, loss read-back every N iterations and worker
processes. Each short run's losses (and weights) must stay within a stated tolerance of the plain fp32 run."""

from __future__ import annotations

import copy
import math

import pytest
import torch

from srgan_lib.data.store import open_training_store
from srgan_lib.hardware import ComputeFormat
from srgan_lib.training import NonFiniteLoss
from srgan_lib.training.data import PairedPatches
from srgan_lib.training.distributed import Dist
from srgan_lib.training.optim import EMA, adam
from srgan_lib.training.stage import train_stage
from srgan_lib.training.trainer import Trainer
from tests.conftest import micro_params

PLAIN = {"train.fused_adam": "false", "train.ema_foreach": "false", "train.compile": "none",
         "train.channels_last": "false", "train.amp": "none", "train.sync_every": 1, "train.workers": 0}


def resolve_levers_forced(params: dict) -> ComputeFormat:
    """The levers exactly as params ask, whatever this CPU runs fast (bf16 is emulated on AVX2-only CPUs: slow, but
    its numerics are what is checked here)."""
    common = params.train
    return ComputeFormat("fp32" if common.amp == "none" else common.amp, common.channels_last)


def short_run(micro_data, tmp_path, stage: str, steps: int = 4, **levers: object) -> tuple[list[dict], Trainer]:
    """``steps`` optimisation steps of the micro ``stage`` on the store's batches; the loss terms of each step."""
    params = micro_params(micro_data, tmp_path, stage, **{**PLAIN, **levers})
    trainer = Trainer(stage, params, torch.device("cpu"), Dist(), compute=resolve_levers_forced(params))
    store = open_training_store(micro_data / "store", micro_data / "lists" / "train.json", micro_data / "lr" / "X4", 4)
    patches = PairedPatches(store, hr_size=32, augment=True, seed=0)
    losses = []
    for it in range(1, steps + 1):
        trainer.set_lr(it)
        losses.append({k: float(v) for k, v in trainer.step(*patches.batch(it, 4)).items()})
    trainer.sync()
    return losses, trainer


def assert_losses_close(a: list[dict], b: list[dict], rtol: float, atol: float = 1e-4) -> float:
    """Every loss term of every step within ``rtol`` relative (plus ``atol`` for the discriminator's mean logits,
    which sit near 0); returns the worst relative difference."""
    worst = 0.0
    for ra, rb in zip(a, b, strict=True):
        assert ra.keys() == rb.keys()
        for k in ra:
            diff = abs(ra[k] - rb[k])
            worst = max(worst, diff / max(abs(ra[k]), 1e-8))
            assert diff <= rtol * abs(ra[k]) + atol, f"{k}: {ra[k]} vs {rb[k]} (|diff| {diff:.2e})"
    return worst


def test_fused_adam_matches_adams_formula_and_the_plain_step(micro_data, tmp_path):
    # the optimiser alone: five updates on the same gradients, fused / plain / Kingma & Ba's formula by hand
    torch.manual_seed(0)
    w0, grads = torch.randn(64, 3, 3, 3), [torch.randn(64, 3, 3, 3) for _ in range(5)]
    lr, (b1, b2), eps = 2e-4, (0.9, 0.99), 1e-8
    fused_w, plain_w = w0.clone().requires_grad_(), w0.clone().requires_grad_()
    fused = adam([fused_w], lr, (b1, b2), fused=True)
    plain = torch.optim.Adam([plain_w], lr=lr, betas=(b1, b2), foreach=False)
    assert fused.defaults["fused"]
    w, m, v = w0.clone().double(), torch.zeros_like(w0).double(), torch.zeros_like(w0).double()
    for t, g in enumerate(grads, 1):
        for param, opt in ((fused_w, fused), (plain_w, plain)):
            param.grad = g.clone()
            opt.step()
        m, v = b1 * m + (1 - b1) * g, b2 * v + (1 - b2) * g.double() ** 2
        w = w - lr * (m / (1 - b1**t)) / ((v / (1 - b2**t)).sqrt() + eps)
    torch.testing.assert_close(fused_w.detach().double(), w, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(fused_w.detach(), plain_w.detach(), rtol=1e-6, atol=1e-8)
    # the ESRGAN micro step (G, D, VGG, EMA): Adam's first updates are about +-lr per weight whatever the gradient's
    # size, so rounding differences in near-zero gradients show in D's mean logits (~1e-2) after a few steps
    ref, _ = short_run(micro_data, tmp_path, "esrgan")
    fused_run, trainer = short_run(micro_data, tmp_path, "esrgan", **{"train.fused_adam": "true"})
    assert trainer.opt_g.defaults["fused"] and trainer.opt_d.defaults["fused"]
    assert_losses_close(ref, fused_run, 1e-3, 1e-3)


def _grad_norm(net: torch.nn.Module) -> float:
    """The global L2 norm of a network's gradients, computed here (not by clip_grad_norm_)."""
    return math.sqrt(sum(float(p.grad.double().square().sum()) for p in net.parameters() if p.grad is not None))


def test_grad_clip_bounds_the_generator_gradient_and_records_its_norm(micro_data, tmp_path):
    """``grad_clip``: the first step's gradients (left in ``.grad`` by the step) rescaled to the bound, the norm
    before clipping recorded as ``grad_norm``; with the bound above the norm, the step equals the plain one."""
    plain_losses, plain = short_run(micro_data, tmp_path / "plain", "rrdbnet", steps=1)
    norm = _grad_norm(plain.net_g)
    assert norm > 0 and "grad_norm" not in plain_losses[0]
    losses, clipped = short_run(micro_data, tmp_path / "clip", "rrdbnet", steps=1, **{"rrdbnet.grad_clip": norm / 4})
    assert losses[0]["grad_norm"] == pytest.approx(norm, rel=1e-5)
    assert _grad_norm(clipped.net_g) == pytest.approx(norm / 4, rel=1e-4)
    loose, same = short_run(micro_data, tmp_path / "loose", "rrdbnet", steps=1, **{"rrdbnet.grad_clip": norm * 2})
    assert loose[0]["grad_norm"] == pytest.approx(norm, rel=1e-5)
    for a, b in zip(plain.net_g.parameters(), same.net_g.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_foreach_ema_equals_the_python_loop():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.BatchNorm2d(8), torch.nn.Conv2d(8, 3, 3))
    loop, fused = EMA(model, 0.999, foreach=False), EMA(model, 0.999, foreach=True)
    by_hand = [p.detach().clone() for p in model.parameters()]
    for _ in range(5):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p))
        loop.update(model)
        fused.update(model)
        by_hand = [0.999 * e + 0.001 * p.detach() for e, p in zip(by_hand, model.parameters(), strict=True)]
    for a, b, c in zip(loop.model.parameters(), fused.model.parameters(), by_hand, strict=True):
        assert torch.equal(a, b)
        torch.testing.assert_close(a, c, rtol=1e-5, atol=1e-6)


@pytest.mark.slow  # a server, torchrun, torch.compile or a killed subprocess: seconds to tens of seconds
def test_compile_matches_eager(micro_data, tmp_path):
    """torch.compile (Inductor, CPU C++ backend) of G, D and VGG: the ESRGAN micro step's losses agree with eager."""
    eager, _ = short_run(micro_data, tmp_path, "esrgan", steps=3)
    compiled, trainer = short_run(micro_data, tmp_path, "esrgan", steps=3, **{"train.compile": "default"})
    assert trainer.g_train is not trainer.net_g  # the forward really went through torch.compile
    worst = assert_losses_close(eager, compiled, 1e-3, 1e-3)
    print(f"compile vs eager: worst relative loss difference {worst:.2e}")


def test_channels_last_and_bf16_stay_close_to_fp32(micro_data, tmp_path):
    ref, _ = short_run(micro_data, tmp_path, "esrgan")
    cl, trainer = short_run(micro_data, tmp_path, "esrgan", **{"train.channels_last": "true"})
    conv = next(p for p in trainer.net_g.parameters() if p.dim() == 4 and p.shape[1] > 1)
    assert conv.is_contiguous(memory_format=torch.channels_last) and not conv.is_contiguous()
    assert_losses_close(ref, cl, 1e-3, 1e-3)  # rounding order only; D logits drift like fused Adam
    bf16, trainer = short_run(micro_data, tmp_path, "esrgan", **{"train.amp": "bf16"})
    assert trainer.amp_dtype is torch.bfloat16
    # bf16 keeps 8 bits of mantissa: the losses agree to a few per cent; D's mean logits (near 0, moved by Adam's
    # +-lr first updates) to a few hundredths
    logits = ("d_real", "d_fake")
    worst = assert_losses_close([{k: v for k, v in r.items() if k not in logits} for r in ref],
                                [{k: v for k, v in r.items() if k not in logits} for r in bf16], 5e-2, 1e-3)
    assert_losses_close([{k: r[k] for k in logits} for r in ref], [{k: r[k] for k in logits} for r in bf16], 0, 0.1)
    print(f"bf16 vs fp32: worst relative loss difference {worst:.2e}")


def test_sync_every_changes_nothing_but_when_nan_is_seen(micro_data, tmp_path):
    every, t_every = short_run(micro_data, tmp_path, "rrdbnet", steps=6)
    lazy, t_lazy = short_run(micro_data, tmp_path, "rrdbnet", steps=6, **{"train.sync_every": 4})
    assert every == lazy  # bit-identical: the lever only moves the host read-back
    assert all(torch.equal(a, b) for a, b in zip(t_every.net_g.parameters(), t_lazy.net_g.parameters(), strict=True))
    # the learning rate explodes after update 4: with sync_every 4 the NaN is seen at the next sync point (a
    # multiple of 4), and the last checkpoint with finite weights is kept
    params = micro_params(micro_data, tmp_path, "rrdbnet", **{
        "rrdbnet.iterations": 12, "rrdbnet.ckpt_every": 4, "rrdbnet.log_every": 4, "rrdbnet.gamma": 1e30,
        "rrdbnet.val_every": 0, "train.sync_every": 4})
    with pytest.raises(NonFiniteLoss, match=r"within the last 4 iterations .* at iteration (8|12) .*iter_0000000[48]"):
        train_stage(params, "rrdbnet", progress=False)


def test_worker_processes_train_bit_identically(micro_data, tmp_path, monkeypatch):
    """train.workers=2 builds the batches in two other processes (each records its PID as it builds one) and the
    weights are bit-identical to batches built inline."""
    import os

    from srgan_lib.training import data

    built = tmp_path / "built-by.txt"
    original = data.IterationBatches.__getitem__

    def recorded(self, iteration):
        with built.open("a") as f:
            f.write(f"{os.getpid()}\n")
        return original(self, iteration)

    monkeypatch.setattr(data.IterationBatches, "__getitem__", recorded)  # forked workers inherit the patch
    common = {"rrdbnet.val_every": 0}
    inline = train_stage(micro_params(micro_data, tmp_path / "a", "rrdbnet", **common), "rrdbnet", progress=False)
    assert set(built.read_text().split()) == {str(os.getpid())}
    built.unlink()
    workers = train_stage(micro_params(micro_data, tmp_path / "b", "rrdbnet", **common, **{"train.workers": 2}),
                          "rrdbnet", progress=False)
    pids = built.read_text().split()
    assert len(pids) == 6 and str(os.getpid()) not in pids and len(set(pids)) == 2  # 6 iterations, 2 workers
    a = torch.load(inline.model_path, weights_only=True)["params"]
    b = torch.load(workers.model_path, weights_only=True)["params"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_precise_bn_equals_torch_update_bn_and_leaves_training_alone(micro_data, tmp_path):
    """The delivered SRResNet's BatchNorm statistics are recomputed over training batches exactly as
    torch.optim.swa_utils.update_bn does for averaged weights; the training state is not touched (resume stays
    exact)."""
    from torch.optim.swa_utils import update_bn

    params = micro_params(micro_data, tmp_path, "srresnet", **{**PLAIN, "srresnet.ema_decay": 0.9})
    trainer = Trainer("srresnet", params, torch.device("cpu"), Dist(), compute=ComputeFormat("fp32", False))
    store = open_training_store(micro_data / "store", micro_data / "lists" / "train.json", micro_data / "lr" / "X4", 4)
    patches = PairedPatches(store, hr_size=32, augment=True, seed=0)
    for it in range(1, 4):
        trainer.set_lr(it)
        trainer.step(*patches.batch(it, 4))
    before = {k: v.clone() for k, v in trainer.ema.model.state_dict().items()}
    g, ema = trainer.final_generators(patches, batches=3)
    assert all(torch.equal(before[k], v) for k, v in trainer.ema.model.state_dict().items())  # copies only
    reference = copy.deepcopy(trainer.ema.model)
    cfg = params.srresnet
    update_bn([patches.batch(cfg.iterations + 1 + k, cfg.batch_size)[0].float() / 255 for k in range(3)],
              reference)
    for (name, a), b in zip(ema.state_dict().items(), reference.state_dict().values(), strict=True):
        if "running" in name:
            torch.testing.assert_close(a, b, msg=name)
    assert not torch.equal(ema.state_dict()["body.0.bn1.running_mean"], before["body.0.bn1.running_mean"])
    assert not ema.training and not g.training
    rrdb = Trainer("rrdbnet", micro_params(micro_data, tmp_path, "rrdbnet", **PLAIN), torch.device("cpu"), Dist())
    assert rrdb.final_generators(patches, batches=3)[0] is rrdb.net_g  # no BatchNorm: nothing to recompute


def test_bf16_training_tracks_fp32_and_resumes_bit_exactly(micro_data, tmp_path):
    """30 RRDBNet updates in bf16 autocast + channels_last follow the fp32 loss curve within 3 % (each logged loss;
    the weights, optimiser and EMA stay fp32), and a bf16 run interrupted and resumed ends bit-identical."""
    common = {**PLAIN, "rrdbnet.iterations": 30, "rrdbnet.ckpt_every": 10, "rrdbnet.log_every": 5,
              "rrdbnet.val_every": 0, "rrdbnet.lr": 1e-3}
    bf16 = ComputeFormat("bf16", True)
    fp32 = train_stage(micro_params(micro_data, tmp_path / "fp32", "rrdbnet", **common), "rrdbnet", progress=False,
                       compute=ComputeFormat("fp32", True))
    ref = train_stage(micro_params(micro_data, tmp_path / "bf16", "rrdbnet", **common), "rrdbnet", progress=False,
                      compute=bf16)

    def curve(res) -> list[float]:
        rows = (res.run_dir / "history.csv").read_text().splitlines()
        col = rows[0].split(",").index("pixel")
        return [float(r.split(",")[col]) for r in rows[1:]]

    a, b = curve(fp32), curve(ref)
    worst = max(abs(x - y) / x for x, y in zip(a, b, strict=True))
    print(f"bf16 vs fp32 over 30 updates: L1 {a[0]:.4f} -> {a[-1]:.4f} (fp32), {b[-1]:.4f} (bf16); "
          f"worst relative difference {worst:.2%}")
    assert a[-1] < 0.8 * a[0] and worst < 0.03
    assert worst > 0  # bf16 really ran: identical curves would mean the levers were ignored
    state = torch.load(ref.model_path, weights_only=True)
    assert state["meta"]["precision"] == "bf16" and state["meta"]["memory_format"] == "channels_last"
    assert all(v.dtype == torch.float32 for v in state["params"].values() if v.is_floating_point())
    # interrupted after 16 updates (last checkpoint: 10), resumed: the same bits as the uninterrupted bf16 run
    params = micro_params(micro_data, tmp_path / "resumed", "rrdbnet", **common)
    train_stage(params, "rrdbnet", progress=False, stop_after=16, compute=bf16)
    res = train_stage(params, "rrdbnet", resume=True, progress=False, compute=bf16)
    assert res.resumed_from == 10
    resumed = torch.load(res.model_path, weights_only=True)
    for key in ("params", "params_ema"):
        assert all(torch.equal(state[key][k], resumed[key][k]) for k in state[key]), key


@pytest.mark.parametrize("stage", ["esrgan", "srgan"])
def test_fp16_with_several_discriminator_steps_scales_each_optimiser_once_per_step(micro_data, tmp_path, stage):
    """fp16 autocast with loss scaling and ``d_steps: 2``: one GradScaler shared by G and D was stepped three times per
    update (torch: "step() has already been called since the last update()"); each optimiser now has its own. The
    first step's generator losses (before any update) are the fp32 ones within fp16 rounding; later ones differ
    where a scaler skips an overflowing step (what loss scaling does), so they are only checked finite."""
    ref, _ = short_run(micro_data, tmp_path, stage, steps=3, **{f"{stage}.d_steps": 2})
    half, trainer = short_run(micro_data, tmp_path, stage, steps=3, **{f"{stage}.d_steps": 2, "train.amp": "fp16"})
    assert trainer.amp_dtype == torch.float16 and trainer.scaler.is_enabled() and trainer.scaler_d.is_enabled()
    assert trainer.scaler.get_scale() > 0 and trainer.scaler_d.get_scale() > 0
    assert set(trainer.state()) >= {"scaler", "scaler_d"}
    first = [{k: v for k, v in ref[0].items() if k in ("pixel", "perceptual", "total_g")}]
    assert_losses_close(first, [{k: half[0][k] for k in first[0]}], rtol=0.02)
    assert all(math.isfinite(v) for row in half for v in row.values()) and len(half) == 3
