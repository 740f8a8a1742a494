"""Prefect 3 flows ``train-srgan``, ``train-esrgan``, ``evaluate`` and ``sweep``: each task reproduces one DVC stage
(``sweep``: one DVC experiment per combination), so DVC's caching and ``dvc.lock`` stay the single record of what ran,
and the stage commands are the same ``srgan`` commands ``dvc repro`` runs. Deployments are declared in
``prefect.yaml``; ``make prefect-up`` serves them locally.

Flow parameter ``overrides`` (``{"esrgan.gan.weight": 0.01}``) changes ``params.yaml`` values for one run without
editing the file: the run becomes ``dvc exp run --temp -S ...`` (recorded by DVC: ``dvc exp show``) and the values
are logged as ``override.*`` params of the flow's parent MLflow run.

Flow parameter ``placement``: ``"local"`` (default) runs every stage as a task of this flow run, in this checkout;
``"pools"`` sends each stage as its own flow run (deployment ``dvc-stage/cpu`` or ``dvc-stage/gpu``, see
:func:`pool_of`) to the workers of the work pools ``srgan-cpu`` / ``srgan-gpu``, on whatever hosts they run; their
checkouts exchange data, run-cache and training checkpoints through the DVC remote (:mod:`pipelines.exchange`). A stage
run whose worker died (marked Crashed by the zombie automation ``make prefect-up`` creates) is submitted again, and a
training stage then resumes from its last pushed checkpoint.
"""

from __future__ import annotations

from typing import Any, Literal

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.runtime import flow_run

from pipelines import exchange
from srgan_lib import tracking
from srgan_lib.config.params import load_params
from srgan_lib.metrics import METRICS, SUMMARY, format_value
from srgan_lib.orchestration.dvc import (
    PipelineError,
    dvc_command,
    override_strings,
    pipeline_run,
    recipe_stages,
    run_dvc,
    stage_env,
    stage_names,
)
from srgan_lib.report.summary import eval_table

RETRIES, RETRY_DELAY_S = 2, 10
POLL_S = 2  # how often a parent flow checks on a stage's flow run (Prefect's default 5 s, paid once per stage)
# work pools of placement "pools" (prefect.yaml, docs/orchestration.md)
POOLS = {"cpu": "srgan-cpu", "gpu": "srgan-gpu"}
Placement = Literal["local", "pools"]


def pool_of(stage: str) -> str:
    """Where a stage runs under placement "pools": training and everything that needs the trained generators
    (interpolation, their evaluation, registration) on ``gpu``; data stages, baselines and the report on ``cpu``."""
    return "gpu" if stage.startswith(("train_", "interpolate", "evaluate_models", "evaluate_interp", "register")) \
        else "cpu"


@task(name="dvc-repro", task_run_name="dvc repro {stage}", retries=RETRIES, retry_delay_seconds=RETRY_DELAY_S)
def reproduce(stage: str, parent_run_id: str | None, uri: str | None) -> None:
    """``dvc repro STAGE`` (through the DVC remote when one is configured). A retry after a crash resumes: DVC skips
    what completed, training continues from its last checkpoint (``--auto-resume`` in dvc.yaml)."""
    logger = get_run_logger()
    exchange.reproduce(stage, stage_env(parent_run_id, uri), on_line=logger.info)


@flow(name="dvc-stage", flow_run_name="{stage}", retries=RETRIES, retry_delay_seconds=RETRY_DELAY_S, log_prints=True)
def dvc_stage(stage: str, parent_run_id: str | None = None, uri: str | None = None) -> str:
    """One stage of dvc.yaml on the worker that picked it up, in that worker's checkout: pull what it needs from
    the DVC remote, ``dvc repro STAGE``, push what it made (deployments ``dvc-stage/cpu``, ``dvc-stage/gpu``)."""
    exchange.reproduce(stage, stage_env(parent_run_id, uri), on_line=get_run_logger().info)
    return stage


def on_pool(stage: str, parent_run_id: str | None, uri: str | None, resubmits: int = RETRIES) -> None:
    """Run ``stage`` as a ``dvc-stage`` flow run on its work pool and wait for it. A run that crashed (its worker or
    host died: no heartbeats) is submitted again, ``resubmits`` times; any other end is an error naming the stage."""
    from prefect.deployments import run_deployment

    logger = get_run_logger()
    deployment = f"dvc-stage/{pool_of(stage)}"
    for attempt in range(resubmits + 1):
        run = run_deployment(deployment, parameters={"stage": stage, "parent_run_id": parent_run_id, "uri": uri},
                             timeout=None, poll_interval=POLL_S,
                             flow_run_name=stage if attempt == 0 else f"{stage} (again {attempt})")
        state = run.state
        if state is not None and state.is_completed():
            logger.info("stage %s: completed on %s (flow run %s)", stage, deployment, run.name)
            return
        name = state.name if state is not None else "unknown"
        if state is not None and state.is_crashed() and attempt < resubmits:
            logger.warning("stage %s: flow run %s %s (%s); submitting it again", stage, run.name, name,
                           state.message or "no message")
            continue
        raise PipelineError(f"stage '{stage}' ended {name} on {deployment} (flow run {run.name}): "
                            f"{(state.message if state is not None else '') or 'see its logs in the Prefect UI'}")


@task(name="dvc-exp-run", task_run_name="dvc exp run {name}", retries=RETRIES, retry_delay_seconds=RETRY_DELAY_S)
def experiment(stages: list[str], overrides: list[str], name: str, parent_run_id: str | None, uri: str | None) -> None:
    """``dvc exp run --temp -S ... STAGES``: the overridden run, in a temporary copy, recorded as a DVC experiment."""
    logger = get_run_logger()
    run_dvc(dvc_command(stages, overrides, experiment=name), stage_env(parent_run_id, uri), on_line=logger.info)


def registered_models(uri: str | None, prefix: str = "srgan-") -> list[dict[str, str]]:
    """Every alias of the registered models named ``prefix*``: name, alias, version and the gate's reason."""
    if uri is None:
        return []
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    out = []
    for model in client.search_registered_models(f"name LIKE '{prefix}%'"):
        for alias, version in sorted(model.aliases.items()):
            tags = client.get_model_version(model.name, version).tags
            gate = f"{tags.get('gate.metric', '?')} {tags.get('gate.score', '?')}: {tags.get('gate.reason', '')}"
            out.append({"name": model.name, "alias": alias, "version": str(version), "gate": gate})
    return out


@task(name="report")
def report(uri: str | None, parent_run_id: str | None, title: str) -> str:
    """A Markdown summary of the stage runs under this flow's MLflow run, as a Prefect artifact."""
    runs = tracking.child_runs(uri, parent_run_id)
    lines = [f"# {title}", "", f"MLflow parent run `{parent_run_id}` ({uri})." if parent_run_id else
             "MLflow tracking is off (tracking.uri: none).", ""]
    if not runs:
        lines.append("No stage ran: everything was up to date (`dvc repro` skipped all stages).")
        current = eval_table()
        if current:
            lines += ["", "Current results (reports/eval/):", "", "```", current, "```"]
    trained = [r for r in runs if r["kind"] == "train"]
    if trained:
        lines += ["| stage run | status | last total G loss |", "|---|---|---|"]
        lines += [f"| {r['name']} | {r['status']} | {r['metrics'].get('loss_total_g', float('nan')):.4g} |"
                  for r in trained]
        lines.append("")
    evaluated = [r for r in runs if r["kind"] == "evaluation"]
    if evaluated:
        sets = sorted({k.split("/")[0] for r in evaluated for k in r["metrics"] if "/" in k})
        head = [f"{s} {METRICS[m].label}" for s in sets for m in SUMMARY]
        lines += ["| model | " + " | ".join(head) + " |", "|---|" + "---|" * len(head)]
        for r in evaluated:
            cells = [format_value(m, r["metrics"].get(f"{s}/{m}")) for s in sets for m in SUMMARY]
            lines.append(f"| {r['model']} | " + " | ".join(cells) + " |")
        reasons = {k: v for r in evaluated for k, v in r["unavailable"].items()}
        if "pi" in reasons:
            lines += ["", f"n/a: pi - {reasons['pi']}."]
    registered = registered_models(uri)
    if registered:
        lines += ["", "| registered model | alias | version | gate |", "|---|---|---|---|"]
        lines += [f"| {r['name']} | @{r['alias']} | {r['version']} | {r['gate']} |" for r in registered]
    if any(r["kind"] == "report" for r in runs):
        lines += ["", "Report: `reports/report/report.md` (also the artifacts of the MLflow run `report`)."]
    markdown = "\n".join(lines)
    create_markdown_artifact(markdown, key="srgan-summary", description=title)
    get_run_logger().info("\n%s", markdown)
    return markdown


def _run(title: str, stages: list[str], overrides: dict[str, Any] | None, placement: Placement = "local") -> str:
    """Shared body of the flows: parent MLflow run (after validating params.yaml + overrides: a bad value fails the
    flow before any stage, without retries), one task (or, placement "pools", one flow run on its pool) per stage,
    or one experiment, and the report."""
    sets = override_strings(overrides)
    if placement not in ("local", "pools"):
        raise ValueError(f"placement must be 'local' or 'pools', not {placement!r}")
    if sets and placement == "pools":
        raise ValueError("overrides run as one `dvc exp run` in one checkout: use placement 'local' with overrides")
    run_name = f"{flow_run.get_flow_name() or title}/{flow_run.get_name() or 'local'}"
    with pipeline_run(run_name, sets, tags={"srgan.prefect_flow_run_id": str(flow_run.get_id() or "none")}) as run:
        if sets:
            experiment(stages, sets, f"{run_name}-{str(flow_run.get_id() or '')[:8]}", run.run_id, run.uri)
        elif placement == "pools":
            for stage in stages:
                on_pool(stage, run.run_id, run.uri)
        else:
            for stage in stages:
                reproduce(stage, run.run_id, run.uri)
    return report(run.uri, run.run_id, f"{title} ({len(stages)} stages" + (f", {' '.join(sets)})" if sets else ")"))


def _train(recipe: str, overrides: dict[str, Any] | None, placement: Placement) -> str:
    """A fine-tuned recipe's pipeline (:func:`srgan_lib.orchestration.dvc.recipe_stages`, from params.yaml)."""
    return _run(f"train-{recipe}", recipe_stages(load_params(folders=False), recipe), overrides, placement)


@flow(name="train", log_prints=True)
def train(recipe: str, overrides: dict[str, Any] | None = None, placement: Placement = "local") -> str:
    """Any fine-tuned recipe of params.yaml (``recipes.finetuned``): the data, its parent's and its own training,
    then the evaluation and registration of both (the gate moves ``champion``)."""
    return _train(recipe, overrides, placement)


@flow(name="train-srgan", log_prints=True)
def train_srgan(overrides: dict[str, Any] | None = None, placement: Placement = "local") -> str:
    """Data stages, SRResNet pretraining (MSE), SRGAN (VGG54 + adversarial), evaluation and registration of both
    (the gate moves ``champion``): the recipe ``srgan``."""
    return _train("srgan", overrides, placement)


@flow(name="train-esrgan", log_prints=True)
def train_esrgan(overrides: dict[str, Any] | None = None, placement: Placement = "local") -> str:
    """Data stages, RRDBNet pretraining (L1), ESRGAN (RaGAN + VGG54 before activation), network interpolation,
    evaluation and registration of both (the gate moves ``champion``): the recipe ``esrgan``."""
    return _train("esrgan", overrides, placement)


@flow(name="train-realesrgan", log_prints=True)
def train_realesrgan(overrides: dict[str, Any] | None = None, placement: Placement = "local") -> str:
    """Data stages (the real-world test sets included), RRDBNet pretraining, Real-ESRNet (L1 on real-world
    degradations), Real-ESRGAN (L1 + perceptual + vanilla GAN on the U-Net SN discriminator), evaluation and
    registration of the three (the gate judges the real-world ones on ``register.realworld_set``): the recipe
    ``realesrgan``."""
    return _train("realesrgan", overrides, placement)


@flow(name="sweep", log_prints=True)
def sweep(grid: list[str], stages: list[str] | None = None, jobs: int = 1, metric: str = "niqe",
          gate: bool = True) -> str:
    """``srgan sweep`` as a flow run (``srgan_lib.orchestration.sweep.run.run_sweep``): the grid validated, the
    upstream stages run
    once, one DVC experiment per combination on ``jobs`` DVC queue workers, each an MLflow child run; the table,
    figures and the gate's decision as the flow's Markdown artifact. A second run of the same grid continues."""
    from srgan_lib.orchestration.sweep.run import SweepSettings, run_sweep

    logger = get_run_logger()
    res = run_sweep(SweepSettings(grid=tuple(grid), stages=tuple(stages or ()), jobs=jobs, metric=metric, gate=gate),
                    say=logger.info)
    lines = [f"# sweep {res.ident}", "", res.table.to_markdown(index=False, disable_numparse=True), "",
             f"Figures and tables: `{res.folder}`. MLflow parent run `{res.parent_run_id}`"
             + (f" ({res.link})." if res.link else "."), "", *(f"- gate: {g}" for g in res.gate)]
    markdown = "\n".join(lines)
    create_markdown_artifact(markdown, key="srgan-sweep", description=f"sweep {res.ident}")
    logger.info("\n%s", markdown)
    failed = [o.combo.name for o in res.outcomes if o.status != "success"]
    if failed:
        raise PipelineError(f"sweep {res.ident}: {len(failed)} combination(s) failed ({', '.join(failed)}); "
                            "their errors are in the table above; run the flow again to retry them")
    return markdown


@flow(name="evaluate", log_prints=True)
def evaluate(overrides: dict[str, Any] | None = None, placement: Placement = "local") -> str:
    """Every evaluation stage of dvc.yaml (baselines and trained generators; DVC trains what is missing)."""
    stages = [s for s in stage_names() if s.startswith("evaluate_") or s == "report"]
    return _run("evaluate", stages, overrides, placement)
