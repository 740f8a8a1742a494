"""srgan: reproducible training, evaluation and serving of SRGAN / ESRGAN 4x super-resolution models."""

from __future__ import annotations

import os
from pathlib import Path

__version__ = "0.1.0"
DEFAULT_PARAMS = Path("params.yaml")  # the one parameter file every stage reads (srgan_lib.config.params validates it)


class UserError(Exception):
    """An error the user can fix (bad parameters, a missing file, a refused checkpoint): the CLI prints its message
    as one line and exits with status 2. Every module's user-facing errors derive from it."""


# Quiet, offline-friendly defaults for every tool the project drives; a user's explicit setting wins.
TELEMETRY_OFF: dict[str, str] = {
    "DO_NOT_TRACK": "true",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "DVC_NO_ANALYTICS": "1",
}


def telemetry_off() -> None:
    """Set :data:`TELEMETRY_OFF` in this process's environment where the user has not set them. Importing the
    library changes nothing; the entry points call this (the CLI) and so does the code about to import MLflow."""
    for key, value in TELEMETRY_OFF.items():
        os.environ.setdefault(key, value)
