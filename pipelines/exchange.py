"""Stages on several hosts: the DVC remote is the exchange between their checkouts.

Without a default DVC remote nothing here changes anything: a stage is ``dvc repro STAGE`` in this checkout. With one
(``dvc remote add -d exchange s3://bucket/srgan``, or a shared folder), a stage on any host is

1. ``dvc repro --pull STAGE``: the upstream stages another host ran are restored from the remote's run-cache
   ("Stage 'store' is cached - skipping run, checking out outputs") instead of being run again here;
2. for a training stage, its checkpoints mirrored to ``<remote>/srgan-checkpoints/<stage>/<key>/`` while it trains,
   and the newest pulled first when this checkout has none, so a retry on a fresh host resumes where the killed one
   stopped (``--auto-resume`` still checks that the checkpoint belongs to the same parameters);
3. ``dvc push --run-cache STAGE``: its outputs and its run-cache entry, for the hosts downstream.

An object the remote should hold but does not is a clear error naming the stage and the file.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import subprocess
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from srgan_lib import UserError
from srgan_lib.config.params import Params, load_params
from srgan_lib.orchestration.dvc import PipelineError, dvc_command, run_dvc, tool, trained_section
from srgan_lib.training.trajectory import trajectory_key

log = logging.getLogger(__name__)
CHECKPOINTS = "srgan-checkpoints"  # the folder of the remote that holds training checkpoints (beside files/ and runs/)
EVERY_ENV = "SRGAN_CHECKPOINT_PUSH_S"  # seconds between checkpoint pushes while a training stage runs (default 30)
_CKPT = re.compile(r"^iter_\d{8}\.pt$")
_MISSING = re.compile(r"^name: ([^,]+), md5: (\S+)")
_MISSING_HEAD = "do not exist neither locally nor on remote"
_RUNNING = re.compile(r"^Running stage '([^']+)'")


class ExchangeError(UserError, RuntimeError):
    """The remote lacks what a stage needs, or could not take what it produced; the message names both."""


def default_remote(cwd: str | Path = ".") -> str | None:
    """The name of the checkout's default DVC remote (``core.remote``), or None when there is none."""
    out = subprocess.run([tool("dvc"), "remote", "default"], cwd=cwd, capture_output=True, text=True,
                         env={**os.environ, "DVC_NO_ANALYTICS": "1"})
    name = out.stdout.strip()
    return name if out.returncode == 0 and name and "No default remote" not in name else None


def training_run_dir(stage: str, cwd: str | Path = ".") -> tuple[Path, Params] | None:
    """``runs/<name>`` and the stage's params for a training stage (``train_gan@<name>``); None for any other stage."""
    name = trained_section(stage)
    if name is None:
        return None
    params = load_params(Path(cwd) / "params.yaml")
    if name not in params.recipes.names():
        return None
    return Path(cwd) / params.train.out / name, params


@dataclass
class CheckpointMirror:
    """Keeps ``<remote>/srgan-checkpoints/<stage>/<key>/`` equal to the local ``checkpoints/`` folder of a
    training stage: new files uploaded (to a temporary name, then renamed: a reader never sees half a file), files
    the trainer deleted deleted there. Local is the authority once the stage runs here."""

    fs: Any  # a DVC (fsspec) filesystem: local, s3, gs, ssh, azure ...
    remote_dir: str
    local_dir: Path

    @classmethod
    def for_stage(cls, stage: str, cwd: str | Path = ".", remote: str | None = None) -> CheckpointMirror | None:
        """The mirror of a training stage under the default remote; None for other stages or without a remote."""
        found = training_run_dir(stage, cwd)
        remote = remote or default_remote(cwd)
        if found is None or remote is None:
            return None
        run_dir, params = found
        from dvc.repo import Repo

        with Repo(str(cwd)) as repo:
            target = repo.cloud.get_remote(remote, "srgan checkpoint exchange")
        where = target.fs.join(target.path, CHECKPOINTS, stage, trajectory_key(params, trained_section(stage) or stage))
        return cls(target.fs, where, run_dir / "checkpoints")

    def _remote(self) -> dict[str, int]:
        try:
            entries = self.fs.ls(self.remote_dir, detail=True)
        except FileNotFoundError:
            return {}
        return {Path(e["name"]).name: int(e.get("size") or 0) for e in entries
                if _CKPT.match(Path(e["name"]).name)}

    def _local(self) -> dict[str, int]:
        if not self.local_dir.is_dir():
            return {}
        return {p.name: p.stat().st_size for p in self.local_dir.iterdir() if _CKPT.match(p.name)}

    def pull(self) -> str | None:
        """Download the remote's newest checkpoint when this checkout has none (a fresh host, or a wiped one);
        returns its name."""
        if self._local():
            return None
        remote = self._remote()
        if not remote:
            return None
        newest = max(remote)
        self.local_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.local_dir / f".{newest}.download"
        self.fs.get_file(self.fs.join(self.remote_dir, newest), str(tmp))
        tmp.replace(self.local_dir / newest)
        log.info("checkpoint exchange: pulled %s from %s", newest, self.remote_dir)
        return newest

    def push(self) -> list[str]:
        """Upload what is new locally, delete what the trainer deleted; returns the names uploaded."""
        local, remote = self._local(), self._remote()
        uploaded = []
        for name in sorted(local):
            if remote.get(name) == local[name]:
                continue
            src = self.local_dir / name
            if not src.exists():  # the trainer pruned it meanwhile
                continue
            self.fs.makedirs(self.remote_dir, exist_ok=True)
            tmp = self.fs.join(self.remote_dir, f".{name}.upload")
            self.fs.put_file(str(src), tmp)
            self.fs.mv(tmp, self.fs.join(self.remote_dir, name))
            uploaded.append(name)
        if local:  # never empty the remote because this checkout has nothing yet
            for name in set(remote) - set(self._local()):
                with contextlib.suppress(FileNotFoundError):
                    self.fs.rm(self.fs.join(self.remote_dir, name))
        if uploaded:
            log.info("checkpoint exchange: pushed %s to %s", ", ".join(uploaded), self.remote_dir)
        return uploaded

    @contextlib.contextmanager
    def running(self, every_s: float = 30.0) -> Iterator[None]:
        """Push every ``every_s`` seconds while the block runs, and once more at its end (also on failure)."""
        stop = threading.Event()

        def loop() -> None:
            while not stop.wait(every_s):
                try:
                    self.push()
                except OSError as exc:  # a flaky remote must not kill training; the next round retries
                    log.warning("checkpoint exchange: push to %s failed: %s", self.remote_dir, exc)

        thread = threading.Thread(target=loop, name="checkpoint-exchange", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()
            self.push()


def _outs(stage: str, cwd: str | Path) -> list[str]:
    """The outputs ``dvc.yaml`` declares for ``stage`` (for error messages)."""
    from dvc.repo import Repo

    with Repo(str(cwd)) as repo:
        return [str(o) for st in repo.stage.collect(stage) for o in st.outs]


def reproduce(stage: str, env: Mapping[str, str], *, cwd: str | Path = ".",
              on_line: Callable[[str], None] | None = None, mirror_every_s: float | None = None) -> str:
    """One stage through the exchange: ``dvc repro --pull`` (+ checkpoint mirror) and ``dvc push --run-cache`` when
    the checkout has a default remote; plain ``dvc repro STAGE`` otherwise. Returns DVC's output."""
    remote = default_remote(cwd)
    say = on_line or (lambda line: print(line, flush=True))
    if remote is None:
        return run_dvc(dvc_command([stage]), env, cwd=cwd, on_line=on_line)
    mirror = CheckpointMirror.for_stage(stage, cwd, remote)
    lines: list[str] = []
    missing: list[str] = []

    def keep(line: str) -> None:
        """Stream DVC's output; stop as soon as it would run a stage whose outputs the remote should have had."""
        lines.append(line)
        say(line)
        if _MISSING_HEAD in line:
            missing.append("")
        elif missing and (m := _MISSING.match(line.strip())):
            missing.append(m.group(1) if m.group(1) != "None" else f"md5 {m.group(2)}")
        elif missing and (m := _RUNNING.match(line)) and m.group(1) != stage:
            up = m.group(1)
            raise ExchangeError(
                f"stage '{stage}': upstream stage '{up}' ran elsewhere (it is in remote '{remote}'s run-cache), but "
                f"the remote lacks {', '.join(f for f in missing if f)} of its outputs ({', '.join(_outs(up, cwd))}); "
                f"on the host that ran it: `dvc push --run-cache {up}`, then retry")

    if mirror is not None and (pulled := mirror.pull()):
        say(f"checkpoint exchange: resuming from {pulled} pulled from remote '{remote}'")
    every = mirror_every_s or float(os.environ.get(EVERY_ENV, "30"))
    with mirror.running(every) if mirror is not None else contextlib.nullcontext():
        run_dvc([tool("dvc"), "repro", "--pull", stage], env, cwd=cwd, on_line=keep)
    pushed: list[str] = []
    try:
        run_dvc([tool("dvc"), "push", "--run-cache", stage], env, cwd=cwd, on_line=pushed.append)
    except PipelineError as exc:
        raise ExchangeError(f"stage '{stage}': pushing its outputs to remote '{remote}' failed:\n"
                            + "\n".join(pushed[-20:])) from exc
    say(f"exchange: stage '{stage}' pushed to remote '{remote}' ({pushed[-1] if pushed else 'nothing new'})")
    return "\n".join(lines)
