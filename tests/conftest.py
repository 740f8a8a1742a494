"""Shared fixtures: repository paths, the shared reference data, and a runner for the installed CLI."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
BENCHMARKS = REPO / "data" / "benchmarks"
SHARED = REPO.parent / "shared" / "data"
SRGAN = shutil.which("srgan", path=str(Path(sys.executable).parent)) or "srgan"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data`` (reference data beside the checkout); tests needing it skip where it is absent."""
    if not SHARED.is_dir():
        pytest.skip(f"shared reference data not found at {SHARED}")
    return SHARED


def run_cli(*args: str, cwd: Path = REPO, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run the installed ``srgan`` console script in a subprocess, as a user would."""
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    proc = subprocess.run([SRGAN, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    if check and proc.returncode != 0:
        raise AssertionError(f"srgan {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def micro_repo(dest: Path) -> Path:
    """A copy of the project as a fresh clone has it (tracked + new files, nothing computed), in a new git repository
    with one commit, and params.yaml switched to the micro profile: the embedded default's stages with tiny networks
    and a few iterations (seconds per training stage on CPU)."""
    files = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=REPO, capture_output=True, check=True
    ).stdout.decode().split("\0")
    for rel in filter(None, files):
        src = REPO / rel
        if src.is_file() and not rel.startswith("metrics/") and rel != "dvc.lock":
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)
    params = yaml.safe_load((dest / "params.yaml").read_text())
    params["train"].update(val_images=2, val_crop=48)
    tiny = {"srresnet": {"num_block": 2, "num_feat": 16}, "rrdbnet": {"num_block": 1, "num_feat": 16, "num_grow_ch": 8}}
    for stage in ("srresnet", "srgan", "rrdbnet", "esrgan"):
        params[stage].update(batch_size=4, hr_size=32, iterations=4, val_every=2, ckpt_every=2, log_every=1,
                             milestones=[2], generator_options=tiny[params[stage]["generator"]])
    params["srgan"]["discriminator_options"] = {"num_feat": 8}
    params["esrgan"]["discriminator_options"] = {"num_feat": 8, "input_size": 32}
    (dest / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    git = ["git", "-c", "user.name=srgan-tests", "-c", "user.email=tests@localhost", "-c", "commit.gpgsign=false"]
    for cmd in (["init", "-q"], ["add", "-A"], ["commit", "-q", "-m", "micro profile"]):
        subprocess.run([*git, *cmd], cwd=dest, check=True, capture_output=True)
    return dest
