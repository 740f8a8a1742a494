"""Prefect 3 flows ``train-srgan``, ``train-esrgan`` and ``evaluate``: each task reproduces one DVC stage, so DVC's
caching and ``dvc.lock`` stay the single record of what ran, and the stage commands are the same ``srgan`` commands
``dvc repro`` runs. Deployments are declared in ``prefect.yaml``; ``make prefect-up`` serves them locally.

Flow parameter ``overrides`` (``{"esrgan.gan.weight": 0.01}``) changes ``params.yaml`` values for one run without
editing the file: the run becomes ``dvc exp run --temp -S ...`` (recorded by DVC: ``dvc exp show``) and the values
are logged as ``override.*`` params of the flow's parent MLflow run.
"""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.runtime import flow_run

from srgan_lib import tracking
from srgan_lib.metrics import METRICS, SUMMARY, format_value
from srgan_lib.pipeline import dvc_command, override_strings, pipeline_run, run_dvc, stage_env, stage_names
from srgan_lib.summary import eval_table

DATA_STAGES = ("embedded", "lists", "degrade", "store")
TRAIN_SRGAN = (*DATA_STAGES, "train_srresnet", "train_srgan", "evaluate_models@srresnet", "evaluate_models@srgan",
               "register@srresnet", "register@srgan")
TRAIN_ESRGAN = (*DATA_STAGES, "train_rrdbnet", "train_esrgan", "interpolate", "evaluate_models@rrdbnet",
                "evaluate_models@esrgan", "register@rrdbnet", "register@esrgan")
RETRIES, RETRY_DELAY_S = 2, 10


@task(name="dvc-repro", task_run_name="dvc repro {stage}", retries=RETRIES, retry_delay_seconds=RETRY_DELAY_S)
def reproduce(stage: str, parent_run_id: str | None, uri: str | None) -> None:
    """``dvc repro STAGE``. A retry after a crash resumes: DVC skips what completed, training continues from its
    last checkpoint (``--auto-resume`` in dvc.yaml)."""
    logger = get_run_logger()
    run_dvc(dvc_command([stage]), stage_env(parent_run_id, uri), on_line=logger.info)


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


def _run(title: str, stages: list[str], overrides: dict[str, Any] | None) -> str:
    """Shared body of the flows: parent MLflow run (after validating params.yaml + overrides: a bad value fails the
    flow before any stage, without retries), one task per stage (or one experiment), report."""
    sets = override_strings(overrides)
    run_name = f"{flow_run.get_flow_name() or title}/{flow_run.get_name() or 'local'}"
    with pipeline_run(run_name, sets, tags={"srgan.prefect_flow_run_id": str(flow_run.get_id() or "none")}) as run:
        if sets:
            experiment(stages, sets, f"{run_name}-{str(flow_run.get_id() or '')[:8]}", run.run_id, run.uri)
        else:
            for stage in stages:
                reproduce(stage, run.run_id, run.uri)
    return report(run.uri, run.run_id, f"{title} ({len(stages)} stages" + (f", {' '.join(sets)})" if sets else ")"))


@flow(name="train-srgan", log_prints=True)
def train_srgan(overrides: dict[str, Any] | None = None) -> str:
    """Data stages, SRResNet pretraining (MSE), SRGAN (VGG54 + adversarial), evaluation and registration of both
    (the gate moves ``champion``)."""
    return _run("train-srgan", list(TRAIN_SRGAN), overrides)


@flow(name="train-esrgan", log_prints=True)
def train_esrgan(overrides: dict[str, Any] | None = None) -> str:
    """Data stages, RRDBNet pretraining (L1), ESRGAN (RaGAN + VGG54 before activation), network interpolation,
    evaluation and registration of both (the gate moves ``champion``)."""
    return _run("train-esrgan", list(TRAIN_ESRGAN), overrides)


@flow(name="evaluate", log_prints=True)
def evaluate(overrides: dict[str, Any] | None = None) -> str:
    """Every evaluation stage of dvc.yaml (baselines and trained generators; DVC trains what is missing)."""
    stages = [s for s in stage_names() if s.startswith("evaluate_") or s == "report"]
    return _run("evaluate", stages, overrides)
