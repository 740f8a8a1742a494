"""``models:/`` references resolved to a local checkpoint file: the registry's aliases and versions, logged models,
and this project's MLflow Models (their ``checkpoint`` artifact). Used by ``srgan upscale``, evaluate and export."""

from __future__ import annotations

import os
from pathlib import Path

from srgan_lib import telemetry_off


def resolve_model_path(model: str, tracking_uri: str | None = None) -> str:
    """A checkpoint path for ``model``: a file, or an MLflow URI resolved and downloaded: ``models:/NAME@ALIAS``,
    ``models:/NAME/VERSION`` (the registry) or ``models:/m-<id>`` (a logged model)."""
    if not model.startswith("models:/"):
        if not Path(model).is_file():
            raise FileNotFoundError(f"model '{model}' not found: give a checkpoint (.pth, .safetensors) or "
                                    "models:/NAME@ALIAS")
        return model
    telemetry_off()
    from mlflow.artifacts import download_artifacts
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    from srgan_lib.tracking import resolve_uri

    uri = resolve_uri(tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or "sqlite:///mlflow/mlflow.db")
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    ref = model.removeprefix("models:/")
    try:
        if "@" in ref:
            name, alias = ref.split("@", 1)
            source = client.get_model_version_by_alias(name, alias).source
        elif "/" in ref:
            name, number = ref.rsplit("/", 1)
            source = client.get_model_version(name, number).source
        else:  # models:/m-<id>: a logged model that is not registered (an interpolation alpha)
            source = f"models:/{ref}"
        if source.startswith("models:/m-"):  # an MLflow 3 logged model: its artifacts, from this store
            source = client.get_logged_model(source.removeprefix("models:/")).artifact_location
        local = Path(download_artifacts(artifact_uri=source, tracking_uri=uri))
    except MlflowException as exc:
        raise FileNotFoundError(f"cannot resolve {model} in the registry at {uri}: {exc.message}") from None
    if local.is_file():
        return str(local)
    # an MLflow Model of this project (srgan_lib.registry.mlflow_model): its checkpoint
    if (local / "MLmodel").is_file():
        import yaml

        spec = yaml.safe_load((local / "MLmodel").read_text(encoding="utf-8")) or {}
        artifact = spec.get("flavors", {}).get("python_function", {}).get("artifacts", {}).get("checkpoint", {})
        if artifact.get("path") and (local / artifact["path"]).is_file():
            return str(local / artifact["path"])
    found = sorted(p for suffix in ("pth", "pt", "safetensors") for p in local.rglob(f"*.{suffix}"))
    if not found:
        raise FileNotFoundError(f"{model} ({source}) holds no .pth/.pt/.safetensors checkpoint")
    return str(found[0])
