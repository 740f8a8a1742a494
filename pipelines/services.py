"""Local orchestration services, started and stopped by PID (never by name), bound to 127.0.0.1 only.

``python -m pipelines.services up``   Prefect server (SQLite in .prefect/), the work pools, the deployments of
                                       prefect.yaml, the zombie automation and a process worker on pool
                                       ``srgan-local`` (``--pool srgan-cpu``: that pool)   (``make prefect-up``)
``python -m pipelines.services worker --pool srgan-gpu --api http://HOST:4200/api``
                                       only a process worker, for another host's server
                                       (docs/orchestration.md, "Beyond one machine")
``python -m pipelines.services down`` stops what ``up`` started                  (``make prefect-down``)
``python -m pipelines.services status``
``python -m pipelines.services mlflow-ui`` the MLflow UI on the project's store, in the foreground (``make mlflow-ui``)
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path

from srgan_lib import TELEMETRY_OFF, telemetry_off
from srgan_lib.orchestration.dvc import BIN
from srgan_lib.orchestration.dvc import tool as _tool

POOL = "srgan-local"
POOLS = (POOL, "srgan-cpu", "srgan-gpu")  # prefect.yaml's pools: one machine, and the CPU / GPU hosts
HOST = "127.0.0.1"
HEARTBEAT_S = 30  # flow-run heartbeat period the workers' runs use (Prefect's minimum)
WORKER_QUERY_S = 2  # how often a worker asks for scheduled runs (Prefect's default 10 s: up to 10 s idle per stage)
ZOMBIE = "srgan: crash flow runs without heartbeats"
CHECKOUT_ENV = "SRGAN_CHECKOUT"  # the checkout a worker's `hosts` / `dvc-stage` runs use (prefect.yaml pull step)


class ServiceError(RuntimeError):
    """A service did not start or stop; the message says which and where its log is."""


def prefect_env(home: Path, port: int, api: str | None = None) -> dict[str, str]:
    """Environment for the server, the worker and the prefect CLI calls: one home, one API URL (``api``, else the
    local server on ``port``), heartbeats from every flow run (what the zombie automation watches), workers that
    pick a stage's flow run up within seconds, no analytics; the user's own PREFECT_* values win."""
    return {"PREFECT_FLOWS_HEARTBEAT_FREQUENCY": str(HEARTBEAT_S), "PREFECT_WORKER_QUERY_SECONDS": str(WORKER_QUERY_S),
            **os.environ, **TELEMETRY_OFF,
            "PREFECT_HOME": str(home), "PREFECT_API_URL": api or f"http://{HOST}:{port}/api",
            "PREFECT_SERVER_API_HOST": HOST, "PREFECT_SERVER_API_PORT": str(port),
            "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}


def zombie_automation(after_s: int) -> dict[str, object]:
    """Prefect's documented "crash zombie flows" automation: a flow run that stops sending heartbeats for
    ``after_s`` seconds (its worker or host died) is marked Crashed, so the flow that waits on it can resubmit it."""
    return {
        "name": ZOMBIE,
        "description": f"A flow run without a heartbeat for {after_s} s is marked Crashed (pipelines/services.py).",
        "enabled": True,
        "trigger": {
            "type": "event", "posture": "Proactive", "threshold": 1, "within": after_s,
            "after": ["prefect.flow-run.heartbeat"],
            "expect": ["prefect.flow-run.heartbeat", "prefect.flow-run.Completed", "prefect.flow-run.Failed",
                       "prefect.flow-run.Cancelled", "prefect.flow-run.Crashed"],
            "match": {"prefect.resource.id": ["prefect.flow-run.*"]},
            "for_each": ["prefect.resource.id"],
        },
        "actions": [{"type": "change-flow-run-state", "state": "CRASHED",
                     "message": f"no heartbeat for {after_s} s: its worker or host stopped"}],
    }


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return resp.status == 200
    except (urllib.error.URLError, OSError):
        return False


def wait_http(url: str, proc: subprocess.Popen, log: Path, timeout: float = 180) -> None:
    """Wait until ``url`` answers 200, failing early (with the log's tail) if the process exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            raise ServiceError(f"process {proc.pid} exited with {proc.returncode} before {url} answered; "
                               f"log {log}:\n{tail}")
        if _healthy(url):
            return
        time.sleep(0.5)
    raise ServiceError(f"{url} did not answer within {timeout:.0f} s; see {log}")


def _spawn(cmd: list[str], env: Mapping[str, str], log: Path, cwd: Path) -> subprocess.Popen:
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as fh:  # the child keeps its own handle
        return subprocess.Popen(cmd, cwd=cwd, env=dict(env), stdout=fh, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)


def stop_pid(pid: int, timeout: float = 30) -> bool:
    """SIGTERM the process group led by ``pid`` (started with a new session), SIGKILL after ``timeout``."""
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return False
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.killpg(pid, 0)
        except ProcessLookupError:
            break
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)  # reap it when it is our child (tests)
        time.sleep(0.2)
    else:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, 0)
    return True


def _state_file(home: Path) -> Path:
    return home / "services.json"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def up(root: Path, port: int, *, deploy: bool = True, worker: bool = True, pool: str = POOL,
       zombie_after_s: int = 3 * HEARTBEAT_S) -> dict[str, int]:
    """Start the Prefect server, create the work pools, the deployments and the zombie automation, start a process
    worker on ``pool``."""
    home = root / ".prefect"
    state = _state_file(home)
    if state.exists():
        running = {k: v for k, v in json.loads(state.read_text()).items() if k != "port" and _alive(v)}
        if running:
            raise ServiceError(f"already running ({', '.join(f'{k} pid {v}' for k, v in running.items())}); "
                               "`make prefect-down` first")
    home.mkdir(parents=True, exist_ok=True)
    env = prefect_env(home, port)
    pids: dict[str, int] = {"port": port}
    logs = home / "logs"
    server = _spawn([_tool("prefect"), "server", "start", "--host", HOST, "--port", str(port)], env,
                    logs / "server.log", root)
    pids["server"] = server.pid
    state.write_text(json.dumps(pids))
    try:
        print(f"prefect server: starting on http://{HOST}:{port} (pid {server.pid}, log {logs / 'server.log'})",
              flush=True)
        wait_http(f"http://{HOST}:{port}/api/health", server, logs / "server.log")
        if deploy:
            for name in POOLS:
                _run([_tool("prefect"), "work-pool", "create", name, "--type", "process", "--overwrite"], env, root)
            _run([_tool("prefect"), "--no-prompt", "deploy", "--all"], env, root)
            print("deployments: train-srgan/local, train-esrgan/local, train/local, evaluate/local, sweep/local "
                  f"on pool {POOL}; train-esrgan/hosts, train-srgan/hosts, dvc-stage/cpu on srgan-cpu, dvc-stage/gpu "
                  "on srgan-gpu", flush=True)
            if ZOMBIE not in automation_names(env["PREFECT_API_URL"]):
                _run([_tool("prefect"), "automation", "create", "--from-json",
                      json.dumps(zombie_automation(zombie_after_s))], env, root)
            print(f"automation: a flow run without a heartbeat for {zombie_after_s} s is marked Crashed", flush=True)
        if worker:
            pids["worker"] = start_worker(root, env, pool).pid
            state.write_text(json.dumps(pids))
    except BaseException:
        down(root)
        raise
    return pids


def automation_names(api: str) -> list[str]:
    """Names of the automations the server at ``api`` holds (the REST API: the CLI's table wraps long names)."""
    req = urllib.request.Request(api.rstrip("/") + "/automations/filter", data=b"{}",
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as resp:
        return [a["name"] for a in json.loads(resp.read())]


def start_worker(root: Path, env: Mapping[str, str], pool: str) -> subprocess.Popen:
    """A process worker on ``pool`` whose flow runs execute in the checkout ``root``."""
    log = root / ".prefect" / "logs" / "worker.log"
    env = {**env, CHECKOUT_ENV: str(root)}  # the `hosts` / `dvc-stage` deployments run in this checkout
    proc = _spawn([_tool("prefect"), "worker", "start", "--pool", pool, "--type", "process"], env, log, root)
    print(f"prefect worker: pool {pool} (pid {proc.pid}, log {log}, API {env['PREFECT_API_URL']})", flush=True)
    return proc


def worker_only(root: Path, api: str, pool: str) -> dict[str, int]:
    """A process worker in this checkout for the server at ``api`` (another host's): what a GPU host runs."""
    home = root / ".prefect"
    state = _state_file(home)
    if state.exists() and any(_alive(v) for k, v in json.loads(state.read_text()).items() if k != "port"):
        raise ServiceError(f"services already running here ({state}); `make prefect-down` first")
    home.mkdir(parents=True, exist_ok=True)
    if not _healthy(api.rstrip("/") + "/health"):
        raise ServiceError(f"no Prefect server answers at {api} (start it on its host: make prefect-up)")
    pids = {"worker": start_worker(root, prefect_env(home, 0, api), pool).pid}
    state.write_text(json.dumps(pids))
    return pids


def _run(cmd: list[str], env: Mapping[str, str], cwd: Path) -> None:
    proc = subprocess.run(cmd, cwd=cwd, env=dict(env), capture_output=True, text=True)
    if proc.returncode != 0:
        raise ServiceError(f"`{' '.join(Path(cmd[0]).name if i == 0 else c for i, c in enumerate(cmd))}` failed "
                           f"({proc.returncode}):\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")


def down(root: Path) -> list[str]:
    """Stop the worker, then the server, by the PIDs ``up`` recorded; forget them."""
    state = _state_file(root / ".prefect")
    if not state.exists():
        return []
    pids = json.loads(state.read_text())
    stopped = [f"{name} (pid {pids[name]})" for name in ("worker", "server") if name in pids and stop_pid(pids[name])]
    state.unlink()
    return stopped


def status(root: Path) -> dict[str, object]:
    """What ``up`` started and whether it is alive."""
    state = _state_file(root / ".prefect")
    if not state.exists():
        return {}
    pids = json.loads(state.read_text())
    return {"port": pids.get("port"), **{k: (v, _alive(v)) for k, v in pids.items() if k != "port"}}


def mlflow_ui_command(store: str, port: int) -> list[str]:
    """``mlflow server`` on 127.0.0.1 with lean settings for small machines: one worker (job execution is turned
    off through the environment, see :func:`mlflow_env`)."""
    from srgan_lib.tracking import artifact_root

    cmd = [_tool("mlflow"), "server", "--backend-store-uri", store, "--host", HOST, "--port", str(port),
           "--workers", "1"]
    root = artifact_root(store)
    return cmd + (["--default-artifact-root", root] if root else [])


def runs_url(uri: str, experiment: str, port: int) -> str:
    """The UI page of the experiment's runs, in the UI's model-training mode (MLflow 3 otherwise opens its GenAI
    overview; the experiment's kind tag alone does not override a browser's last choice)."""
    from mlflow.tracking import MlflowClient

    telemetry_off()
    exp = MlflowClient(tracking_uri=uri).get_experiment_by_name(experiment)
    where = f"experiments/{exp.experiment_id}/runs" if exp else "experiments"
    return f"http://{HOST}:{port}/#/{where}?workflowType=machine_learning"


def mlflow_env() -> dict[str, str]:
    """Environment for the MLflow server: no telemetry, no background job runner."""
    return {**os.environ, **TELEMETRY_OFF, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}


def serve_foreground(cmd: list[str], env: Mapping[str, str]) -> int:
    """Run a server in the foreground and take it down with this launcher: it runs in its own process group (with
    its workers), and SIGTERM, SIGHUP or Ctrl-C here stop that whole group (``mlflow server`` and its uvicorn
    otherwise outlived a SIGTERMed launcher, re-parented to PID 1 and still listening)."""
    proc = subprocess.Popen(cmd, env=dict(env), start_new_session=True)
    stopping: list[int] = []

    def stop(signum: int, _frame: object) -> None:
        stopping.append(signum)
        stop_pid(proc.pid, timeout=10)

    previous = {s: signal.signal(s, stop) for s in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT)}
    try:
        while True:
            try:
                rc = proc.wait()
                break
            except ChildProcessError:  # stop_pid reaped it
                rc = 0
                break
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        if proc.poll() is None:
            stop_pid(proc.pid, timeout=10)
    return 128 + stopping[0] if stopping else rc


def main(argv: list[str] | None = None) -> int:
    from srgan_lib.config.params import load_params
    from srgan_lib.tracking import resolve_uri

    p = argparse.ArgumentParser(prog="python -m pipelines.services", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("action", choices=("up", "worker", "down", "status", "mlflow-ui"))
    p.add_argument("--port", type=int, help="port (default: 4200 for Prefect, 5000 for the MLflow UI)")
    p.add_argument("--pool", default=None, choices=POOLS,
                   help=f"the work pool of the worker (default {POOL}; other hosts: srgan-cpu / srgan-gpu)")
    p.add_argument("--api", help="worker: the Prefect server's API URL, e.g. http://HOST:4200/api")
    p.add_argument("--zombie-after", type=int, default=3 * HEARTBEAT_S, metavar="S",
                   help="up: a flow run without a heartbeat for S seconds is marked Crashed (default %(default)s)")
    p.add_argument("--root", type=Path, default=Path.cwd(), help="repository root (default: current folder)")
    args = p.parse_args(argv)
    root = args.root.resolve()
    try:
        if args.action == "up":
            port = args.port or 4200
            up(root, port, pool=args.pool or POOL, zombie_after_s=args.zombie_after)
            where = ("prefect.toml points the prefect CLI here when run from this folder" if port == 4200 else
                     f"first: export PREFECT_API_URL=http://{HOST}:{port}/api")
            print(f"\nPrefect UI: http://{HOST}:{port}\nrun a deployment: prefect deployment run 'train-esrgan/local' "
                  f"--watch   ({where})\nstop: make prefect-down")
        elif args.action == "worker":
            if not args.api:
                raise ServiceError("worker needs --api http://HOST:4200/api (the server's host)")
            worker_only(root, args.api, args.pool or "srgan-gpu")
            print("stop: make prefect-down (or python -m pipelines.services down)")
        elif args.action == "down":
            stopped = down(root)
            print("stopped: " + (", ".join(stopped) if stopped else "nothing was running"))
        elif args.action == "status":
            st = status(root)
            print(json.dumps(st) if st else "not running (make prefect-up)")
        else:
            os.chdir(root)
            params = load_params("params.yaml", folders=False)  # the UI needs the store, not the data
            uri = resolve_uri(params.tracking.uri)
            if uri is None:
                raise ServiceError("tracking.uri is 'none' in params.yaml: there is no store to show")
            port = args.port or 5000
            print(f"MLflow UI: http://{HOST}:{port}  (store {uri}; Ctrl-C stops it)\n"
                  f"  the runs: {runs_url(uri, params.tracking.experiment, port)}\n"
                  f"  the registered generators: http://{HOST}:{port}/#/models", flush=True)
            return serve_foreground(mlflow_ui_command(uri, port), mlflow_env())
    except ServiceError as exc:
        print(f"services: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
