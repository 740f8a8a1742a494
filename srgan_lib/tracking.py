"""MLflow tracking: one run per stage, nested under a pipeline's parent run, in a local SQLite store by default.

The tracking URI comes from ``MLFLOW_TRACKING_URI`` or ``params.yaml`` (``tracking.uri``); ``none`` turns tracking
off. A ``sqlite:///path/mlflow.db`` store keeps its artifacts beside the database (``path/artifacts``), never in a bare
``mlruns/`` folder. A pipeline (``make run``, a Prefect flow) exports ``SRGAN_PARENT_RUN_ID`` and every stage run
becomes its child. Everything goes through :class:`mlflow.tracking.MlflowClient`: no global "active run" state, so a
resumed training run reopens its own run by id.
"""

from __future__ import annotations

import hashlib
import logging
import os
import subprocess
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from srgan_lib import telemetry_off

log = logging.getLogger(__name__)
PARENT_ENV = "SRGAN_PARENT_RUN_ID"
EXP_TAG = "srgan.dvc_exp"  # a sweep's child run: the DVC experiment it stands for (srgan_lib.orchestration.sweep)
_MAX_PARAM = 6000
# MLflow 3's UI opens an experiment by its kind: this one is model training (runs, metrics), not GenAI (traces)
EXPERIMENT_TAGS = {"mlflow.experimentKind": "custom_model_development",
                   "mlflow.note.content": "srgan: training, evaluation and report runs of the x4 super-resolution "
                   "pipeline (nested under one run per `make run` / Prefect flow run). Compare models on "
                   "Set5/psnr_y, Set14/niqe, ...; the registered generators are srgan-<stage> (alias champion)."}


def resolve_uri(configured: str) -> str | None:
    """The tracking URI to use (env first), with a relative SQLite path made absolute and its folder created."""
    uri = os.environ.get("MLFLOW_TRACKING_URI") or configured
    if uri.strip().lower() == "none":
        return None
    if uri.startswith("sqlite:///"):
        db = Path(uri.removeprefix("sqlite:///"))
        # relative to the project: DVC_ROOT is set by DVC for every stage, also in a queued experiment's temporary copy
        db = db if db.is_absolute() else Path(os.environ.get("DVC_ROOT") or Path.cwd()) / db
        db.parent.mkdir(parents=True, exist_ok=True)
        return f"sqlite:///{db}"
    return uri


def artifact_root(uri: str) -> str | None:
    """Artifact folder for experiments created in a SQLite store: ``<db folder>/artifacts`` as a file URI."""
    if uri.startswith("sqlite:///"):
        return (Path(uri.removeprefix("sqlite:///")).parent / "artifacts").resolve().as_uri()
    return None


def flatten(params: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """``{'esrgan': {'gan': {'weight': 5e-3}}}`` -> ``{'esrgan.gan.weight': '0.005'}`` (MLflow params are strings)."""
    out: dict[str, str] = {}
    for key, value in params.items():
        name = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, Mapping) and value:
            out.update(flatten(value, name))
        else:
            out[name] = str(value)[:_MAX_PARAM]
    return out


def git_commit(cwd: str | Path = ".") -> str:
    """The checked-out commit (``+dirty`` when the tree has changes), or ``unknown`` outside a git repository."""
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, check=True)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=cwd,
                               capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return sha.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


def _dvc_lock_stages(lock_file: str | Path) -> dict[str, Any] | None:
    """The ``stages`` mapping of ``dvc.lock`` ({} when there is no file), or None when it cannot be parsed."""
    import yaml

    path = Path(lock_file)
    if not path.is_file():
        return {}
    try:
        return (yaml.safe_load(path.read_text(encoding="utf-8")) or {}).get("stages", {})
    except yaml.YAMLError:
        return None


def dvc_lock_hash(stage: str, lock_file: str | Path = "dvc.lock") -> str:
    """SHA-256 of a stage's entry in ``dvc.lock`` (its recorded deps, params and outs), or ``none``."""
    import yaml

    stages = _dvc_lock_stages(lock_file)
    if stages is None:
        return "unreadable"
    entry = stages.get(stage)
    if entry is None:
        return "none"
    return hashlib.sha256(yaml.safe_dump(entry, sort_keys=True).encode()).hexdigest()[:16]


def dvc_lock_stage_of(output: str | Path, lock_file: str | Path = "dvc.lock") -> str | None:
    """The ``dvc.lock`` stage that wrote ``output`` (a path relative to the lock file's folder, as dvc.yaml names
    outputs): ``models/esrgan.pth`` -> ``train_gan@esrgan``. None when no recorded stage lists it."""
    want = Path(output).as_posix()
    for name, entry in (_dvc_lock_stages(lock_file) or {}).items():
        if any(Path(o.get("path", "")).as_posix() == want for o in (entry or {}).get("outs", [])):
            return name
    return None


def ensure_experiment(client: Any, name: str, uri: str) -> str:
    """The id of experiment ``name``, created as a model-training experiment (artifacts beside a SQLite store) when
    missing; an existing one without a kind gets it, so the UI opens on its runs."""
    exp = client.get_experiment_by_name(name)
    if exp is None:
        return client.create_experiment(name, artifact_root(uri), tags=EXPERIMENT_TAGS)
    for key, value in EXPERIMENT_TAGS.items():
        if key not in exp.tags:
            client.set_experiment_tag(exp.experiment_id, key, value)
    return exp.experiment_id


def dataset_digest(path: str | Path) -> str:
    """A short content digest of a dataset (what MLflow shows beside its name): a list file's bytes, or a folder's
    file names and sizes."""
    p = Path(path)
    if p.is_dir():
        text = "\n".join(f"{f.relative_to(p)}:{f.stat().st_size}" for f in sorted(p.rglob("*")) if f.is_file())
        return hashlib.sha256(text.encode()).hexdigest()[:10]
    return hashlib.sha256(p.read_bytes()).hexdigest()[:10]


def experiment_run(client: Any, exp_id: str) -> str | None:
    """In a DVC experiment of a sweep (DVC's queue sets ``DVC_EXP_NAME`` for its stages), the sweep's child run of
    that experiment, which the stage's run nests under; None elsewhere."""
    name = os.environ.get("DVC_EXP_NAME")
    if not name:
        return None
    runs = client.search_runs([exp_id], f"tags.`{EXP_TAG}` = '{name}'", order_by=["attributes.start_time DESC"],
                              max_results=1)
    return runs[0].info.run_id if runs else None


class Tracker:
    """One MLflow run (a stage), or a no-op when tracking is off. Metrics are buffered and sent in batches."""

    def __init__(self, uri: str | None, experiment: str, run_name: str, *, run_id: str | None = None,
                 tags: Mapping[str, str] | None = None) -> None:
        self.uri = uri
        self.run_id: str | None = None
        self._pending: list[Any] = []
        if uri is None:
            return
        telemetry_off()
        from mlflow.tracking import MlflowClient

        self.client = MlflowClient(tracking_uri=uri)
        if run_id is not None:
            from mlflow.exceptions import MlflowException

            try:
                self.client.update_run(run_id, status="RUNNING")
                self.run_id = run_id
                return
            except MlflowException:  # the run lives in another store (moved, deleted, another tracking URI)
                log.warning("MLflow run %s is not in %s; continuing in a new run", run_id, uri)
        exp_id = ensure_experiment(self.client, experiment, uri)
        all_tags = dict(tags or {})
        parent = experiment_run(self.client, exp_id) or os.environ.get(PARENT_ENV)
        if parent:
            all_tags["mlflow.parentRunId"] = parent
        self.run_id = self.client.create_run(exp_id, tags=all_tags, run_name=run_name).info.run_id

    @property
    def active(self) -> bool:
        return self.run_id is not None

    def log_params(self, params: Mapping[str, str]) -> None:
        if not self.active:
            return
        from mlflow.entities import Param

        items = [Param(k, v) for k, v in params.items()]
        for i in range(0, len(items), 100):
            self.client.log_batch(self.run_id, params=items[i : i + 100])

    def set_tags(self, tags: Mapping[str, str]) -> None:
        if not self.active:
            return
        from mlflow.entities import RunTag

        self.client.log_batch(self.run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])

    def log_metrics(self, metrics: Mapping[str, float], step: int, flush: bool = False) -> None:
        if not self.active:
            return
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self._pending.extend(Metric(k, float(v), now, step) for k, v in metrics.items())
        if flush or len(self._pending) >= 500:
            self.flush()

    def flush(self) -> None:
        if self.active and self._pending:
            for i in range(0, len(self._pending), 1000):
                self.client.log_batch(self.run_id, metrics=self._pending[i : i + 1000])
            self._pending = []

    def log_artifacts(self, paths: Iterable[str | Path], artifact_path: str | None = None) -> None:
        if not self.active:
            return
        for p in paths:
            if Path(p).is_file():
                self.client.log_artifact(self.run_id, str(p), artifact_path)
            elif Path(p).is_dir():
                self.client.log_artifacts(self.run_id, str(p), artifact_path)

    def log_dataset(self, name: str, list_file: str | Path, context: str, images: int | None = None) -> None:
        """An MLflow dataset input (the Datasets column of the runs table): a list file of the lists stage, its
        content digest, and how it was used (``training``, ``validation``, ``evaluation``)."""
        if not self.active or not Path(list_file).exists():
            return
        import json

        from mlflow.entities import Dataset, DatasetInput, InputTag

        profile = json.dumps({"num_images": images}) if images is not None else None
        dataset = Dataset(name=name, digest=dataset_digest(list_file), source_type="local",
                          source=json.dumps({"uri": str(Path(list_file).resolve())}), profile=profile)
        self.client.log_inputs(self.run_id, [DatasetInput(dataset, [InputTag("mlflow.data.context", context)])])

    def log_image(self, image: Any, key: str, step: int) -> None:
        """An image per step (the UI's image grid and slider): validation output as training goes on."""
        if self.active:
            self.client.log_image(self.run_id, image, key=key, step=step, synchronous=True)

    def log_table(self, rows: Mapping[str, list[Any]], artifact_file: str) -> None:
        """A table artifact (``{column: values}``) the UI shows as a table: per-image results of an evaluation."""
        if self.active:
            self.client.log_table(self.run_id, dict(rows), artifact_file)

    def end(self, status: str = "FINISHED") -> None:
        """Flush and close the run (``FINISHED``, ``FAILED`` or ``KILLED``)."""
        if self.active:
            self.flush()
            self.client.set_terminated(self.run_id, status)


def start_pipeline_run(
    uri: str | None, experiment: str, name: str, tags: Mapping[str, str] | None = None, description: str = ""
) -> str | None:
    """Create a parent run for a pipeline and return its id (export it as ``SRGAN_PARENT_RUN_ID`` for the stages);
    ``description`` is the run's note in the UI."""
    saved = os.environ.pop(PARENT_ENV, None)
    try:
        note = {"mlflow.note.content": description} if description else {}
        tracker = Tracker(uri, experiment, name, tags={"srgan.kind": "pipeline", **note, **(tags or {})})
    finally:
        if saved is not None:
            os.environ[PARENT_ENV] = saved
    return tracker.run_id


def log_evaluation(uri: str | None, experiment: str, label: str, results: Mapping[str, Mapping[str, Any]], *,
                   settings: Mapping[str, Any], metrics: Iterable[str], unavailable: Mapping[str, str],
                   artifacts: Iterable[str | Path] = (), datasets: Mapping[str, str | Path] | None = None
                   ) -> str | None:
    """One MLflow run per evaluated model: ``<set>/<metric>`` means (``Set5/psnr_y``) so the UI's compare view puts
    models side by side; metrics that could not be computed are tagged ``unavailable.<metric>`` with the reason.
    Each test set is a dataset input (``datasets``: name -> list file or folder) and the per-image numbers are a
    table (``per_image.json``)."""
    metrics = list(metrics)
    tracker = Tracker(uri, experiment, f"evaluate/{label}",
                      tags={"srgan.kind": "evaluation", "srgan.model": label})
    if not tracker.active:
        return None
    try:
        tracker.log_params(flatten({"model": label, **settings, "sets": ",".join(results)}))
        tracker.set_tags({"git_commit": git_commit(), **{f"unavailable.{k}": v for k, v in unavailable.items()}})
        values = {f"{name}/{m}": r[m] for name, r in results.items() for m in metrics if m in r}
        tracker.log_metrics({k: v for k, v in values.items() if v == v}, 0)  # NaN (e.g. NIQE of a flat image): left out
        tracker.log_metrics({f"{name}/n_images": r["n_images"] for name, r in results.items()}, 0)
        for name, source in (datasets or {}).items():
            tracker.log_dataset(name, source, "evaluation", results.get(name, {}).get("n_images"))
        rows = [(name, image, values) for name, r in results.items() for image, values in r.get("images", {}).items()]
        if rows:
            table: dict[str, list[Any]] = {"set": [n for n, _, _ in rows], "image": [i for _, i, _ in rows]}
            for m in metrics:
                if any(m in v for _, _, v in rows):
                    table[m] = [v.get(m) for _, _, v in rows]
            tracker.log_table(table, "per_image.json")
        tracker.log_artifacts(artifacts)
    except BaseException:
        tracker.end("FAILED")
        raise
    tracker.end("FINISHED")
    return tracker.run_id


def child_runs(uri: str | None, parent_run_id: str | None) -> list[dict[str, Any]]:
    """The runs nested under a pipeline run, oldest first: name, kind, status, metrics (for flow summaries)."""
    if uri is None or parent_run_id is None:
        return []
    telemetry_off()
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    parent = client.get_run(parent_run_id)
    runs = client.search_runs([parent.info.experiment_id], f"tags.mlflow.parentRunId = '{parent_run_id}'",
                              order_by=["attributes.start_time ASC"], max_results=1000)
    return [{"run_id": r.info.run_id, "name": r.info.run_name, "kind": r.data.tags.get("srgan.kind", ""),
             "model": r.data.tags.get("srgan.model", ""), "status": r.info.status, "metrics": dict(r.data.metrics),
             "unavailable": {k.removeprefix("unavailable."): v for k, v in r.data.tags.items()
                             if k.startswith("unavailable.")}}
            for r in runs]
