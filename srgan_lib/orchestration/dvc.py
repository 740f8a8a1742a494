"""Running the DVC pipeline from Python: validate the parameters, open a parent MLflow run, run ``dvc repro`` (or,
with overrides, ``dvc exp run --temp -S ...`` so ``params.yaml`` is never edited and DVC records the experiment),
close the run. ``srgan repro`` (what ``make run`` calls) and the Prefect flows use these same functions; the stages
themselves are the ``srgan`` commands in ``dvc.yaml``, so ``dvc.lock`` stays the single record of what ran.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import subprocess
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from srgan_lib import TELEMETRY_OFF, UserError, tracking
from srgan_lib.config.params import DEFAULT_PARAMS, Params, ParamsError, load_params

log = logging.getLogger(__name__)
BIN = Path(sys.executable).parent  # the environment's dvc / srgan / prefect / mlflow


def tool(name: str) -> str:
    """The environment's copy of a command-line tool (``dvc``, ``prefect``, ``mlflow``), else whatever PATH has."""
    return str(BIN / name) if (BIN / name).exists() else name


TRAINING_GROUPS = ("train_psnr", "train_gan")  # dvc.yaml's foreach groups of training stages: <group>@<section>


def trained_section(stage: str) -> str | None:
    """The params section a training stage trains (``train_gan@esrgan`` -> ``esrgan``); None for any other stage."""
    group, _, section = stage.partition("@")
    return section if group in TRAINING_GROUPS and section else None


DATA_STAGES = ("embedded", "lists", "degrade", "store", "realworld")


def training_stage(params: Params, recipe: str) -> str:
    """dvc.yaml's stage that trains ``recipe``: ``train_psnr@NAME`` from scratch, ``train_gan@NAME`` fine-tuned."""
    params.stage(recipe)  # an unknown recipe: the error lists the recipes
    return f"train_gan@{recipe}" if recipe in params.recipes.finetuned else f"train_psnr@{recipe}"


def recipe_stages(params: Params, recipe: str) -> list[str]:
    """The stages of a fine-tuned recipe's pipeline (a Prefect flow): the data, the training of its ancestry from the
    recipe trained from scratch down to it (rrdbnet -> realesrnet -> realesrgan; ESRGAN's network interpolation where
    ``interpolate`` uses it), then the evaluation and registration of each."""
    finetuned = params.recipes.finetuned
    if recipe not in finetuned:
        raise ParamsError(f"{recipe!r} is not a fine-tuned recipe (recipes.finetuned: "
                          f"{', '.join(finetuned) or 'none'})")
    chain = [recipe]
    while chain[0] in finetuned and finetuned[chain[0]] not in chain:
        chain.insert(0, finetuned[chain[0]])
    interp = ["interpolate"] if params.interpolate.gan == f"{params.train.models}/{recipe}.pth" else []
    return [*DATA_STAGES, *(training_stage(params, r) for r in chain), *interp,
            *(f"evaluate_models@{r}" for r in chain if r in params.evaluate.models),
            *(f"register@{r}" for r in chain if r in params.register.models)]


class PipelineError(UserError, RuntimeError):
    """A DVC command failed; the message names it and its exit status."""


@dataclass(frozen=True)
class PipelineRun:
    """What the stages of one pipeline run share: its parent MLflow run (``None`` when tracking is off)."""

    uri: str | None
    run_id: str | None

    @property
    def env(self) -> dict[str, str]:
        """The environment DVC and its stages run in (see :func:`stage_env`)."""
        return stage_env(self.run_id, self.uri)


def override_strings(overrides: Mapping[str, Any] | Sequence[str] | None) -> list[str]:
    """``{'esrgan.gan.weight': 0.01}`` or ``['esrgan.gan.weight=0.01']`` -> ``['esrgan.gan.weight=0.01']``."""
    if not overrides:
        return []
    if isinstance(overrides, Mapping):
        return [f"{k}={v if isinstance(v, str) else json.dumps(v)}" for k, v in overrides.items()]
    return [str(o) for o in overrides]


def stage_env(run_id: str | None, uri: str | None) -> dict[str, str]:
    """Environment for DVC and its stages: the project's tools first on PATH, the parent run, an absolute store,
    telemetry off (:data:`srgan_lib.TELEMETRY_OFF`, where the user has not set those variables)."""
    env = {**TELEMETRY_OFF, **os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    env.pop(tracking.PARENT_ENV, None)
    if run_id:
        env[tracking.PARENT_ENV] = run_id
    if uri:
        env["MLFLOW_TRACKING_URI"] = uri  # absolute: `dvc exp run --temp` runs the stages in another folder
    return env


@contextlib.contextmanager
def pipeline_run(name: str, overrides: Sequence[str] = (), *, params_path: str | Path = DEFAULT_PARAMS,
                 tags: Mapping[str, str] | None = None) -> Iterator[PipelineRun]:
    """Validate ``params.yaml`` (+ overrides) before anything runs, then hold a parent MLflow run that every stage
    run nests under. The run ends FINISHED, FAILED, or KILLED (Ctrl-C / cancellation)."""
    params = load_params(params_path, overrides)
    uri = tracking.resolve_uri(params.tracking.uri)
    how = (f"`dvc exp run --temp` with {' '.join(overrides)} (params.yaml untouched)" if overrides else
           "`dvc repro` of dvc.yaml with params.yaml")
    description = (f"Pipeline run **{name}**: {how}. Every stage that ran is a nested run: train/<stage> (losses, "
                   "validation images), evaluate/<model> (Set5/Set14 metrics, per-image table), report, and the "
                   "registered generators (srgan-<stage>, alias champion). Stages DVC found up to date did not run.")
    run_id = tracking.start_pipeline_run(uri, params.tracking.experiment, name, tags={
        "git_commit": tracking.git_commit(), "srgan.overrides": " ".join(overrides) or "none", **(tags or {})},
        description=description)
    tracker = tracking.Tracker(uri, "", "", run_id=run_id) if run_id else tracking.Tracker(None, "", "")
    tracker.log_params({f"override.{o.split('=', 1)[0]}": o.split("=", 1)[1] for o in overrides})
    status = "FAILED"
    try:
        yield PipelineRun(uri, run_id)
        status = "FINISHED"
    except KeyboardInterrupt:
        status = "KILLED"
        raise
    finally:
        tracker.end(status)


def dvc_command(targets: Sequence[str] = (), overrides: Sequence[str] = (), *, experiment: str | None = None,
                force: bool = False) -> list[str]:
    """``dvc repro [targets]``, or ``dvc exp run --temp -S k=v ... [targets]`` when there are overrides."""
    dvc = tool("dvc")
    if not overrides:
        return [dvc, "repro", *(["--force"] if force else []), *targets]
    cmd = [dvc, "exp", "run", "--temp", *(["--force"] if force else [])]
    if experiment:
        cmd += ["--name", experiment_name(experiment)]
    for o in overrides:
        cmd += ["-S", o]
    return [*cmd, *targets]


def experiment_name(text: str) -> str:
    """A valid DVC experiment name (a git ref component) made from free text such as a flow run name."""
    return re.sub(r"[^A-Za-z0-9_-]+", "-", text).strip("-")[:60] or "exp"


def run_dvc(cmd: Sequence[str], env: Mapping[str, str], *, cwd: str | Path = ".",
            on_line: Callable[[str], None] | None = None) -> str:
    """Run one DVC command. Output goes straight to the terminal, or line by line to ``on_line`` (Prefect's logger),
    and is returned when captured. On Ctrl-C the child (which got the same SIGINT) is waited for, so DVC records
    the stages that completed and an interrupted training stage keeps its checkpoints."""
    shown = " ".join(Path(cmd[0]).name if i == 0 else c for i, c in enumerate(cmd))
    lines: list[str] = []
    proc = subprocess.Popen(list(cmd), cwd=cwd, env=dict(env), text=True, bufsize=1,
                            stdout=subprocess.PIPE if on_line else None,
                            stderr=subprocess.STDOUT if on_line else None)
    try:
        if on_line and proc.stdout is not None:
            for line in proc.stdout:
                lines.append(line.rstrip("\n"))
                on_line(lines[-1])
        code = proc.wait()
    except KeyboardInterrupt:
        with contextlib.suppress(KeyboardInterrupt):
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.terminate()
                proc.wait()
        raise
    except BaseException:  # e.g. a Prefect cancellation: stop DVC (and through it the stage) cleanly
        proc.terminate()
        proc.wait()
        raise
    if code != 0:
        raise PipelineError(f"`{shown}` failed with exit status {code}")
    return "\n".join(lines)


def stage_names(cwd: str | Path = ".") -> list[str]:
    """Every stage of ``dvc.yaml`` as DVC names them (``foreach`` expanded: ``evaluate_models@esrgan``)."""
    out = subprocess.run([tool("dvc"), "stage", "list", "--name-only"], cwd=cwd, env=stage_env(None, None),
                         capture_output=True, text=True)
    if out.returncode != 0:
        raise PipelineError(f"`dvc stage list` failed: {out.stderr.strip() or out.stdout.strip()}")
    return [line.strip() for line in out.stdout.splitlines() if line.strip()]
