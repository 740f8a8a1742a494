"""The checkpoint mirror of pipelines/exchange.py on a local-folder remote (DVC's own filesystem class), and where the
`hosts` flows send each stage. The two-host run itself is tests/e2e/test_hosts.py (slow)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from dvc.fs import LocalFileSystem

from pipelines.exchange import CheckpointMirror
from pipelines.flows import pool_of
from srgan_lib.config.params import load_params, override
from srgan_lib.orchestration.dvc import recipe_stages
from srgan_lib.training.trajectory import trajectory_key
from tests.conftest import REPO


def _ckpt(folder: Path, iteration: int, payload: bytes = b"x") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"iter_{iteration:08d}.pt"
    path.write_bytes(payload * iteration)
    return path


def test_mirror_uploads_new_checkpoints_deletes_pruned_ones_and_a_fresh_host_pulls_the_newest(tmp_path):
    remote = tmp_path / "remote" / "srgan-checkpoints" / "train_psnr@rrdbnet" / "key"
    host_b = CheckpointMirror(LocalFileSystem(), str(remote), tmp_path / "b" / "checkpoints")
    _ckpt(host_b.local_dir, 10)
    (host_b.local_dir / "iter_00000020.pt.tmp-123").write_bytes(b"half")  # the trainer's temporary file: ignored
    assert host_b.push() == ["iter_00000010.pt"]
    assert host_b.push() == []  # nothing new
    _ckpt(host_b.local_dir, 20)
    (host_b.local_dir / "iter_00000010.pt").unlink()  # the trainer keeps the newest only
    assert host_b.push() == ["iter_00000020.pt"]
    assert sorted(p.name for p in remote.iterdir()) == ["iter_00000020.pt"]  # no temporary upload names left

    fresh = CheckpointMirror(LocalFileSystem(), str(remote), tmp_path / "b2" / "checkpoints")
    assert fresh.push() == [] and (remote / "iter_00000020.pt").exists()  # an empty host never empties the remote
    assert fresh.pull() == "iter_00000020.pt"
    assert (fresh.local_dir / "iter_00000020.pt").read_bytes() == b"x" * 20
    assert sorted(p.name for p in fresh.local_dir.iterdir()) == ["iter_00000020.pt"]
    assert fresh.pull() is None  # it has one now: local is the authority
    assert host_b.pull() is None


def test_mirror_keeps_pushing_while_the_block_runs(tmp_path):
    remote = tmp_path / "remote"
    mirror = CheckpointMirror(LocalFileSystem(), str(remote), tmp_path / "checkpoints")
    with mirror.running(every_s=0.05):
        _ckpt(mirror.local_dir, 3)
        deadline = time.monotonic() + 10
        while not (remote / "iter_00000003.pt").exists():
            assert time.monotonic() < deadline, "no push while the block ran"
            time.sleep(0.02)
        _ckpt(mirror.local_dir, 6)
    assert (remote / "iter_00000006.pt").exists()  # the final push at the end of the block


def test_the_remote_keys_checkpoints_by_the_training_trajectory():
    """The remote's checkpoint folder is the stage's trajectory key (srgan_lib.training.trajectory), the definition
    resume uses: the same for a resumable or output-only change, another for a change that shapes the weights."""
    params = load_params(REPO / "params.yaml", folders=False)
    key = trajectory_key(params, "rrdbnet")
    changed = override(params, ["esrgan.lr=1.0",  # another stage
                                "rrdbnet.log_every=7",  # resumable
                                f"train.fused_adam={not params.train.fused_adam}",  # output-only (a speed lever)
                                "report.crop=64"])
    assert (changed.esrgan.lr, changed.rrdbnet.log_every, changed.report.crop) == (1.0, 7, 64)
    assert trajectory_key(changed, "rrdbnet") == key
    for change in ("rrdbnet.lr=1.0", "train.seed=1", "train.amp=none"):
        assert trajectory_key(override(params, [change]), "rrdbnet") != key, change
    assert trajectory_key(params, "esrgan") != key


def test_the_recipe_flows_run_their_papers_stages():
    """train-srgan / train-esrgan / train-realesrgan's stages, derived from params.yaml's recipes, are the papers'
    pipelines."""
    params = load_params(folders=False)
    data = ["embedded", "lists", "degrade", "store", "realworld"]
    assert recipe_stages(params, "srgan") == [*data, "train_psnr@srresnet", "train_gan@srgan",
                                              "evaluate_models@srresnet", "evaluate_models@srgan",
                                              "register@srresnet", "register@srgan"]
    assert recipe_stages(params, "esrgan") == [*data, "train_psnr@rrdbnet", "train_gan@esrgan", "interpolate",
                                               "evaluate_models@rrdbnet", "evaluate_models@esrgan",
                                               "register@rrdbnet", "register@esrgan"]
    # Real-ESRGAN's chain: rrdbnet -> realesrnet -> realesrgan, each trained, evaluated and registered
    assert recipe_stages(params, "realesrgan") == [*data, "train_psnr@rrdbnet", "train_gan@realesrnet",
                                                   "train_gan@realesrgan", "evaluate_models@rrdbnet",
                                                   "evaluate_models@realesrnet", "evaluate_models@realesrgan",
                                                   "register@rrdbnet", "register@realesrnet", "register@realesrgan"]
    with pytest.raises(ValueError, match="not a fine-tuned recipe"):
        recipe_stages(params, "rrdbnet")


@pytest.mark.parametrize("recipe", ["srgan", "esrgan", "realesrgan"])
def test_hosts_placement_sends_data_stages_to_cpu_and_everything_using_generators_to_gpu(recipe):
    stages = recipe_stages(load_params(folders=False), recipe)
    pools = {s: pool_of(s) for s in stages}
    assert {s for s, p in pools.items() if p == "cpu"} == {"embedded", "lists", "degrade", "store", "realworld"}
    assert pool_of("evaluate_baselines@bicubic") == "cpu" and pool_of("report") == "cpu"
    assert pool_of("evaluate_interp") == "gpu"
