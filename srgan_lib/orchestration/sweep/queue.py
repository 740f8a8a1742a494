"""DVC's experiment queue, driven from Python: queue one experiment per combination (``dvc exp run --queue``),
start the queue's workers (``dvc queue start -j N``), read their states, their logs and the experiments' files."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from srgan_lib.orchestration.dvc import PipelineError, tool

# `dvc queue status` states
QUEUED, RUNNING, SUCCESS, FAILED = "Queued", "Running", "Success", "Failed"
LOST = "Lost"  # ours: 'Running' in DVC's view, but its executor process is gone
ORPHANED = "Orphaned"  # ours: its executor runs on, but its queue worker was killed
WAITING = (QUEUED, RUNNING, LOST, ORPHANED)  # not ended yet


def _dvc(args: Sequence[str], env: Mapping[str, str], cwd: str | Path, *, check: bool = True
         ) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([tool("dvc"), *args], cwd=cwd, env=dict(env), capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise PipelineError(f"`dvc {' '.join(args)}` failed ({proc.returncode}): "
                            f"{(proc.stderr.strip() or proc.stdout.strip())[-1500:]}")
    return proc


def enqueue(name: str, overrides: Sequence[str], targets: Sequence[str], env: Mapping[str, str],
            cwd: str | Path = ".") -> None:
    """Queue experiment ``name``: the workspace as it is, with ``overrides`` applied, reproducing ``targets``."""
    sets = [arg for o in overrides for arg in ("-S", o)]
    _dvc(["exp", "run", "--queue", "--name", name, *sets, *targets], env, cwd)


def thread_share(processes: int) -> int:
    """The CPU threads each of ``processes`` concurrent processes gets (torch reads OMP_NUM_THREADS): the cores
    divided between them, never N x all of them fighting over the cores."""
    return max(1, (os.cpu_count() or 1) // processes)


def start_workers(jobs: int, env: Mapping[str, str], cwd: str | Path = ".") -> None:
    """``dvc queue start -j N``: N workers, each running one queued experiment at a time in a temporary copy; the
    workers inherit ``env`` (the absolute tracking URI, their share of the CPU threads) and stop when the queue is
    empty."""
    import tempfile

    env = {"OMP_NUM_THREADS": str(thread_share(jobs)), **env}  # N workers share the cores
    # not through pipes: the daemonized workers inherit them, and reading to their end would wait for the sweep
    with tempfile.TemporaryFile("w+") as out:
        code = subprocess.run([tool("dvc"), "queue", "start", "--jobs", str(jobs)], cwd=cwd, env=dict(env),
                              stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT).returncode
        if code != 0:
            out.seek(0)
            raise PipelineError(f"`dvc queue start --jobs {jobs}` failed ({code}): {out.read().strip()[-1500:]}")


def states(cwd: str | Path = ".") -> dict[str, str]:
    """Every queue task by experiment name: Queued, Running, Success or Failed (``dvc queue status``); Orphaned for
    one still running whose queue worker was killed (nobody will collect its result), Lost for one DVC still calls
    Running whose process is gone."""
    from dvc.repo import Repo

    with Repo(str(cwd)) as repo:
        q = repo.experiments.celery_queue
        out = {}
        for t in q.status():
            if not t.get("name"):
                continue
            out[t["name"]] = t["status"]
            if t["status"] == RUNNING:
                proc = _executor(Path(q.pid_dir) / t["rev"] / f"{t['rev']}.pid")
                if proc is False:
                    out[t["name"]] = LOST
                elif proc is not None and not _under_worker(proc):
                    out[t["name"]] = ORPHANED
        return out


def _executor(pidfile: Path) -> Any:
    """The experiment's executor process (``dvc exp exec-run``); None while it starts, False once it is gone."""
    import psutil

    try:
        return psutil.Process(int(pidfile.read_text().strip()))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, psutil.Error):
        return False


def _under_worker(proc: Any) -> bool:
    import psutil

    try:
        return any("queue-worker" in " ".join(p.cmdline()) for p in proc.parents())
    except psutil.Error:
        return False


def stop_orphans(names: Sequence[str], cwd: str | Path = ".") -> None:
    """Kill what the executors of these experiments still run (their worker is gone: the result would be lost)."""
    import psutil
    from dvc.repo import Repo

    with Repo(str(cwd)) as repo:
        q = repo.experiments.celery_queue
        revs = [t["rev"] for t in q.status() if t.get("name") in names and t["status"] == RUNNING]
        pid_dir = Path(q.pid_dir)
    for rev in revs:
        proc = _executor(pid_dir / rev / f"{rev}.pid")
        if not proc:
            continue
        tree = [*proc.children(recursive=True), proc]
        for p in tree:
            with contextlib.suppress(psutil.Error):
                p.kill()
        psutil.wait_procs(tree, timeout=30)


def log_tail(name: str, env: Mapping[str, str], cwd: str | Path = ".", lines: int = 12) -> str:
    """The last lines of an experiment's output (``dvc queue logs``): what a failed combination reports."""
    proc = _dvc(["queue", "logs", name], env, cwd, check=False)
    text = (proc.stdout + proc.stderr).strip().splitlines()
    return "\n".join(text[-lines:])


def kill(names: Sequence[str], env: Mapping[str, str], cwd: str | Path = ".") -> None:
    """Stop running experiments (their stages get SIGINT: training checkpoints) and drop every entry of ``names``
    (a lost one is dropped only once DVC has noticed, through the kill, that its process is gone)."""
    current = states(cwd)
    stop_orphans([n for n in names if current.get(n) == ORPHANED], cwd)
    running = [n for n in names if current.get(n) in (RUNNING, LOST, ORPHANED)]
    if running:
        _dvc(["queue", "kill", *running], env, cwd, check=False)
    forget([n for n in names if n in current], env, cwd)


def forget(names: Sequence[str], env: Mapping[str, str], cwd: str | Path = ".") -> None:
    """Remove queue entries (queued, failed or done) of these names, so they can be queued again."""
    if names:
        _dvc(["queue", "remove", *names], env, cwd, check=False)


def experiments(cwd: str | Path = ".") -> dict[str, str]:
    """Every DVC experiment of the repository by name: its commit (``refs/exps/.../<name>``)."""
    out = subprocess.run(["git", "for-each-ref", "--format=%(refname) %(objectname)", "refs/exps"], cwd=cwd,
                         capture_output=True, text=True, check=True).stdout
    found = {}
    for line in out.splitlines():
        ref, _, sha = line.partition(" ")
        if ref.count("/") >= 4 and not ref.startswith(("refs/exps/celery", "refs/exps/exec", "refs/exps/temp")):
            found[ref.rsplit("/", 1)[1]] = sha
    return found


def read_file(commit: str, path: str, cwd: str | Path = ".") -> str | None:
    """A git-tracked file of an experiment's commit (its metrics, its dvc.lock), None when absent."""
    proc = subprocess.run(["git", "show", f"{commit}:{path}"], cwd=cwd, capture_output=True, text=True)
    return proc.stdout if proc.returncode == 0 else None


def read_json(commit: str, path: str, cwd: str | Path = ".") -> Any:
    text = read_file(commit, path, cwd)
    with contextlib.suppress(json.JSONDecodeError, TypeError):
        return json.loads(text)  # type: ignore[arg-type]
    return None


def cached_output(commit: str, output: str, cwd: str | Path = ".") -> Path | None:
    """The file DVC cached for ``output`` (``models/esrgan.pth``) in an experiment: found through its dvc.lock."""
    import yaml

    lock = yaml.safe_load(read_file(commit, "dvc.lock", cwd) or "{}") or {}
    for stage in lock.get("stages", {}).values():
        for out in stage.get("outs", []):
            if out.get("path") == output and out.get("md5"):
                md5 = out["md5"]
                path = Path(cwd) / ".dvc" / "cache" / "files" / "md5" / md5[:2] / md5[2:]
                return path if path.is_file() else None
    return None
