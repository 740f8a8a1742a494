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
    _sh(["git", "init", "-q"], dest)
    return dest


def test_dvc_repro_end_to_end(repo_copy):
    out = _sh([str(Path(sys.executable).parent / "dvc"), "repro"], repo_copy).stdout
    for stage in ("embedded", "lists", "degrade", "evaluate_baselines@bicubic", "evaluate_baselines@nearest"):
        assert f"Running stage '{stage}'" in out
    assert len(list((repo_copy / "data/raw/skimage").glob("*.png"))) == 9
    assert len(list((repo_copy / "data/lr/train/X4").glob("*.png"))) == 9
    metrics = json.loads((repo_copy / "metrics/bicubic.json").read_text())
    assert metrics["bicubic"]["Set5"]["psnr_y"] == pytest.approx(28.42, abs=0.05)
    assert metrics["bicubic"]["Set14"]["psnr_y"] == pytest.approx(26.00, abs=0.15)

    shown = _sh([str(Path(sys.executable).parent / "dvc"), "metrics", "show", "--json"], repo_copy).stdout
    assert "psnr_y" in shown and "Set14" in shown

    again = _sh([str(Path(sys.executable).parent / "dvc"), "repro"], repo_copy).stdout
    assert "Running stage" not in again


def test_changing_one_param_reruns_only_its_stage(repo_copy):
    params = yaml.safe_load((repo_copy / "params.yaml").read_text())
    params["degrade"]["kernel"] = "pil"
    (repo_copy / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    out = _sh([str(Path(sys.executable).parent / "dvc"), "repro"], repo_copy).stdout
    ran = sorted(line.split("'")[1] for line in out.splitlines() if line.startswith("Running stage"))
    assert ran == ["degrade"]
