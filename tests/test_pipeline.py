"""Real `dvc repro` of the embedded-default pipeline in a temporary copy of the repository."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO

pytestmark = pytest.mark.slow
MODELS = ("srresnet", "srgan", "rrdbnet", "esrgan")


def _sh(cmd: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
    env = {**os.environ, "PATH": path, "DVC_NO_ANALYTICS": "1"}
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, f"{' '.join(cmd)} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc


@pytest.fixture(scope="module")
def repo_copy(tmp_path_factory) -> Path:
    """The project's files as a fresh clone has them (tracked + new, no ignored outputs), in a new git repo."""
    dest = tmp_path_factory.mktemp("repo")
    files = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=REPO, capture_output=True, check=True
    ).stdout.decode().split("\0")
    for rel in filter(None, files):
        src = REPO / rel
        if src.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)
    for path in ("dvc.lock", "metrics"):  # start from nothing computed
        target = dest / path
        if target.is_dir():
            shutil.rmtree(target)
        elif target.exists():
            target.unlink()
    # the micro profile: the embedded default's stages with tiny networks and a few iterations
    params = yaml.safe_load((dest / "params.yaml").read_text())
    params["train"].update(val_images=2, val_crop=48)
    tiny = {"srresnet": {"num_block": 2, "num_feat": 16}, "rrdbnet": {"num_block": 1, "num_feat": 16, "num_grow_ch": 8}}
    for stage in ("srresnet", "srgan", "rrdbnet", "esrgan"):
        cfg = params[stage]
        cfg.update(batch_size=4, hr_size=32, iterations=4, val_every=2, ckpt_every=2, log_every=1, milestones=[2],
                   generator_options=tiny[cfg["generator"]])
    params["srgan"]["discriminator_options"] = {"num_feat": 8}
    params["esrgan"]["discriminator_options"] = {"num_feat": 8, "input_size": 32}
    (dest / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    _sh(["git", "init", "-q"], dest)
    return dest


def test_dvc_repro_end_to_end(repo_copy):
    out = _sh([str(Path(sys.executable).parent / "dvc"), "repro"], repo_copy).stdout
    stages = ["embedded", "lists", "degrade", "evaluate_baselines@bicubic", "evaluate_baselines@nearest",
              "interpolate"]
    stages += [f"train_{s}" for s in MODELS] + [f"evaluate_models@{s}" for s in MODELS]
    for stage in stages:
        assert f"Running stage '{stage}'" in out
    assert len(list((repo_copy / "data/raw/skimage").glob("*.png"))) == 9
    assert len(list((repo_copy / "data/lr/train/X4").glob("*.png"))) == 9
    metrics = json.loads((repo_copy / "metrics/bicubic.json").read_text())
    assert metrics["bicubic"]["Set5"]["psnr_y"] == pytest.approx(28.42, abs=0.05)
    assert metrics["bicubic"]["Set14"]["psnr_y"] == pytest.approx(26.00, abs=0.15)
    for model in MODELS:
        assert (repo_copy / "models" / f"{model}.pth").is_file()
        assert json.loads((repo_copy / f"metrics/{model}.json").read_text())[model]["Set5"]["n_images"] == 5
    assert len(list((repo_copy / "models" / "interp").glob("interp_*.pth"))) == 6

    shown = _sh([str(Path(sys.executable).parent / "dvc"), "metrics", "show", "--json"], repo_copy).stdout
    assert "psnr_y" in shown and "Set14" in shown

    again = _sh([str(Path(sys.executable).parent / "dvc"), "repro"], repo_copy).stdout
    assert "Running stage" not in again


def test_changing_one_esrgan_param_reruns_only_esrgan_and_downstream(repo_copy):
    params = yaml.safe_load((repo_copy / "params.yaml").read_text())
    params["esrgan"]["gan"]["weight"] = 1.0e-2
    (repo_copy / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    out = _sh([str(Path(sys.executable).parent / "dvc"), "repro"], repo_copy).stdout
    ran = sorted(line.split("'")[1] for line in out.splitlines() if line.startswith("Running stage"))
    assert ran == ["evaluate_models@esrgan", "interpolate", "train_esrgan"]
