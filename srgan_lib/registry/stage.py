"""The ``register`` stage: a trained generator becomes an MLflow Model (logged in its training run) and a version of
the registered model ``srgan-<name>``; the promotion gate (:mod:`srgan_lib.registry.gate`) then gives it the alias
``champion`` or ``challenger``. ``srgan register``, ``dvc.yaml`` and the Prefect flows run this.

Idempotent: weights already registered (same SHA-256) register nothing new and keep their alias.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from srgan_lib import UserError, telemetry_off, tracking
from srgan_lib.config.fields import default
from srgan_lib.config.sections import Tracking
from srgan_lib.io.images import file_sha256, write_json
from srgan_lib.models import checkpoint_meta, describe_meta
from srgan_lib.registry.gate import CHAMPION, Decision, GateRule, Kind, decide, metric_tags, metrics_from_tags

log = logging.getLogger(__name__)
WEIGHTS_TAG = "srgan.weights_sha256"


class RegisterError(UserError, ValueError):
    """The model, its evaluation or the registry cannot be used: the message names the file and what to do."""


@dataclass(frozen=True)
class RegisterSettings:
    """What to register under which name, the evaluation the gate reads, where the record goes (``srgan register``)."""

    model: str  # the generator checkpoint
    name: str  # registered model name (srgan-esrgan)
    metrics: str  # its evaluation: metrics/<name>.json ({label: {set: {metric: value}}})
    baseline: str | None = None  # the baseline's evaluation (metrics/bicubic.json): the GAN gate's PSNR floor
    kind: Literal["auto", "psnr", "gan"] = "auto"  # auto: gan when the checkpoint was trained with a GAN loss
    rule: GateRule = field(default_factory=GateRule)
    train_run: str | None = None  # runs/<stage>/run.json: the training run the model is logged in
    stage: str | None = None  # its DVC stage (train_gan@esrgan): the dvc.lock hash tag; "auto": the stage that wrote
    # the model (found in dvc.lock); None: no tag
    out: str | None = None  # JSON record of the registration (the DVC output of the stage)
    tracking_uri: str | None = None
    experiment: str = default(Tracking, "experiment")


@dataclass
class Registration:
    """One registration: the version, its alias, the gate's decision (``None`` when nothing new was registered)."""

    name: str
    version: str
    alias: str | None
    model_uri: str
    new: bool
    decision: Decision | None
    seconds: float

    def record(self) -> dict[str, Any]:
        return {"name": self.name, "version": self.version, "alias": self.alias, "model_uri": self.model_uri,
                "new": self.new, "gate": self.decision.tags() if self.decision else None}


def _read_results(path: str, what: str) -> dict[str, dict[str, float]]:
    """``{set: {metric: value}}`` of a metrics file written by ``srgan evaluate --metrics-json`` (one model)."""
    p = Path(path)
    if not p.is_file():
        raise RegisterError(f"{what} '{p}' not found: run its evaluation first (srgan evaluate --metrics-json)")
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise RegisterError(f"{what} '{p}' is not valid JSON ({exc})") from None
    if not isinstance(data, dict) or len(data) != 1 or not isinstance(next(iter(data.values())), dict):
        raise RegisterError(f"{what} '{p}' is not one model's evaluation ({{model: {{set: {{metric: value}}}}}})")
    return next(iter(data.values()))


def model_kind(meta: dict[str, Any]) -> Kind:
    """``gan`` for a generator trained with an adversarial loss (or interpolated towards one), else ``psnr``."""
    if "alpha" in meta:
        return "gan" if float(meta["alpha"]) > 0 else "psnr"
    return "gan" if meta.get("losses", {}).get("gan", "none") != "none" else "psnr"


def _training_run(record: str | None) -> str | None:
    """The MLflow run id in a training stage's run record (``runs/<stage>/run.json``); None when there is none (the
    stage's outputs came from another host or DVC's cache: the model is then logged in a run of its own)."""
    if not record or not Path(record).is_file():
        return None
    try:
        return json.loads(Path(record).read_text(encoding="utf-8")).get("mlflow_run_id")
    except json.JSONDecodeError:
        return None


def _training_stage(s: RegisterSettings) -> str | None:
    """The DVC stage whose dvc.lock entry is tagged: ``s.stage``, or with "auto" the recorded stage that wrote the
    model (dvc.lock names outputs relative to the project, the folder the stages run in)."""
    if s.stage != "auto":
        return s.stage
    model = Path(s.model)
    with contextlib.suppress(ValueError):
        model = model.resolve().relative_to(Path.cwd().resolve())
    return tracking.dvc_lock_stage_of(model)


def _model_run(client: Any, s: RegisterSettings, uri: str, stage: str | None) -> tuple[str, bool]:
    """(the run the model is logged in, whether this stage created it): the generator's training run when the store
    has it (tagged with its dvc.lock entry), else a new ``register/<name>`` run under the pipeline's parent run."""
    from mlflow.exceptions import MlflowException

    exp_id = tracking.ensure_experiment(client, s.experiment, uri)
    run_id = _training_run(s.train_run)
    if run_id is not None:
        try:
            client.get_run(run_id)
        except MlflowException:
            log.warning("training run %s of %s is not in %s: the model is logged in a new run", run_id, s.model, uri)
            run_id = None
    if run_id is not None:
        if stage:  # dvc.lock holds the training stage's entry only once that stage has finished
            client.set_tag(run_id, "dvc_lock_stage_hash", tracking.dvc_lock_hash(stage))
        return run_id, False
    tags = {"srgan.kind": "register", "srgan.model": s.name}
    if os.environ.get(tracking.PARENT_ENV):
        tags["mlflow.parentRunId"] = os.environ[tracking.PARENT_ENV]
    return client.create_run(exp_id, tags=tags, run_name=f"register/{s.name}").info.run_id, True


def _ensure_registered_model(client: Any, name: str, kind: str, meta: dict[str, Any]) -> None:
    """The registered model ``name``, created with its description on first registration."""
    from mlflow.exceptions import MlflowException

    try:
        client.get_registered_model(name)
    except MlflowException:
        client.create_registered_model(name, description=f"srgan x4 generator '{name}' ({kind} model): "
                                       f"{describe_meta(meta)}. Alias '{CHAMPION}': the version the gate "
                                       "(params.yaml register) promoted last.")


def run_register(s: RegisterSettings) -> Registration:
    """Log the model, register a version, apply the gate, write the record; see the module docstring."""
    start = time.perf_counter()
    uri = tracking.resolve_uri(s.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or "none")
    if uri is None:
        raise RegisterError("registration needs an MLflow store: set tracking.uri in params.yaml or --tracking-uri")
    if not Path(s.model).is_file():
        raise RegisterError(f"generator '{s.model}' not found: train it first (srgan train / dvc repro)")
    results = _read_results(s.metrics, "evaluation")
    meta = checkpoint_meta(s.model)
    rule = s.rule.for_model(meta)
    if rule.test_set not in results:
        key = "realworld_set" if rule is not s.rule else "set"
        raise RegisterError(f"evaluation '{s.metrics}' has no test set {rule.test_set!r} (it has "
                            f"{', '.join(results)}): set register.{key} in params.yaml to one of them")
    baseline = _read_results(s.baseline, "baseline evaluation") if s.baseline else None
    kind: Kind = model_kind(meta) if s.kind == "auto" else s.kind
    digest = file_sha256(s.model)
    stage = _training_stage(s)

    telemetry_off()
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    import mlflow
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    existing = [v for v in client.search_model_versions(f"name = '{s.name}'") if v.tags.get(WEIGHTS_TAG) == digest]
    if existing:
        v = max(existing, key=lambda v: int(v.version))
        fresh = client.get_model_version(s.name, v.version)
        reg = Registration(s.name, str(v.version), fresh.aliases[0] if fresh.aliases else None,
                           f"models:/{s.name}/{v.version}", False, None, time.perf_counter() - start)
        _write(s.out, reg)
        return reg

    run_id, owned = _model_run(client, s, uri, stage)

    from srgan_lib.registry.mlflow_model import fluent_uri, log_generator

    # the fluent URI stays set until the version exists: MLflow's SQL registry looks the logged model up through a
    # default client
    status = "FAILED"
    try:
        with fluent_uri(uri):
            with mlflow.start_run(run_id=run_id):
                info = log_generator(s.model, metadata_={"srgan": meta, "description": describe_meta(meta)},
                                     tags={"srgan.model": s.name, WEIGHTS_TAG: digest})
            _ensure_registered_model(client, s.name, kind, meta)
            champion = None
            with contextlib.suppress(MlflowException):
                champion = client.get_model_version_by_alias(s.name, CHAMPION)
            decision = decide(kind, results[rule.test_set],
                              None if champion is None else metrics_from_tags(champion.tags, rule.test_set),
                              None if baseline is None else baseline.get(rule.test_set), rule)
            version_tags = {
                WEIGHTS_TAG: digest, "srgan.kind": kind, "git_commit": tracking.git_commit(),
                "dvc_lock": tracking.dvc_lock_hash(stage) if stage else "none",
                "srgan.params": json.dumps(meta, sort_keys=True)[:5000], "srgan.description": describe_meta(meta),
                "gate.test_set": rule.test_set, **metric_tags(results), **decision.tags(),
                "gate.champion_version": champion.version if champion is not None else "none",
            }
            mv = client.create_model_version(s.name, info.model_uri, run_id=run_id, tags=version_tags,
                                             model_id=info.model_id,
                                             description=f"{decision.alias}: {decision.reason}")
            client.set_registered_model_alias(s.name, decision.alias, mv.version)
        status = "FINISHED"
    finally:
        if owned:
            client.set_terminated(run_id, status)
    reg = Registration(s.name, str(mv.version), decision.alias, f"models:/{s.name}/{mv.version}", True, decision,
                       time.perf_counter() - start)
    _write(s.out, reg)
    return reg


def _write(out: str | None, reg: Registration) -> None:
    if out:
        write_json(out, reg.record())
