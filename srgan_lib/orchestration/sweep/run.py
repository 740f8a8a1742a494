"""``run_sweep``: validate the grid, run the shared upstream stages once, queue one DVC experiment per combination,
let ``jobs`` DVC queue workers run them, record each as an MLflow child run, write the table and the
perception-distortion figure, and offer the best to the registry gate. ``srgan sweep`` and the Prefect flow ``sweep``
call it."""

from __future__ import annotations

import contextlib
import logging
import math
import os
import shutil
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from srgan_lib import DEFAULT_PARAMS, tracking
from srgan_lib.config.params import load_params
from srgan_lib.io.images import write_json
from srgan_lib.metrics import METRICS, format_value
from srgan_lib.orchestration.dvc import run_dvc, stage_env, tool
from srgan_lib.orchestration.sweep import queue
from srgan_lib.orchestration.sweep.dag import Plan, plan
from srgan_lib.orchestration.sweep.grid import (
    MAX_COMBINATIONS,
    Combination,
    GridError,
    combinations,
    parse_grid,
    sweep_id,
)
from srgan_lib.orchestration.sweep.runs import SweepRuns

log = logging.getLogger(__name__)
SUCCESS, FAILED, KILLED = "success", "failed", "killed"
RETRIES = 1  # an experiment whose queue worker was killed is queued again once
LOST_AFTER_S = 20.0  # 'Running' with its executor gone for this long: its worker was killed (not collecting)


@dataclass(frozen=True)
class SweepSettings:
    """What ``srgan sweep`` was asked: the grid, the stages, the workers, the metric that picks the best."""

    grid: tuple[str, ...]
    stages: tuple[str, ...] = ()
    jobs: int = 1
    metric: str = "niqe"
    test_set: str | None = None  # default: params.yaml register.set
    maximum: int = MAX_COMBINATIONS
    gate: bool = True
    params_path: str = DEFAULT_PARAMS
    out: str = "reports/sweeps"
    poll_s: float = 2.0


@dataclass
class Outcome:
    """One combination's end: its metrics (``{model: {set: {metric: value}}}``), its run, its error."""

    combo: Combination
    status: str
    metrics: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)
    run_id: str | None = None
    commit: str | None = None
    error: str = ""
    seconds: float | None = None


@dataclass
class SweepResult:
    ident: str
    plan: Plan
    outcomes: list[Outcome]
    table: pd.DataFrame
    folder: Path
    parent_run_id: str | None
    link: str | None
    gate: list[str] = field(default_factory=list)  # one line per model: what the gate decided


def error_line(log: str) -> str:
    """What a failed experiment's log says went wrong: the stage command's own error line (``srgan: error: ...``),
    else DVC's, else the last line."""
    lines = [line.strip() for line in log.splitlines() if line.strip()]
    for line in reversed(lines):
        if "error:" in line.lower() and not line.startswith("ERROR: failed to reproduce"):
            return line
    return lines[-1] if lines else ""


def _metrics(commit: str, models: Sequence[str], cwd: Path) -> dict[str, dict[str, dict[str, float]]]:
    out = {}
    for m in models:
        data = queue.read_json(commit, f"metrics/{m}.json", cwd)
        if isinstance(data, dict) and len(data) == 1:
            out[m] = next(iter(data.values()))
    return out


def _value(o: Outcome, model: str, test_set: str, metric: str) -> float:
    v = o.metrics.get(model, {}).get(test_set, {}).get(metric)
    return float("nan") if v is None else float(v)


def best(outcomes: Sequence[Outcome], model: str, test_set: str, metric: str) -> Outcome | None:
    """The successful combination with the best ``metric`` of ``model`` on ``test_set`` (the metric's direction)."""
    scored = [(o, _value(o, model, test_set, metric)) for o in outcomes if o.status == SUCCESS]
    scored = [(o, v) for o, v in scored if not math.isnan(v)]
    if not scored:
        return None
    sign = 1 if METRICS[metric].lower_is_better else -1
    return min(scored, key=lambda ov: sign * ov[1])[0]


def table(outcomes: Sequence[Outcome], models: Sequence[str], test_set: str, columns: Sequence[str]) -> pd.DataFrame:
    """One row per combination: its values, ``<model> <metric>`` on ``test_set``, status, experiment, MLflow run."""
    rows = []
    for o in outcomes:
        row: dict[str, Any] = dict(o.combo.values)
        for m in models:
            for c in columns:
                row[f"{m} {METRICS[c].label}" if len(models) > 1 else METRICS[c].label] = format_value(
                    c, None if math.isnan(_value(o, m, test_set, c)) else _value(o, m, test_set, c))
        row.update(status=o.status if not o.error else f"{o.status}: {o.error[:80]}",
                   experiment=o.combo.name, mlflow_run=o.run_id or "-")
        rows.append(row)
    return pd.DataFrame(rows)


@contextlib.contextmanager
def _parent_env(run_id: str | None) -> Iterator[None]:
    old = os.environ.get(tracking.PARENT_ENV)
    if run_id:
        os.environ[tracking.PARENT_ENV] = run_id
    try:
        yield
    finally:
        os.environ.pop(tracking.PARENT_ENV, None)
        if old is not None:
            os.environ[tracking.PARENT_ENV] = old


def _schedule(combos: list[Combination], outcomes: dict[str, Outcome], runs: SweepRuns, stages: Plan,
              env: dict[str, str], cwd: Path, say: Callable[[str], None]) -> list[Combination]:
    """Each combination's MLflow child run; those an earlier call of this sweep finished are recorded, not run
    again; the rest are queued, except those an earlier (killed) call left waiting in DVC's queue. The ones to wait
    for."""
    done = queue.experiments(cwd)
    todo = [c for c in combos if c.name not in done]
    for c in combos:
        runs.child(c)
        outcomes[c.name].run_id = runs.children.get(c.name)
        if c.name in done:
            o = outcomes[c.name]
            o.status, o.commit, o.metrics = SUCCESS, done[c.name], _metrics(done[c.name], stages.models, cwd)
            runs.finish(c, SUCCESS, o.metrics, lock=queue.read_file(o.commit, "dvc.lock", cwd))
    if len(todo) < len(combos):
        say(f"{len(combos) - len(todo)} combination(s) finished by an earlier call of this sweep: not run again")
    # an earlier call that was killed (SIGKILL, a lost Prefect worker) left experiments in the queue: wait for
    # those rather than queue them twice; failed or lost ones are queued again
    current = queue.states(cwd)
    adopted = [c for c in todo if current.get(c.name) in queue.WAITING]
    fresh = [c for c in todo if c not in adopted]
    if adopted:
        say(f"{len(adopted)} combination(s) still in DVC's queue from an earlier call: waiting for them")
    queue.forget([c.name for c in fresh], env, cwd)
    for c in fresh:
        queue.enqueue(c.name, c.overrides, stages.targets, env, cwd)
    return todo


def run_sweep(s: SweepSettings, *, say: Callable[[str], None] = print, cwd: str | Path = ".") -> SweepResult:
    """The sweep (see the module docstring); Ctrl-C kills the running experiments and drops the queued ones, and
    the same call again continues with what did not finish."""
    cwd = Path(cwd)
    params = load_params(cwd / s.params_path)
    axes = parse_grid(s.grid)
    test_set = s.test_set or params.register.set
    if s.metric not in METRICS or METRICS[s.metric].lower_is_better is None:
        raise GridError(f"--metric {s.metric!r}: choose one of "
                        f"{', '.join(m for m, d in METRICS.items() if d.lower_is_better is not None)}")
    if s.jobs < 1:
        raise GridError(f"--jobs must be at least 1, not {s.jobs}")
    combinations(params, axes, "check", maximum=s.maximum)  # every combination typed before DVC is asked anything
    baseline = f"evaluate_baselines@{params.register.baseline}"
    stages = plan([a.key for a in axes], s.stages, extra_upstream=[baseline] if s.gate else [], cwd=cwd)
    ident = sweep_id(axes, stages.targets, params)
    combos = combinations(params, axes, ident, maximum=s.maximum)
    uri = tracking.resolve_uri(params.tracking.uri)
    say(f"sweep {ident}: {len(combos)} combinations of {' x '.join(a.key for a in axes)}, each reproducing "
        f"{' '.join(stages.targets)}; {s.jobs} DVC queue worker(s)")
    runs = SweepRuns(uri, params.tracking.experiment, ident,
                     f"Sweep **{ident}**: {' '.join(s.grid)} -> {', '.join(stages.targets)}. Each child run is one "
                     "DVC experiment (`dvc exp show`, `dvc exp apply NAME`); compare them with the Compare button.")
    env = stage_env(runs.parent, uri)
    status, outcomes = "FAILED", {c.name: Outcome(c, "pending") for c in combos}
    try:
        say("upstream stages (once, in the workspace; each experiment checks them out of DVC's cache): "
            + " ".join(stages.upstream))
        run_dvc([tool("dvc"), "repro", *stages.upstream], env, cwd=cwd)
        todo = _schedule(combos, outcomes, runs, stages, env, cwd, say)
        if todo:
            queue.start_workers(min(s.jobs, len(todo)), env, cwd)
        _wait(todo, outcomes, runs, stages, env, cwd, s.poll_s, say, s.jobs)
        status = "FINISHED"
    except KeyboardInterrupt:
        status = "KILLED"
        pending = [n for n, o in outcomes.items() if o.status == "pending"]
        queue.kill(pending, env, cwd)
        for n in pending:
            runs.finish(outcomes[n].combo, KILLED, {}, lock=None)
        runs.end("KILLED")
        raise
    finally:
        if status == "FAILED":
            runs.end("FAILED")
    results = list(outcomes.values())
    columns = [c for c in dict.fromkeys(("psnr_y", "ssim_y", "niqe", "pi", s.metric))
               if any(not math.isnan(_value(o, m, test_set, c)) for o in results for m in stages.models)]
    frame = table(results, stages.models, test_set, columns)
    folder = cwd / s.out / ident
    folder.mkdir(parents=True, exist_ok=True)
    artifacts = _write(folder, frame, results, stages, test_set, s, params)
    result = SweepResult(ident, stages, results, frame, folder, runs.parent, runs.link())
    if s.gate:
        result.gate = _gate(result, params, test_set, s.metric, uri, cwd)
    write_json(folder / "sweep.json", {"sweep": ident, "grid": list(s.grid), "targets": list(stages.targets),
                                       "metric": s.metric, "set": test_set, "gate": result.gate,
                                       "parent_run_id": runs.parent,
                                       "combinations": [{"name": o.combo.name, "values": o.combo.values,
                                                         "status": o.status, "error": o.error,
                                                         "mlflow_run_id": o.run_id, "metrics": o.metrics}
                                                        for o in results]})
    runs.end("FINISHED", [str(p) for p in (*artifacts, folder / "sweep.json")])
    return result


def _requeue(names: Sequence[str], by_name: dict[str, Combination],
             retries: dict[str, int], outcomes: dict[str, Outcome], runs: SweepRuns, stages: Plan,
             env: dict[str, str], cwd: Path, say: Callable[[str], None]) -> None:
    """Experiments whose worker was lost: queued again from the start (up to RETRIES times), else failed."""
    queue.kill(names, env, cwd)  # DVC notes the dead process and lets the entry go
    for n in names:
        o = outcomes[n]
        if retries[n] >= RETRIES:
            o.status, o.error = FAILED, f"its DVC queue worker was lost {retries[n] + 1} times"
            runs.finish(o.combo, FAILED, {}, lock=None, error=o.error)
            say(f"{n} ({o.combo.label}): failed: {o.error}")
            continue
        retries[n] += 1
        runs.abandon(o.combo)
        queue.enqueue(n, by_name[n].overrides, stages.targets, env, cwd)
        say(f"{n} ({o.combo.label}): its DVC queue worker is gone: queued again (retry {retries[n]} of {RETRIES})")


def _wait(todo: Sequence[Combination], outcomes: dict[str, Outcome], runs: SweepRuns, stages: Plan,
          env: dict[str, str], cwd: Path, poll_s: float, say: Callable[[str], None], jobs: int) -> None:
    """Until every queued combination succeeded or failed: record each end as it happens; experiments whose
    workers were killed are queued again."""
    start, left = time.monotonic(), {c.name for c in todo}
    by_name, retries, lost_since = {c.name: c for c in todo}, dict.fromkeys(left, 0), {}
    idle_since: float | None = None
    while left:
        time.sleep(poll_s)
        current = queue.states(cwd)
        now = time.monotonic()
        lost_since = {n: lost_since.get(n, now) for n in left if current.get(n) == queue.LOST}
        lost = [n for n, t in lost_since.items() if now - t > LOST_AFTER_S]  # not a success being collected
        lost += [n for n in left if current.get(n) == queue.ORPHANED]
        if lost:  # their worker was killed: queue them again, start new workers
            _requeue(lost, by_name, retries, outcomes, runs, stages, env, cwd, say)
            left -= {n for n in lost if outcomes[n].status == FAILED}
            if any(outcomes[n].status == "pending" for n in lost):
                queue.start_workers(min(jobs, len(left)), env, cwd)
            continue
        if any(current.get(n) == queue.QUEUED for n in left) and queue.RUNNING not in current.values():
            idle_since = idle_since or now  # queued, and nothing runs: no worker is left to take them
            if now - idle_since > LOST_AFTER_S:
                say("no DVC queue worker is running the queued combinations: starting new workers")
                queue.start_workers(min(jobs, len(left)), env, cwd)
                idle_since = None
        else:
            idle_since = None
        for name in sorted(left):
            if current.get(name) not in (queue.SUCCESS, queue.FAILED):
                continue
            state = current[name]
            left.discard(name)
            o = outcomes[name]
            o.seconds = time.monotonic() - start
            commit = queue.experiments(cwd).get(name) if state == queue.SUCCESS else None
            if commit:
                o.status, o.commit, o.metrics = SUCCESS, commit, _metrics(commit, stages.models, cwd)
            else:
                o.status, o.error = FAILED, queue.log_tail(name, env, cwd) or "no log"
            o.error = error_line(o.error) if o.error else ""
            runs.finish(o.combo, o.status, o.metrics, lock=queue.read_file(commit, "dvc.lock", cwd) if commit else None,
                        error=o.error)
            n = sum(1 for x in outcomes.values() if x.status != "pending")
            say(f"[{n}/{len(outcomes)}] {name} ({o.combo.label}): {o.status}, {o.seconds:.0f} s after the queue started"
                + ("" if o.status == SUCCESS else f"\n    {o.error}"))
        if left and not any(current.get(n) in queue.WAITING for n in left):
            missing = sorted(n for n in left if n not in current)
            if missing:  # the queue lost them (its workers were killed): report, never wait forever
                for n in missing:
                    outcomes[n].status, outcomes[n].error = FAILED, "the DVC queue lost this experiment"
                    runs.finish(outcomes[n].combo, FAILED, {}, lock=None, error=outcomes[n].error)
                    left.discard(n)


def _write(folder: Path, frame: pd.DataFrame, results: Sequence[Outcome], stages: Plan, test_set: str,
           s: SweepSettings, params: Any) -> list[Path]:
    """sweep.md, sweep.csv and one PD-plane figure per compared model."""
    from srgan_lib.io.images import atomic_path
    from srgan_lib.orchestration.sweep.figures import pd_plane

    md = folder / "sweep.md"
    with atomic_path(md) as tmp:
        tmp.write_text(f"# Sweep {folder.name}\n\n`srgan sweep {' '.join(s.grid)}` on {test_set}\n\n"
                       + frame.to_markdown(index=False, disable_numparse=True) + "\n", encoding="utf-8")
    csv = folder / "sweep.csv"
    with atomic_path(csv) as tmp:
        frame.to_csv(tmp, index=False)
    paths = [md, csv]
    for m in stages.models:
        ok = [o for o in results if o.status == SUCCESS]
        axis = "pi" if ok and all(not math.isnan(_value(o, m, test_set, "pi")) for o in ok) else "niqe"
        ok = [o for o in ok if not math.isnan(_value(o, m, test_set, "rmse_y"))
              and not math.isnan(_value(o, m, test_set, axis))]
        if not ok:
            continue
        paths.append(pd_plane(folder / f"pd_plane_{m}.png", [", ".join(map(str, o.combo.values.values())) for o in ok],
                              [_value(o, m, test_set, "rmse_y") for o in ok],
                              [_value(o, m, test_set, axis) for o in ok], axis=axis,
                              title=f"sweep {folder.name}: {m} on {test_set}, {len(ok)} combinations",
                              keys=list(ok[0].combo.values)))
    return paths


def _gate(result: SweepResult, params: Any, test_set: str, metric: str, uri: str | None, cwd: Path) -> list[str]:
    """The best combination of each registered model through the register stage's gate (champion or challenger)."""
    from srgan_lib.registry.gate import GateRule
    from srgan_lib.registry.stage import RegisterSettings, run_register

    lines = []
    for m in result.plan.models:
        if m not in params.register.models:
            continue
        winner = best(result.outcomes, m, test_set, metric)
        if winner is None or winner.commit is None:
            lines.append(f"{m}: no combination has {metric} on {test_set}: nothing registered")
            continue
        cached = queue.cached_output(winner.commit, f"{params.train.models}/{m}.pth", cwd)
        if cached is None:
            lines.append(f"{m}: the generator of {winner.combo.name} is not in DVC's cache: nothing registered")
            continue
        model = result.folder / f"{m}.pth"
        shutil.copyfile(cached, model)
        write_json(result.folder / f"{m}.metrics.json", {m: winner.metrics[m]})
        rule = GateRule(params.register.set, params.register.psnr_floor, params.register.min_gain)
        with _parent_env(winner.run_id):
            reg = run_register(RegisterSettings(
                model=str(model), name=f"{params.register.prefix}{m}",
                metrics=str(result.folder / f"{m}.metrics.json"),
                baseline=str(cwd / "metrics" / f"{params.register.baseline}.json"), rule=rule, stage=None,
                out=str(result.folder / f"{m}.registry.json"), tracking_uri=uri, experiment=params.tracking.experiment))
        d = reg.decision
        verdict = (f"version {reg.version} promoted to @{reg.alias}" if reg.alias == "champion" and reg.new else
                   f"version {reg.version}, not promoted (@{reg.alias})" if reg.new else
                   f"these weights are already version {reg.version} (@{reg.alias}): nothing new registered")
        lines.append(f"{m}: best by {metric} is {winner.combo.name} ({winner.combo.label}, {metric} "
                     f"{_value(winner, m, test_set, metric):.4g}); {params.register.prefix}{m} {verdict}"
                     + (f": {d.reason}" if d else ""))
    return lines
