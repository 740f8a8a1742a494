"""Two hosts on loopback: a real Prefect server, two process workers in two separate clones of the repository (host A:
pool srgan-cpu, host B: pool srgan-gpu) and a local-directory DVC remote between them. ``train-esrgan/hosts`` runs
the data stages on A and training + evaluation on B; B is killed in the middle of training, its checkout's
checkpoints wiped (a replacement host), and restarted: the resubmitted stage resumes from the checkpoint B had pushed,
and the trained generators are byte for byte those of a single-checkout ``dvc repro`` of the same micro profile.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tests.conftest import free_port, kill_tree, micro_repo

pytestmark = pytest.mark.slow
BIN = Path(sys.executable).parent
ITERATIONS, CKPT_EVERY = 400, 20  # RRDBNet long enough (tens of seconds) to be killed after its first push
EVAL = ("evaluate_models@rrdbnet", "evaluate_models@esrgan")
TRAINED = ("train_psnr@rrdbnet", "train_gan@esrgan")  # what the single-checkout reference reproduces


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("MLFLOW_TRACKING_URI", "SRGAN_PARENT_RUN_ID", "PREFECT_API_URL", "PREFECT_HOME")}
    return {**env, "PATH": f"{BIN}{os.pathsep}{env['PATH']}", "DVC_NO_ANALYTICS": "1", **extra}


def _sh(cmd: list[str], cwd: Path, timeout: float = 900, check: bool = True,
        **env: str) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(cmd, cwd=cwd, env=_env(**env), capture_output=True, text=True, timeout=timeout)
    if check:
        assert proc.returncode == 0, f"{' '.join(cmd)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


def _git(cwd: Path, *args: str) -> None:
    _sh(["git", "-c", "user.name=srgan-tests", "-c", "user.email=tests@localhost", "-c", "commit.gpgsign=false",
         *args], cwd)


@pytest.fixture(scope="module")
def hosts(tmp_path_factory) -> dict[str, Path]:
    """Clone A (the micro profile, RRDBNet lengthened), its clones B and ``single``; A and B share the remote."""
    root = tmp_path_factory.mktemp("hosts")
    a = micro_repo(root / "a")
    params = yaml.safe_load((a / "params.yaml").read_text())
    params["rrdbnet"].update(iterations=ITERATIONS, ckpt_every=CKPT_EVERY, val_every=ITERATIONS)
    (a / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    _git(a, "commit", "-q", "-am", "RRDBNet long enough to be interrupted")
    paths = {"a": a, "b": root / "b", "single": root / "single", "remote": root / "remote"}
    for name in ("b", "single"):
        _git(root, "clone", "-q", str(a), str(paths[name]))
    for name in ("a", "b"):
        _sh([str(BIN / "dvc"), "remote", "add", "-d", "--local", "exchange", str(paths["remote"])], paths[name])
    return paths


def _services(cwd: Path, *args: str, port: int) -> subprocess.CompletedProcess[str]:
    return _sh([sys.executable, "-m", "pipelines.services", *args], cwd, timeout=300,
               PREFECT_HOME=str(cwd / ".prefect"), PREFECT_API_URL=f"http://127.0.0.1:{port}/api",
               SRGAN_CHECKPOINT_PUSH_S="1")


def _worker_pid(cwd: Path) -> int:
    return json.loads((cwd / ".prefect" / "services.json").read_text())["worker"]


def _pushed(remote: Path) -> list[Path]:
    return sorted((remote / "srgan-checkpoints" / "train_psnr@rrdbnet").glob("*/iter_*.pt"))


def test_stages_on_two_hosts_exchange_through_the_dvc_remote_and_survive_a_killed_worker(hosts):
    a, b, remote = hosts["a"], hosts["b"], hosts["remote"]
    port = free_port()
    api = f"http://127.0.0.1:{port}/api"
    up = _services(a, "up", "--port", str(port), "--pool", "srgan-cpu", "--zombie-after", "60", port=port)
    assert "automation: a flow run without a heartbeat for 60 s is marked Crashed" in up.stdout
    run, finished = None, False
    # the reference: a single-checkout `dvc repro` of the two training stages (and their upstream), meanwhile
    single_log = hosts["single"] / "repro.log"
    with open(single_log, "wb") as fh:  # a file, not a pipe: nothing reads it until the end
        single = subprocess.Popen([str(BIN / "dvc"), "repro", TRAINED[-1]], cwd=hosts["single"],
                                  env=_env(MLFLOW_TRACKING_URI="none"), stdout=fh, stderr=subprocess.STDOUT)
    try:
        _services(b, "worker", "--pool", "srgan-gpu", "--api", api, port=port)
        run = subprocess.Popen([str(BIN / "prefect"), "deployment", "run", "train-esrgan/hosts", "--watch",
                                "--watch-timeout", "1200"], cwd=a, env=_env(PREFECT_API_URL=api), text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 600
        while not _pushed(remote):  # B is training and has pushed a checkpoint
            assert run.poll() is None, f"the flow ended before B pushed a checkpoint:\n{run.stdout.read()}"
            assert time.monotonic() < deadline, "B pushed no checkpoint within 10 minutes"
            time.sleep(0.5)
        kill_tree(_worker_pid(b))  # host B dies: worker, its flow run, dvc and the training process
        killed_at = int(_pushed(remote)[-1].name[5:13])
        for ckpt in (b / "runs" / "rrdbnet" / "checkpoints").glob("iter_*.pt"):
            ckpt.unlink()  # a replacement host: only the remote has the checkpoints
        assert killed_at < ITERATIONS
        _services(b, "worker", "--pool", "srgan-gpu", "--api", api, port=port)
        out, _ = run.communicate(timeout=1200)
        assert run.returncode == 0 and "Completed" in out, out[-3000:]
        finished = True
    finally:
        if run is not None and run.poll() is None:
            kill_tree(run.pid)
        if not finished and single.poll() is None:  # the reference is waited for below, unless this failed
            kill_tree(single.pid)
        for host in (b, a):
            _services(host, "down", port=port)

    log_a = (a / ".prefect" / "logs" / "worker.log").read_text()
    log_b = (b / ".prefect" / "logs" / "worker.log").read_text()
    for stage in ("embedded", "lists", "degrade", "store", "realworld"):
        assert f"Running stage '{stage}'" in log_a and f"Running stage '{stage}'" not in log_b
        assert f"Stage '{stage}' is cached - skipping run, checking out outputs" in log_b  # the remote's run-cache
    for stage in ("train_psnr@rrdbnet", "train_gan@esrgan", "interpolate", *EVAL):
        assert f"Running stage '{stage}'" in log_b and f"Running stage '{stage}'" not in log_a
    assert "submitting it again" in log_a  # the parent flow resubmitted the crashed stage run
    assert f"checkpoint exchange: resuming from iter_{killed_at:08d}.pt pulled from remote 'exchange'" in log_b
    assert f"train rrdbnet: {ITERATIONS} iterations (resumed at {killed_at})" in log_b

    assert single.wait(timeout=1200) == 0, single_log.read_text()[-3000:]
    # the resumed RRDBNet and the ESRGAN trained from it: the same dvc.lock entries (every output's md5, the
    # generators' included) as the uninterrupted single checkout's
    ours, reference = (yaml.safe_load((h / "dvc.lock").read_text())["stages"] for h in (b, hosts["single"]))
    for stage in TRAINED:
        assert ours[stage] == reference[stage], stage
    for model in ("rrdbnet", "esrgan"):
        assert json.loads((b / "metrics" / f"{model}.json").read_text())[model]["Set5"]["n_images"] == 5


def test_a_missing_remote_object_names_the_stage_and_the_file(hosts, tmp_path):
    """A third checkout whose remote lost an output of 'degrade' (its run-cache entry still there) stops with an
    error naming the stage and the file, instead of quietly recomputing the upstream stages on this host: DVC is
    stopped as it starts 'degrade', which it therefore never records, and 'store' never runs."""
    c = tmp_path / "c"
    _git(tmp_path, "clone", "-q", str(hosts["a"]), str(c))
    _sh([str(BIN / "dvc"), "remote", "add", "-d", "--local", "exchange", str(hosts["remote"])], c)
    lock = yaml.safe_load((hosts["a"] / "dvc.lock").read_text())
    md5 = lock["stages"]["degrade"]["outs"][0]["md5"]
    (hosts["remote"] / "files" / "md5" / md5[:2] / md5[2:]).unlink()
    proc = _sh([sys.executable, "-c", "from pipelines import exchange; "
                "from srgan_lib.orchestration.dvc import stage_env; "
                "exchange.reproduce('store', stage_env(None, None))"], c, check=False)
    assert proc.returncode != 0
    assert (f"stage 'store': upstream stage 'degrade' ran elsewhere (it is in remote 'exchange's run-cache), but "
            f"the remote lacks md5 {md5} of its outputs (data/lr/train)") in proc.stderr
    lock_c = yaml.safe_load((c / "dvc.lock").read_text())["stages"]
    assert set(lock_c) == {"embedded", "lists"}  # restored from the remote; 'degrade' not recorded
    assert not (c / "data" / "store").exists()
