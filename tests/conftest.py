"""Shared fixtures: repository paths, the shared reference data, and a runner for the installed CLI."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

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
