"""Adding a training recipe is its params section and its name in `recipes`, nothing else: a fifth recipe written
into a micro repository's params.yaml is a DVC stage, trained by `srgan train NAME`, evaluated, registered through
the gate and shown in the report, with no code or dvc.yaml edited."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import micro_repo

pytestmark = pytest.mark.slow
BIN = Path(sys.executable).parent
NEW = "rrdbnet_mse"  # RRDBNet trained with an MSE pixel loss (the SRGAN paper's criterion) instead of L1


def _sh(cmd: list[str], cwd: Path) -> str:
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "SRGAN_PARENT_RUN_ID")}
    env.update(PATH=f"{BIN}{os.pathsep}{env['PATH']}", DVC_NO_ANALYTICS="1")
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, f"{' '.join(cmd)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc.stdout + proc.stderr


def test_a_fifth_recipe_is_trained_evaluated_registered_and_reported(tmp_path):
    repo = micro_repo(tmp_path)
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params[NEW] = {**params["rrdbnet"], "pixel": {"type": "mse", "weight": 1.0, "usm": False}}
    params["recipes"]["scratch"].append(NEW)
    params["evaluate"]["models"].append(NEW)
    params["register"]["models"].append(NEW)
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))

    stages = _sh([str(BIN / "dvc"), "stage", "list", "--name-only"], repo).split()
    assert {f"train_psnr@{NEW}", f"evaluate_models@{NEW}", f"register@{NEW}"} <= set(stages)
    out = _sh([str(BIN / "dvc"), "repro", f"register@{NEW}"], repo)
    assert f"python -m srgan_lib.commands.train {NEW}" in out  # `srgan train NAME`, as dvc.yaml runs it
    ran = {line.split("'")[1] for line in out.splitlines() if line.startswith("Running stage")}
    assert ran == {"embedded", "lists", "degrade", "store", "realworld", f"train_psnr@{NEW}",
                   "evaluate_baselines@bicubic", f"evaluate_models@{NEW}", f"register@{NEW}"}, ran  # not the other four

    summary = json.loads((repo / "runs" / NEW / "summary.json").read_text())
    assert summary  # its training wrote its summary under its own name
    evaluation = json.loads((repo / "reports" / "eval" / f"{NEW}.json").read_text())
    # 4 iterations: a number, not a score
    assert evaluation["Set14"]["n_images"] == 14 and evaluation["Set5"]["psnr_y"] > 0
    record = json.loads((repo / "reports" / "registry" / f"{NEW}.json").read_text())
    assert record["name"] == f"srgan-{NEW}" and record["version"] == "1" and record["alias"] in ("champion",
                                                                                                  "challenger")
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{repo / 'mlflow' / 'mlflow.db'}"
    assert MlflowClient(tracking_uri=uri, registry_uri=uri).get_model_version(f"srgan-{NEW}", "1")

    _sh([str(BIN / "srgan"), "report", "--eval", "reports/eval", "--sr-dir", "reports/sr", "-o", "reports/r",
         "--tracking-uri", "none"], repo)
    report = (repo / "reports" / "r" / "report.md").read_text()
    assert f"| {NEW} " in report or f"{NEW} (ours)" in report, report[:3000]
    assert "![Set5/baby](figures/Set5_baby.png)" in report  # its comparison figures (bicubic beside it)
