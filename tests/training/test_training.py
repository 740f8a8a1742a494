"""The training engine: the four recipes on CPU (micro profile and the papers' configuration), exact resume after
SIGKILL, the NaN guard, DDP with gloo against a single process, MLflow tracking read back, network interpolation."""

from __future__ import annotations

import copy
import csv
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from srgan_lib.config.paramfile import ParamsError, apply_overrides
from srgan_lib.config.params import load_params, validate
from srgan_lib.models import build_model, load_generator_state
from srgan_lib.training import Diverged, NonFiniteLoss
from srgan_lib.training.checkpoint import list_checkpoints
from srgan_lib.training.divergence import diverged
from srgan_lib.training.stage import ResumeError, train_stage
from tests.conftest import BENCHMARKS, MICRO, REPO, SRGAN, micro_overrides, micro_params, run_cli

STAGES = ("srresnet", "srgan", "rrdbnet", "esrgan", "realesrnet", "realesrgan")


def generator(path: Path, key: str = "params") -> dict[str, torch.Tensor]:
    return torch.load(path, map_location="cpu", weights_only=True)[key]


@pytest.mark.parametrize("stage", STAGES)
def test_each_recipe_trains_on_cpu_micro_profile(stage, micro_data, tmp_path):
    res = train_stage(micro_params(micro_data, tmp_path, stage), stage, progress=False)
    assert res.iterations == 6 and res.model_path == tmp_path / "models" / f"{stage}.pth"
    ckpt = torch.load(res.model_path, map_location="cpu", weights_only=True)
    assert set(ckpt) == {"params", "params_ema", "meta"}  # BasicSR layout plus what trained it
    meta = ckpt["meta"]
    assert meta["stage"] == stage and meta["iterations"] == 6 and meta["batch_size"] == 4 and meta["hr_size"] == 32
    assert meta["parameters"] == sum(v.numel() for k, v in ckpt["params"].items()
                                     if "running" not in k and "num_batches" not in k)
    assert meta["precision"] in ("fp32", "bf16") and meta["memory_format"] == "channels_last"
    assert meta["vgg_weights"] == ("random" if stage in ("srgan", "esrgan", "realesrgan") else "unused")
    assert meta["degradation"] == ("realworld" if stage.startswith("real") else "bicubic")
    net = build_model("srresnet" if stage in ("srresnet", "srgan") else "rrdbnet",
                      **MICRO[stage]["generator_options"])
    net.load_state_dict(ckpt["params_ema"], strict=True)
    expected = {"srresnet": {"pixel"}, "srgan": {"perceptual", "gan_g", "gan_d"}, "rrdbnet": {"pixel"},
                "esrgan": {"pixel", "perceptual", "gan_g", "gan_d"}, "realesrnet": {"pixel"},
                "realesrgan": {"pixel", "perceptual", "gan_g", "gan_d"}}[stage]
    assert expected <= set(res.final_losses) and all(v == v for v in res.final_losses.values())
    assert 0 < res.validation["psnr_y"] < 60 and 0 < res.validation["ssim_y"] <= 1
    assert (res.run_dir / "val" / "iter_00000003.png").is_file() and (res.run_dir / "history.csv").is_file()
    history = (res.run_dir / "history.csv").read_text().splitlines()
    assert len(history) == 7 and history[0].startswith("iteration,lr,")
    lrs = [float(line.split(",")[1]) for line in history[1:]]
    gamma = micro_params(micro_data, tmp_path, stage).stage(stage).gamma
    assert lrs[3] == lrs[0] and lrs[4] == pytest.approx(lrs[0] * gamma)  # milestone 4: updates 5+ use lr * gamma


def test_gan_stage_starts_from_the_psnr_checkpoint_via_cli(micro_data, tmp_path):
    sets = micro_overrides(micro_data, tmp_path, "srresnet")
    out = run_cli("train", "srresnet", "--set", *sets, "--no-progress")
    assert "train srresnet: 6 iterations" in out.stdout and "validation: psnr_y" in out.stdout
    psnr_ckpt = tmp_path / "models" / "srresnet.pth"
    sets = micro_overrides(micro_data, tmp_path, "srgan", **{"srgan.init_from": psnr_ckpt})
    sets.remove("srgan.init_from=none")
    # before any GAN update, the generator holds exactly the PSNR stage's EMA weights
    params = validate(apply_overrides(yaml.safe_load((REPO / "params.yaml").read_text()), sets))
    from srgan_lib.training.distributed import Dist
    from srgan_lib.training.trainer import Trainer

    trainer = Trainer("srgan", params, torch.device("cpu"), Dist())
    for k, v in generator(psnr_ckpt, "params_ema").items():
        assert torch.equal(trainer.net_g.state_dict()[k], v), k
    bad = [s for s in sets if not s.startswith("srgan.generator_options")] + [
        "srgan.generator_options={num_block: 3, num_feat: 16}"]
    proc = run_cli("train", "srgan", "--set", *bad, "--no-progress", check=False)
    assert proc.returncode == 2 and "generator_options must match the PSNR stage" in proc.stderr


def test_existing_checkpoints_need_resume_or_restart(micro_data, tmp_path):
    params = micro_params(micro_data, tmp_path, "rrdbnet")
    train_stage(params, "rrdbnet", progress=False)
    with pytest.raises(ResumeError, match="pass --resume to continue"):
        train_stage(params, "rrdbnet", progress=False)
    changed = micro_params(micro_data, tmp_path, "rrdbnet", **{"rrdbnet.lr": 1e-3})
    with pytest.raises(ResumeError, match="different parameters"):
        train_stage(changed, "rrdbnet", resume=True, progress=False)
    res = train_stage(changed, "rrdbnet", restart=True, progress=False)
    assert res.resumed_from == 0
    # auto (dvc.yaml): the same parameters resume, changed ones start over
    assert train_stage(changed, "rrdbnet", auto_resume=True, progress=False).resumed_from == 6
    assert train_stage(params, "rrdbnet", auto_resume=True, progress=False).resumed_from == 0


def test_auto_resume_starts_over_when_the_psnr_parent_changed(micro_data, tmp_path):
    """dvc.yaml re-runs a GAN stage when its init_from model changed; resuming the old checkpoints (same params, same
    paths) would deliver a GAN trained from the previous parent, so the inputs' content is part of the fingerprint."""
    parent = micro_params(micro_data, tmp_path, "rrdbnet")
    train_stage(parent, "rrdbnet", progress=False)
    gan = micro_params(micro_data, tmp_path, "esrgan", **{"esrgan.init_from": tmp_path / "models" / "rrdbnet.pth"})
    assert train_stage(gan, "esrgan", progress=False).resumed_from == 0
    assert train_stage(gan, "esrgan", auto_resume=True, progress=False).resumed_from == 6  # unchanged: resumed
    train_stage(micro_params(micro_data, tmp_path, "rrdbnet", **{"rrdbnet.lr": 1e-3}), "rrdbnet", restart=True,
                progress=False)  # a new parent at the same path
    res = train_stage(gan, "esrgan", auto_resume=True, progress=False)
    assert res.resumed_from == 0


@pytest.mark.slow  # a server, torchrun, torch.compile or a killed subprocess: seconds to tens of seconds
def test_sigkill_and_resume_is_bit_identical(micro_data, tmp_path):
    """A run killed with SIGKILL mid-way and resumed ends with exactly the weights of an uninterrupted run: the
    discriminator, the EMA, the optimisers, the best validated generator it delivers and the real-world degradation's
    draws (keyed by iteration and sample, so nothing to save) included. The recipe is `realesrgan` at micro size in
    x4plus's form: real-world inputs, USM targets for L1 and the five-layer perceptual, vanilla GAN on the U-Net SN
    discriminator (its power-iteration vectors are buffers: checkpointed), EMA, `deliver: psnr_y`. SIGTERM's test
    below covers ESRGAN's form on bicubic inputs."""
    common = {"realesrgan.iterations": 16, "realesrgan.ckpt_every": 4, "realesrgan.val_every": 4,
              "realesrgan.log_every": 2, "realesrgan.milestones": "[6, 12]", "realesrgan.pixel.usm": "true",
              "realesrgan.deliver": "psnr_y",
              "realesrgan.perceptual.layer": "{conv1_2: 0.1, conv2_2: 0.1, conv3_4: 1, conv4_4: 1, conv5_4: 1}"}
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    ref = tmp_path / "ref"
    run_cli("train", "realesrgan", "--no-progress", "--set", *micro_overrides(micro_data, ref, "realesrgan", **common))

    killed = tmp_path / "killed"
    args = [SRGAN, "train", "realesrgan", "--no-progress", "--set",
            *micro_overrides(micro_data, killed, "realesrgan", **common)]
    proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while not list_checkpoints(killed / "runs" / "realesrgan") and time.monotonic() < deadline:
        assert proc.poll() is None, "the run ended before it could be killed"
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert not (killed / "models" / "realesrgan.pth").exists()
    done = [i for i, _ in list_checkpoints(killed / "runs" / "realesrgan")]
    assert done and done[-1] < 16

    out = run_cli("train", "realesrgan", "--no-progress", "--resume", "--set",
                  *micro_overrides(micro_data, killed, "realesrgan", **common))
    assert f"(resumed at {done[-1]})" in out.stdout
    for key in ("params", "params_ema"):
        a, b = generator(ref / "models" / "realesrgan.pth", key), generator(killed / "models" / "realesrgan.pth", key)
        assert a.keys() == b.keys()
        assert all(torch.equal(a[k], b[k]) for k in a), f"{key} differ after resume"
    # the discriminator and the optimiser moments too: compare the last full checkpoints
    ca = torch.load(ref / "runs" / "realesrgan" / "checkpoints" / "iter_00000016.pt", weights_only=True)
    cb = torch.load(killed / "runs" / "realesrgan" / "checkpoints" / "iter_00000016.pt", weights_only=True)
    assert all(torch.equal(ca["discriminator"][k], cb["discriminator"][k]) for k in ca["discriminator"])
    assert "conv8.weight_u" in ca["discriminator"]  # the U-Net SN discriminator, power-iteration state included
    assert [h["total_g"] for h in ca["history"]] == [h["total_g"] for h in cb["history"]]
    assert ca["val_history"] == cb["val_history"]
    meta = [torch.load(d / "models" / "realesrgan.pth", weights_only=True)["meta"] for d in (ref, killed)]
    assert meta[0]["delivered"] == meta[1]["delivered"] and meta[0]["degradation"] == "realworld"


@pytest.mark.slow  # a server, torchrun, torch.compile or a killed subprocess: seconds to tens of seconds
def test_sigterm_stops_at_a_step_boundary_and_auto_resume_is_bit_identical(micro_data, tmp_path):
    """SIGTERM (a scheduler's stop) mid-run: the stage finishes its step, checkpoints it, exits 130 with the MLflow run
    ended KILLED; `--auto-resume` continues from that step to exactly the weights of an uninterrupted run."""
    from mlflow.tracking import MlflowClient

    common = {"esrgan.iterations": 40, "esrgan.ckpt_every": 5, "esrgan.val_every": 0, "esrgan.log_every": 2,
              "esrgan.milestones": "[6, 12]"}
    ref = tmp_path / "ref"
    run_cli("train", "esrgan", "--no-progress", "--set", *micro_overrides(micro_data, ref, "esrgan", **common))

    stopped, uri = tmp_path / "stopped", f"sqlite:///{tmp_path / 'mlflow.db'}"
    sets = [*micro_overrides(micro_data, stopped, "esrgan", **common), f"tracking.uri={uri}"]
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    proc = subprocess.Popen([SRGAN, "train", "esrgan", "--no-progress", "--set", *sets], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 300
    while not list_checkpoints(stopped / "runs" / "esrgan") and time.monotonic() < deadline:
        assert proc.poll() is None, "the run ended before it could be stopped"
        time.sleep(0.02)
    proc.send_signal(signal.SIGTERM)
    out = proc.communicate(timeout=120)[0]
    assert proc.returncode == 130, out
    match = re.search(r"stopped by SIGTERM after iteration (\d+) \(checkpoint written", out)
    assert match, out[-2000:]
    last = int(match.group(1))
    assert list_checkpoints(stopped / "runs" / "esrgan")[-1][0] == last < 40  # the step it stopped at, saved
    assert not (stopped / "models" / "esrgan.pth").exists()
    runs = MlflowClient(tracking_uri=uri).search_runs(
        [MlflowClient(tracking_uri=uri).get_experiment_by_name("srgan").experiment_id])
    assert [r.info.status for r in runs] == ["KILLED"]

    out = run_cli("train", "esrgan", "--no-progress", "--auto-resume", "--set", *sets)
    assert f"(resumed at {last})" in out.stdout
    for key in ("params", "params_ema"):
        a, b = generator(ref / "models" / "esrgan.pth", key), generator(stopped / "models" / "esrgan.pth", key)
        assert all(torch.equal(a[k], b[k]) for k in a), f"{key} differ after SIGTERM and resume"


def test_nan_guard_stops_and_keeps_the_last_good_checkpoint(micro_data, tmp_path):
    # the learning rate is multiplied by 1e30 after update 4: the weights explode and the loss becomes inf/NaN
    params = micro_params(micro_data, tmp_path, "rrdbnet", **{"rrdbnet.iterations": 12, "rrdbnet.ckpt_every": 2,
                                                              "rrdbnet.gamma": 1e30, "rrdbnet.val_every": 0})
    expected = r"non-finite .* at iteration [5-9].*last good checkpoint is .*iter_0000000[24]"
    with pytest.raises(NonFiniteLoss, match=expected):
        train_stage(params, "rrdbnet", progress=False)
    kept = list_checkpoints(tmp_path / "runs" / "rrdbnet")
    assert kept and kept[-1][0] == 4
    last = torch.load(kept[-1][1], weights_only=True)["generator"]
    assert all(torch.isfinite(v).all() for v in last.values() if v.is_floating_point())
    assert not (tmp_path / "models" / "rrdbnet.pth").exists()


def test_a_run_that_diverges_to_huge_finite_losses_is_stopped(micro_data, tmp_path):
    """The learning rate x100 after update 4: the pixel loss jumps from ~0.2 to 1e10-1e17 and stays, finite (seen
    unguarded: the run trained on and delivered a 10 dB generator). Three log rows above 100x the best stop it, name
    the loss and the last checkpoint from before it rose, and deliver nothing."""
    params = micro_params(micro_data, tmp_path, "rrdbnet", **{"rrdbnet.iterations": 16, "rrdbnet.ckpt_every": 2,
                                                              "rrdbnet.gamma": 100.0, "rrdbnet.val_every": 0})
    expected = (r"rrdbnet: training diverged: the pixel loss was .* at iteration (\d+), above 100x its best .* in "
                r"every log row since iteration \d+ .*iter_00000004\.pt.*rrdbnet\.lr")
    with pytest.raises(Diverged, match=expected) as exc:
        train_stage(params, "rrdbnet", progress=False)
    stopped = int(re.search(r"at iteration (\d+)", str(exc.value)).group(1))
    rows = list(csv.DictReader((tmp_path / "runs" / "rrdbnet" / "history.csv").open()))
    assert stopped < 16 and int(rows[-1]["iteration"]) == stopped  # stopped early; the rows up to it are kept
    assert all(float(r["pixel"]) > 100 * min(float(q["pixel"]) for q in rows[:4]) for r in rows[-3:])
    assert not (tmp_path / "models" / "rrdbnet.pth").exists()


@pytest.mark.parametrize(("pixel", "stops"), [
    ([0.5, 0.3, 0.2, 28.0, 0.2, 0.4, 0.9], None),  # one spike of 140x that recovers (seen at lr x10): spared
    ([0.5, 0.3, 0.2, 21.0, 25.0, 0.3], None),  # two rows above: spared
    ([0.5, 0.3, 0.2, 21.0, 25.0, 20.1], 6),  # three rows above 100 x 0.2: stopped
    ([0.5, 0.3, 0.2, 21.0, 25.0, 19.9], None),  # the third just under 100 x 0.2
])
def test_the_divergence_rule_on_hand_made_rows(pixel, stops):
    rows = [{"iteration": i + 1, "lr": 1e-3, "pixel": v, "total_g": v} for i, v in enumerate(pixel)]
    found = diverged(rows)
    assert (found.iteration if found else None) == stops
    if found:
        assert (found.term, found.best, found.best_iteration, found.began) == ("pixel", 0.2, 3, 4)
    assert diverged([{"iteration": 1, "gan_g": 1.0}] * 6) is None  # a recipe logging none of the watched terms


@pytest.mark.slow  # a server, torchrun, torch.compile or a killed subprocess: seconds to tens of seconds
def test_ddp_two_gloo_processes_match_one_process(micro_data, tmp_path):
    """torchrun with 2 CPU processes (gloo), each on half of the global batch, matches one process on all of it."""
    # fp32 on every CPU: under bf16 a half batch and the whole batch round differently, beyond this tolerance
    common = {"rrdbnet.iterations": 4, "rrdbnet.val_every": 0, "rrdbnet.ckpt_every": 2, "rrdbnet.ema_decay": 0.5,
              "train.amp": "none"}
    single = tmp_path / "single"
    run_cli("train", "rrdbnet", "--no-progress", "--set", *micro_overrides(micro_data, single, "rrdbnet", **common))
    ddp = tmp_path / "ddp"
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
           "-m", "srgan_lib.cli", "train", "rrdbnet", "--no-progress", "--set",
           *micro_overrides(micro_data, ddp, "rrdbnet", **common)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600, cwd=REPO)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.count("train rrdbnet: 4 iterations") == 1  # only rank 0 reports
    for key in ("params", "params_ema"):
        a, b = generator(single / "models" / "rrdbnet.pth", key), generator(ddp / "models" / "rrdbnet.pth", key)
        for k in a:
            torch.testing.assert_close(b[k], a[k], rtol=1e-4, atol=1e-5, msg=f"{key}.{k}")
        print(f"DDP vs single process, {key}: max |diff| {max((a[k] - b[k]).abs().max().item() for k in a):.3g}")
    init = build_model("rrdbnet", **MICRO["rrdbnet"]["generator_options"])
    moved = max((a[k] - init.state_dict()[k]).abs().max().item() for k in a if k.endswith("weight"))
    assert moved > 1e-4  # the comparison is between trained weights, not two copies of the initialisation


@pytest.mark.slow  # a server, torchrun, torch.compile or a killed subprocess: seconds to tens of seconds
def test_ddp_a_non_finite_loss_on_one_rank_stops_every_rank(micro_data, tmp_path):
    """Rank 1 alone sees NaN: both ranks stop at the same iteration with the reason, no rank waits in the gradient
    all-reduce for the one that left (gloo's default timeout is 30 minutes), and no checkpoint of that step exists."""
    common = {"rrdbnet.iterations": 6, "rrdbnet.val_every": 0, "rrdbnet.ckpt_every": 2, "train.sync_every": 1}
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
           "--monitor-interval", "20",  # slower than a healthy stop: a rank that hangs is killed, silently, later
           str(REPO / "tests" / "training" / "ddp_nonfinite_worker.py"), "train", "rrdbnet", "--no-progress", "--set",
           *micro_overrides(micro_data, tmp_path, "rrdbnet", **common)]
    start = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, cwd=REPO)
    elapsed = time.perf_counter() - start
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out
    assert "non-finite loss {'pixel': nan" in out  # rank 1, in its own words
    assert "non-finite loss on rank(s) [1] at iteration 3" in out  # rank 0 learnt it from rank 1
    # bound: a rank that waited for the NaN rank in a collective would hang until dist_timeout (600 s); stopping
    # at the step boundary takes seconds, 120 s is the margin for a loaded 2-core machine
    assert elapsed < 120, f"ranks took {elapsed:.0f} s to stop"
    kept = [it for it, _ in list_checkpoints(tmp_path / "runs" / "rrdbnet")]
    assert kept == [2]  # the checkpoint before the bad step, none after


def test_mlflow_run_is_read_back_from_a_sqlite_store(micro_data, tmp_path, monkeypatch):
    from mlflow.tracking import MlflowClient

    from srgan_lib import tracking

    uri = f"sqlite:///{tmp_path / 'mlflow' / 'mlflow.db'}"
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    parent = tracking.start_pipeline_run(uri, "micro", "pipeline")
    monkeypatch.setenv(tracking.PARENT_ENV, parent)
    params = micro_params(micro_data, tmp_path, "esrgan", **{"tracking.uri": uri, "tracking.experiment": "micro"})
    res = train_stage(params, "esrgan", progress=False)

    client = MlflowClient(tracking_uri=uri)
    run = client.get_run(res.mlflow_run_id)
    assert run.info.status == "FINISHED" and run.info.run_name == "esrgan"
    assert run.data.tags["mlflow.parentRunId"] == parent
    assert run.data.params["esrgan.gan.type"] == "ragan" and float(run.data.params["esrgan.gan.weight"]) == 5e-3
    assert run.data.params["esrgan.perceptual.layer"] == params.esrgan.perceptual.layer
    assert run.data.params["scale"] == "4"
    tags = run.data.tags
    from srgan_lib.hardware import resolve_compute_format

    expected = resolve_compute_format(torch.device("cpu"), params.train.amp, params.train.channels_last)
    assert (tags["precision"], tags["memory_format"]) == (expected.precision, expected.layout)  # what actually ran
    assert tags["precision_reason"] == (expected.reason or "as requested")
    assert tags["vgg_weights"] == "random" and tags["torch_version"] == torch.__version__
    assert tags["device"].startswith("cpu") and len(tags["git_commit"]) >= 40
    assert "dvc_lock_stage_hash" not in tags  # its dvc.lock entry exists only after the stage: register tags it
    history = client.get_metric_history(run.info.run_id, "loss_gan_d")
    assert [m.step for m in history] == [1, 2, 3, 4, 5, 6]
    lr = {m.step: m.value for m in client.get_metric_history(run.info.run_id, "lr")}
    base, gamma = params.esrgan.lr, params.esrgan.gamma  # micro profile: multistep, milestone 4
    assert lr[4] == pytest.approx(base) and lr[5] == pytest.approx(base * gamma)
    assert [m.step for m in client.get_metric_history(run.info.run_id, "val_psnr_y")] == [3, 6]
    artifacts = {f.path for f in client.list_artifacts(run.info.run_id)}
    assert {"config.json", "history.csv", "summary.json", "model", "images"} <= artifacts
    assert [f.path for f in client.list_artifacts(run.info.run_id, "model")] == ["model/esrgan.pth"]
    # the validation picture as an MLflow image per validation step (the UI's step slider)
    pictures = [f.path for f in client.list_artifacts(run.info.run_id, "images") if f.path.endswith(".png")]
    assert sorted(int(p.split("+step+")[1].split("+")[0]) for p in pictures) == [3, 6]
    assert all(p.startswith("images/validation+step+") for p in pictures)
    assert {d.dataset.name for d in run.inputs.dataset_inputs} == {"train", "Set5"}  # the Datasets column
    assert (tmp_path / "mlflow" / "artifacts").is_dir() and not (tmp_path / "mlruns").exists()


def test_interpolation_cli(tmp_path):
    torch.manual_seed(0)
    a, b = build_model("rrdbnet", num_block=1).state_dict(), build_model("rrdbnet", num_block=1).state_dict()
    torch.save({"params": a}, tmp_path / "psnr.pth")
    torch.save({"params_ema": b, "params": a}, tmp_path / "gan.pth")
    out = run_cli("interpolate", "--psnr", str(tmp_path / "psnr.pth"), "--gan", str(tmp_path / "gan.pth"),
                  "--alpha", "0", "0.25", "1", "-o", str(tmp_path / "interp"))
    assert "alpha 0.25" in out.stdout
    states = {}
    for alpha in (0.0, 0.25, 1.0):
        got = states[alpha] = load_generator_state(tmp_path / "interp" / f"interp_{alpha:.2f}.pth")
        for k in a:
            torch.testing.assert_close(got[k], (1 - alpha) * a[k] + alpha * b[k])  # the GAN side is its EMA
    for k in a:  # the endpoints are the two models exactly; every parameter moves monotonically with alpha
        assert torch.equal(states[0.0][k], a[k]) and torch.equal(states[1.0][k], b[k])
        if a[k].is_floating_point():
            step1, step2 = states[0.25][k] - states[0.0][k], states[1.0][k] - states[0.25][k]
            assert bool((step1 * step2 >= 0).all()), k
    torch.save({"params": build_model("rrdbnet", num_block=2).state_dict()}, tmp_path / "other.pth")
    bad = run_cli("interpolate", "--psnr", str(tmp_path / "psnr.pth"), "--gan", str(tmp_path / "other.pth"),
                  "--alpha", "0.5", "-o", str(tmp_path / "x"), check=False)
    assert bad.returncode == 2 and "different networks" in bad.stderr and "body.1" in bad.stderr
    bad = run_cli("interpolate", "--psnr", str(tmp_path / "psnr.pth"), "--gan", str(tmp_path / "gan.pth"),
                  "--alpha", "1.5", "-o", str(tmp_path / "x"), check=False)
    assert bad.returncode == 2 and "[0, 1]" in bad.stderr


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("esrgan.hr_size=130", "divisible by the scale"),
        ("srgan.discriminator=none", "a discriminator is needed"),
        ("rrdbnet.milestones=[200, 100]", "strictly increasing"),
        ("esrgan.discriminator_options={input_size: 96}", "must equal hr_size"),
        ("esrgan.lr=-1", "'esrgan.lr' must be a number > 0"),
        ("esrgan.learning_rate=1", "unknown key 'esrgan.learning_rate'"),
        ("srgan.perceptual.layer=relu9_9", "VGG19 layer"),
        ("esrgan.ema_decay=1", "[0, 1)"),
    ],
)
def test_bad_training_params_name_the_key(override, message):
    with pytest.raises(ParamsError) as err:
        load_params(REPO / "params.yaml", [override])
    assert message in str(err.value)


@pytest.mark.slow
@pytest.mark.parametrize("stage", STAGES[:4])  # Real-ESRGAN (48 x 256 px): tests/config/test_realesrgan_config.py
def test_paper_configuration_smoke(stage, micro_data, tmp_path):
    """Two iterations of each recipe exactly as configs/paper.yaml sets it (batch 16, HR 96/128, full networks)."""
    params = load_params(REPO / "configs" / "paper.yaml", [
        f"lists.train=[{micro_data / 'raw'}]", f"lists.test=[Set5={BENCHMARKS / 'Set5'}]", "realworld.sets=[Set5]",
        f"train.train_list={micro_data / 'lists' / 'train.json'}", f"train.lr_dir={micro_data / 'lr'}",
        f"train.store={micro_data / 'store'}", "train.workers=2",  # the paper profile's worker processes, on CPU
        "train.vgg_weights=random", "train.val_images=0", "tracking.uri=none",
        f"train.out={tmp_path / 'runs'}", f"train.models={tmp_path / 'models'}",
        f"{stage}.iterations=2", f"{stage}.val_every=0", f"{stage}.init_from=none", f"{stage}.log_every=1",
        "train.precise_bn=2",  # the deliverable's BN statistics: 100 full-size batches would triple the test's time
    ])
    cfg = params.stage(stage)
    assert cfg.batch_size == 16 and cfg.hr_size == (96 if stage.startswith("sr") else 128)
    res = train_stage(params, stage, progress=False)
    assert res.iterations == 2 and all(v == v for v in res.final_losses.values())
    n = sum(v.numel() for k, v in generator(res.model_path).items() if "running" not in k and "num_batches" not in k)
    assert n == {"srresnet": 1_549_462, "srgan": 1_549_462, "rrdbnet": 16_697_987, "esrgan": 16_697_987}[stage]
    print(f"{stage}: {res.seconds_per_iteration:.2f} s/iteration at the paper configuration on CPU")


@pytest.fixture(scope="module")
def embedded_data(tmp_path_factory) -> Path:
    """The embedded default's training data as `make run` prepares it (scikit-image photographs and the committed
    wallpapers; exact leakage check to keep the fixture quick: the near check has its own tests)."""
    from srgan_lib.data.degrade import degrade, sources_from_list
    from srgan_lib.data.embedded import write_embedded
    from srgan_lib.data.lists import build_lists
    from srgan_lib.data.store import build_store

    root = tmp_path_factory.mktemp("embedded")
    params = load_params(REPO / "params.yaml")
    write_embedded(root / "skimage")
    train = [root / "skimage", *(REPO / p for p in params.lists.train if p != params.embedded.out)]
    build_lists(train, {"Set5": BENCHMARKS / "Set5"}, root / "lists", min_size=params.lists.min_size,
                leakage="exact")
    degrade(sources_from_list(root / "lists" / "train.json"), root / "lr" / "X4", scale=4)
    build_store(root / "lists" / "train.json", root / "lr" / "X4", root / "store", scale=4)
    return root


@pytest.mark.slow
def test_embedded_profile_psnr_stage_learns(embedded_data, tmp_path):
    """The embedded profile's first PSNR stage (params.yaml's srresnet section as it is, cut to 300 of its iterations
    with its schedule) ends far above its seeded start and within 4 dB of bicubic on Set5 after a quarter of its
    budget (the release before issue 14 ended its whole stage 6 dB below bicubic)."""
    from srgan_lib.data.resize import upsample
    from srgan_lib.evaluation.methods import GeneratorMethod
    from srgan_lib.metrics.psnr_ssim import psnr
    from srgan_lib.models import load_generator
    from srgan_lib.training.distributed import Dist
    from srgan_lib.training.trainer import Trainer
    from srgan_lib.training.validation import Validator

    d = embedded_data
    params = load_params(REPO / "params.yaml", [
        f"train.train_list={d / 'lists' / 'train.json'}", f"train.lr_dir={d / 'lr'}", f"train.store={d / 'store'}",
        f"train.val_list={d / 'lists' / 'Set5.json'}", f"train.out={tmp_path / 'runs'}",
        f"train.models={tmp_path / 'models'}", "tracking.uri=none", "srresnet.iterations=300",
        "srresnet.val_every=0", "srresnet.ckpt_every=300"])
    validator = Validator(str(d / "lists" / "Set5.json"), 5, 0, 4)  # whole Set5 images

    def set5_psnr(model) -> float:  # a module or a Generator
        method = GeneratorMethod(model, "cpu")
        return sum(psnr(method(lr), hr, space="y", shave=4) for _, lr, hr in validator.pairs) / 5

    start = set5_psnr(Trainer("srresnet", params, torch.device("cpu"), Dist()).net_g)  # the seeded initialisation
    res = train_stage(params, "srresnet", progress=False)
    end = set5_psnr(load_generator(res.model_path))
    bicubic = sum(psnr(upsample(lr, 4, "bicubic"), hr, space="y", shave=4) for _, lr, hr in validator.pairs) / 5
    print(f"embedded srresnet, 300 iterations: Set5 PSNR-Y {start:.2f} -> {end:.2f} dB (bicubic {bicubic:.2f}); "
          f"{res.seconds_per_iteration:.3f} s/iteration")
    assert end > start + 10 and end > bicubic - 4.0


def test_rerunning_a_finished_stage_adds_nothing(micro_data, tmp_path, monkeypatch):
    """`dvc repro` re-runs a finished stage when a lever outside the fingerprint changed (train.fused_adam): the run
    resumes at its last iteration, writes its outputs again, and neither adds a validation row nor reopens MLflow."""
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow' / 'mlflow.db'}"
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    extra = {"tracking.uri": uri, "tracking.experiment": "micro"}
    first = train_stage(micro_params(micro_data, tmp_path, "rrdbnet", **extra), "rrdbnet", progress=False)
    client = MlflowClient(tracking_uri=uri)
    before = client.get_run(first.mlflow_run_id)
    rows = (tmp_path / "runs" / "rrdbnet" / "validation.csv").read_text().splitlines()
    model = generator(first.model_path, "params_ema")
    summary = json.loads((tmp_path / "runs" / "rrdbnet" / "summary.json").read_text())
    first.model_path.unlink()  # DVC deletes a stage's outputs before running it

    again = train_stage(micro_params(micro_data, tmp_path, "rrdbnet", **{**extra, "train.fused_adam": False}),
                        "rrdbnet", auto_resume=True, progress=False)
    assert again.resumed_from == 6 and again.mlflow_run_id == first.mlflow_run_id
    assert (tmp_path / "runs" / "rrdbnet" / "validation.csv").read_text().splitlines() == rows  # no duplicate row
    after = client.get_run(first.mlflow_run_id)
    assert (after.info.status, after.info.end_time) == (before.info.status, before.info.end_time)  # not reopened
    assert len(client.search_runs([before.info.experiment_id])) == 1
    for k, v in generator(again.model_path, "params_ema").items():
        assert torch.equal(v, model[k]), k
    rewritten = json.loads((tmp_path / "runs" / "rrdbnet" / "summary.json").read_text())
    assert rewritten == summary  # a DVC output: the same bytes, whatever the host or the invocation


@pytest.mark.parametrize("stage", ["srresnet", "srgan"])
def test_ddp_on_cpu_refuses_batchnorm_networks_instead_of_training_on_per_process_statistics(micro_data, tmp_path,
                                                                                              stage):
    from srgan_lib.training import TrainingError
    from srgan_lib.training.distributed import Dist
    from srgan_lib.training.trainer import Trainer

    params = micro_params(micro_data, tmp_path, stage)
    with pytest.raises(TrainingError, match=r"BatchNorm.*SyncBatchNorm needs CUDA.*in one process"):
        Trainer(stage, params, torch.device("cpu"), Dist(rank=0, world_size=2))
    Trainer("rrdbnet", micro_params(micro_data, tmp_path, "rrdbnet"), torch.device("cpu"), Dist(0, 1))  # one: fine


def test_the_delivered_copy_of_a_syncbatchnorm_network_is_plain_batchnorm():
    from srgan_lib.training.trainer import _plain_batchnorm

    net = build_model("srresnet", num_block=1, num_feat=8).train()
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_()
    synced = torch.nn.SyncBatchNorm.convert_sync_batchnorm(copy.deepcopy(net))
    plain = _plain_batchnorm(copy.deepcopy(synced))
    assert not any(isinstance(m, torch.nn.SyncBatchNorm) for m in plain.modules())
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in plain.modules()) == \
        sum(isinstance(m, torch.nn.BatchNorm2d) for m in net.modules()) > 0
    for k, v in net.state_dict().items():
        assert torch.equal(plain.state_dict()[k], v), k
    x = torch.rand(1, 3, 8, 8)
    assert torch.equal(plain.eval()(x), net.eval()(x))


def test_a_run_stopped_early_reports_no_generator(micro_data, tmp_path):
    """``--stop-after``: no generator is written and none is named (it was ``Path()``, i.e. '.', before)."""
    res = train_stage(micro_params(micro_data, tmp_path, "rrdbnet"), "rrdbnet", progress=False, stop_after=2)
    assert res.model_path is None and res.iterations == 2 and not (tmp_path / "models" / "rrdbnet.pth").exists()
    out = run_cli("train", "rrdbnet", "--no-progress", "--restart", "--stop-after", "2", "--set",
                  *micro_overrides(micro_data, tmp_path, "rrdbnet")).stdout
    assert "train rrdbnet: 2 iterations" in out and "generator:" not in out
