"""Shared fixtures: repository paths, reference images from committed data, the CI rule for skips, the CLI runner."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import yaml

from srgan_lib.config.paramfile import apply_overrides, read_params
from srgan_lib.config.params import validate
from srgan_lib.data.degradations import DegradationSettings
from srgan_lib.data.degrade import degrade, sources_from_list
from srgan_lib.data.embedded import write_embedded
from srgan_lib.data.lists import build_lists
from srgan_lib.data.realworld import write_realworld_sets
from srgan_lib.data.store import build_store
from srgan_lib.io.images import read_image

REPO = Path(__file__).resolve().parents[1]
BENCHMARKS = REPO / "data" / "benchmarks"
SRGAN = shutil.which("srgan", path=str(Path(sys.executable).parent)) or "srgan"


@pytest.fixture(scope="session", autouse=True)
def tile_cache(tmp_path_factory) -> Iterator[Path]:
    """The tuned-tile cache of `srgan upscale` (srgan_lib.inference.tiling) in a temporary folder, not the user's
    home: the
    tests' tiny networks are measured once per session, and subprocesses inherit the variable."""
    folder = tmp_path_factory.mktemp("srgan-cache")
    old = os.environ.get("SRGAN_CACHE_DIR")
    os.environ["SRGAN_CACHE_DIR"] = str(folder)
    yield folder
    if old is None:
        os.environ.pop("SRGAN_CACHE_DIR", None)
    else:
        os.environ["SRGAN_CACHE_DIR"] = old


def basicsr_baboon() -> np.ndarray:
    """BasicSR's NIQE test image (``baboon.png`` of its tests, MATLAB R2021a NIQE 5.72957338): the committed Set14
    baboon's first 492 columns, pixel for pixel (checked against the file BasicSR ships, in ../shared/data/niqe)."""
    return read_image(BENCHMARKS / "Set14" / "HR" / "baboon.png")[:, :492]


# A skip is a test that did not run: in CI (CI=true) it fails, unless its reason names a file no package can provide.
UNPROVIDABLE = ("alexnet-owt",)  # LPIPS's ImageNet AlexNet: torchvision downloads it, which CI cannot


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.skipped and os.environ.get("CI") == "true" and not hasattr(report, "wasxfail"):
        reason = str(report.longrepr[-1] if isinstance(report.longrepr, tuple) else report.longrepr)
        if not any(name in reason for name in UNPROVIDABLE):
            report.outcome = "failed"
            report.longrepr = f"skipped in CI (CI=true), where every test must run: {reason}"


# `make test` runs two pytest-xdist workers, a whole file per worker (--dist loadfile, in this order): the longest
# file first (test_pipeline.py: its tests share one repository and run in file order), the two-host test on the other
# worker, then a short file (a worker queues one file behind its current one), the other long files, the rest.
FIRST = ("test_pipeline.py", "test_hosts.py", "test_losses.py", "test_training.py", "test_levers.py",
         "test_multinode.py", "test_benchmarks.py", "test_upscale.py", "test_registry.py")


def pytest_collection_modifyitems(config, items):
    rank = {name: i for i, name in enumerate(FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(FIRST)))  # stable: file order within each file


def pytest_configure(config):
    """Under xdist each worker gets its share of the cores (torch and every stage it starts read OMP_NUM_THREADS):
    two workers with two threads each on two cores would fight over them."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers > 1 and "OMP_NUM_THREADS" not in os.environ:
        import torch

        from srgan_lib.orchestration.sweep.queue import (
            thread_share,  # the rule `srgan sweep -j N` gives its queue workers
        )

        share = thread_share(workers)
        os.environ["OMP_NUM_THREADS"] = str(share)
        torch.set_num_threads(share)


def run_cli(*args: str, cwd: Path = REPO, check: bool = True, process: bool = False
            ) -> subprocess.CompletedProcess[str]:
    """Run the ``srgan`` CLI as a user would and return its exit status and output. In this process by default
    (``srgan_lib.cli.main``: no interpreter start-up, tracebacks visible), with the working directory, environment,
    logging, signal handlers, torch threads and random states put back afterwards; ``process=True`` (or
    ``SRGAN_TESTS_SUBPROCESS=1``) runs the installed console script in a subprocess instead. A crash (an uncaught
    exception) fails the calling test whatever ``check`` says."""
    if process or os.environ.get("SRGAN_TESTS_SUBPROCESS") == "1":
        env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
        proc = subprocess.run([SRGAN, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    else:
        proc = _run_cli_here(list(args), cwd)
    if proc.returncode == 1 and "Traceback (most recent call last)" in proc.stderr:
        # a crash, never an answer: a user error exits 2 with one line, a command's own failure status (some files
        # failed) prints no traceback. Tests that expect a refusal cannot pass on a crash.
        raise AssertionError(f"srgan {' '.join(args)} crashed:\n{proc.stderr[-4000:]}")
    if check and proc.returncode != 0:
        raise AssertionError(f"srgan {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def _run_cli_here(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    import io
    import logging
    import random
    import signal
    import traceback

    import numpy as np
    import torch

    from srgan_lib.cli import main

    out, err = io.StringIO(), io.StringIO()
    env, here = dict(os.environ), os.getcwd()
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    signals = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    threads, rng = torch.get_num_threads(), (torch.get_rng_state(), np.random.get_state(), random.getstate())
    os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    root.handlers = []  # so that the CLI's logging.basicConfig writes to this call's stderr, as in a new process
    try:
        os.chdir(cwd)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = main(args)
            except SystemExit as exc:  # argparse: --help, usage errors
                code = exc.code if isinstance(exc.code, int) else 0 if exc.code is None else 1
                if isinstance(exc.code, str):
                    print(exc.code, file=sys.stderr)
            except Exception:  # what the interpreter would print before exiting 1
                traceback.print_exc()
                code = 1
    finally:
        os.chdir(here)
        os.environ.clear()
        os.environ.update(env)
        for h in root.handlers:
            h.close()
        root.handlers, root.level = handlers, level
        for s, handler in signals.items():
            signal.signal(s, handler)
        torch.set_num_threads(threads)
        torch.set_rng_state(rng[0])
        np.random.set_state(rng[1])
        random.setstate(rng[2])
    return subprocess.CompletedProcess([SRGAN, *args], code, out.getvalue(), err.getvalue())


def free_port() -> int:
    """A loopback port nothing listens on (for the servers the tests start)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def mlflow_server(db: Path, cwd: Path) -> Iterator[str]:
    """A real `mlflow server` on the SQLite store ``db``, started as `make mlflow-ui` starts it; its URL. Stopped
    (by its process group) afterwards, and checked to be gone."""
    from pipelines.services import mlflow_env, mlflow_ui_command, stop_pid, wait_http

    port = free_port()
    log = cwd / "mlflow-server.log"
    with open(log, "wb") as fh:
        proc = subprocess.Popen(mlflow_ui_command(f"sqlite:///{db}", port), cwd=cwd, env=mlflow_env(), stdout=fh,
                                stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_http(f"http://127.0.0.1:{port}/health", proc, log, timeout=120)
        yield f"http://127.0.0.1:{port}"
    finally:
        stop_pid(proc.pid)
        assert proc.poll() is not None


def kill_tree(pid: int) -> None:
    """SIGKILL a process and every descendant, each by its PID (a dying host: no handler runs), and wait until they
    are gone. Children in their own process groups are found through psutil, so none is left running."""
    import psutil

    try:
        procs = [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        return
    for proc in procs:
        with contextlib.suppress(psutil.NoSuchProcess):
            proc.kill()
    psutil.wait_procs(procs, timeout=30)


# The micro profile (configs/micro.yaml, its extends resolved): the micro repositories' params.yaml, and the networks
# of the training tests
MICRO: dict = read_params(REPO / "configs" / "micro.yaml")


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
    (dest / "params.yaml").write_text(yaml.safe_dump(MICRO, sort_keys=False))  # configs/micro.yaml, resolved
    git = ["git", "-c", "user.name=srgan-tests", "-c", "user.email=tests@localhost", "-c", "commit.gpgsign=false"]
    for cmd in (["init", "-q"], ["add", "-A"], ["commit", "-q", "-m", "micro profile"]):
        subprocess.run([*git, *cmd], cwd=dest, check=True, capture_output=True)
    return dest


# ------------------------------------------------------------------------------ micro training profile


@pytest.fixture(scope="session")
def micro_data(tmp_path_factory) -> Path:
    """Three embedded photographs, their lists (Set5 as the validation set) and their MATLAB-bicubic LR."""
    root = tmp_path_factory.mktemp("micro")
    write_embedded(root / "raw", ["astronaut", "chelsea", "coffee"])
    build_lists([root / "raw"], {"Set5": BENCHMARKS / "Set5"}, root / "lists", min_size=64, test_min_size=16)
    degrade(sources_from_list(root / "lists" / "train.json"), root / "lr" / "X4", scale=4)
    build_store(root / "lists" / "train.json", root / "lr" / "X4", root / "store", scale=4)
    write_realworld_sets(root / "lists", ["Set5"], root / "realworld", DegradationSettings(), seed=0)  # Set5-RW
    return root


def micro_overrides(data: Path, out: Path, stage: str, **extra: object) -> list[str]:
    """Overrides turning params.yaml into the micro profile: tiny networks, batch 4, HR 32, a few iterations."""
    sets = [
        f"lists.train=[{data / 'raw'}]", f"lists.test=[Set5={BENCHMARKS / 'Set5'}]", "realworld.sets=[Set5]",
        f"train.train_list={data / 'lists' / 'train.json'}", f"train.lr_dir={data / 'lr'}",
        f"train.store={data / 'store'}",
        f"train.val_list={data / 'lists' / 'Set5.json'}", "train.val_images=2", "train.val_crop=48",
        f"train.val_list_realworld={data / 'realworld' / 'lists' / 'Set5-RW.json'}",
        f"train.out={out / 'runs'}", f"train.models={out / 'models'}", "tracking.uri=none",
        f"{stage}.batch_size=4", f"{stage}.hr_size=32", f"{stage}.iterations=6", f"{stage}.val_every=3",
        f"{stage}.ckpt_every=3", f"{stage}.log_every=1", f"{stage}.schedule=multistep", f"{stage}.warmup=0",
        f"{stage}.milestones=[4]",
    ]
    sets += [f"{stage}.{k}={json.dumps(MICRO[stage][k])}" for k in ("generator_options", "discriminator_options")]
    if stage in MICRO["recipes"]["finetuned"]:
        sets.append(f"{stage}.init_from=none")
    sets += [f"{k}={v}" for k, v in extra.items()]
    return sets


def micro_params(data: Path, out: Path, stage: str, **extra: object) -> dict:
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    return validate(apply_overrides(raw, micro_overrides(data, out, stage, **extra)))
