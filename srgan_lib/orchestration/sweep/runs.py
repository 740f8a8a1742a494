"""A sweep in MLflow: one parent run (``sweep/<id>``) and one child run per combination (its values as params, its
metrics, the DVC experiment's name and dvc.lock hash as tags), found again by a second call of the same sweep."""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Mapping
from typing import Any

from srgan_lib import telemetry_off, tracking
from srgan_lib.orchestration.sweep.grid import Combination

SWEEP_TAG = "srgan.sweep"


class SweepRuns:
    """The parent and child runs of one sweep in the store ``uri`` (no-ops when tracking is off)."""

    def __init__(self, uri: str | None, experiment: str, ident: str, description: str) -> None:
        self.uri, self.ident = uri, ident
        self.parent: str | None = None
        self.children: dict[str, str] = {}
        if uri is None:
            return
        telemetry_off()
        from mlflow.tracking import MlflowClient

        self.client = MlflowClient(tracking_uri=uri)
        self.exp_id = tracking.ensure_experiment(self.client, experiment, uri)
        found = self.client.search_runs([self.exp_id], f"tags.`{SWEEP_TAG}` = '{ident}' and tags.`srgan.kind` = "
                                        "'sweep'", order_by=["attributes.start_time DESC"], max_results=1)
        if found:
            self.parent = found[0].info.run_id
            self.client.update_run(self.parent, status="RUNNING")
        else:
            self.parent = self.client.create_run(self.exp_id, run_name=f"sweep/{ident}", tags={
                SWEEP_TAG: ident, "srgan.kind": "sweep", "git_commit": tracking.git_commit(),
                "mlflow.note.content": description}).info.run_id

    def child(self, combo: Combination) -> str | None:
        """The child run of ``combo`` (created the first time, with its values as params)."""
        if self.uri is None or self.parent is None:
            return None
        found = self.client.search_runs([self.exp_id], f"tags.`{tracking.EXP_TAG}` = '{combo.name}'",
                                        max_results=1)
        if found:
            run_id = found[0].info.run_id
            self.client.update_run(run_id, status="RUNNING")
        else:
            run_id = self.client.create_run(self.exp_id, run_name=combo.name, tags={
                "mlflow.parentRunId": self.parent, tracking.EXP_TAG: combo.name, SWEEP_TAG: self.ident,
                "srgan.kind": "sweep-experiment", "srgan.overrides": combo.label}).info.run_id
            self.client.log_batch(run_id, params=_params({k: str(v) for k, v in combo.values.items()}))
        self.children[combo.name] = run_id
        return run_id

    def abandon(self, combo: Combination) -> None:
        """The stage runs a killed attempt of ``combo`` left open under its child run end KILLED (it is re-run)."""
        run_id = self.children.get(combo.name)
        if run_id is None:
            return
        for r in self.client.search_runs([self.exp_id], f"tags.`mlflow.parentRunId` = '{run_id}' and "
                                         "attributes.status = 'RUNNING'"):
            self.client.set_terminated(r.info.run_id, "KILLED")

    def finish(self, combo: Combination, status: str, metrics: Mapping[str, Mapping[str, Mapping[str, float]]],
               *, lock: str | None, error: str = "") -> None:
        """End a child run: ``<model>/<set>/<metric>`` metrics, the experiment's dvc.lock hash, the error."""
        run_id = self.children.get(combo.name)
        if run_id is None:
            return
        from mlflow.entities import Metric

        values = {f"{m}/{s}/{k}": v for m, sets in metrics.items() for s, r in sets.items() for k, v in r.items()
                  if isinstance(v, (int, float)) and not (isinstance(v, float) and math.isnan(v))}
        self.client.log_batch(run_id, metrics=[Metric(k, float(v), 0, 0) for k, v in values.items()])
        tags = {"dvc_exp_name": combo.name, "srgan.status": status}
        if lock is not None:
            tags["dvc_lock_sha256"] = hashlib.sha256(lock.encode()).hexdigest()[:16]
        if error:
            tags["srgan.error"] = error[-4000:]
        for k, v in tags.items():
            self.client.set_tag(run_id, k, v)
        self.client.set_terminated(run_id, {"success": "FINISHED", "failed": "FAILED"}.get(status, "KILLED"))

    def end(self, status: str, artifacts: Iterable[str] = ()) -> None:
        if self.uri is None or self.parent is None:
            return
        for path in artifacts:
            self.client.log_artifact(self.parent, path)
        self.client.set_terminated(self.parent, status)

    def link(self) -> str | None:
        """Where the MLflow UI (``make mlflow-ui``) shows the sweep: its children side by side (Compare)."""
        if self.parent is None:
            return None
        return f"http://127.0.0.1:5000/#/experiments/{self.exp_id}/runs/{self.parent}"


def _params(values: Mapping[str, Any]) -> list[Any]:
    from mlflow.entities import Param

    return [Param(k, str(v)[:6000]) for k, v in values.items()]
