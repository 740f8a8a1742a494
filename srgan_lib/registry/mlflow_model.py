"""A generator as an MLflow Model (``pyfunc`` flavour): what ``mlflow models serve``, ``mlflow.pyfunc.load_model`` and
the registry work with.

The model directory holds the checkpoint in BasicSR layout (``artifacts/generator.pth``: ``params``/``params_ema``),
the library modules it runs (``code/srgan_lib``: the import closure of ``mlflow_model_code.py``, so it loads
where srgan is not installed) and pinned requirements. Its
predict runs :class:`srgan_lib.inference.upscaler.Upscaler` (tiled, precision ``auto``): uint8 H x W x 3 in (or N x
H x W x 3),
uint8 4H x 4W x 3 out, byte for byte what ``srgan upscale`` writes for the same image.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path
from typing import Any

import mlflow.pyfunc
import numpy as np

import srgan_lib

ARTIFACT = "checkpoint"  # the key of the checkpoint in the model's artifacts
MODEL_NAME = "generator"  # the name of the logged model inside its run
# what a fresh environment needs to load and run the model (pinned to the versions that logged it)
REQUIREMENTS = ("torch", "numpy", "pillow", "tqdm", "pyyaml")
# tile -1: chosen by `srgan upscale`'s rule, 0: whole image; tile_pad -1: each tile side's measured pad
PARAMS = {"tile": -1, "tile_pad": -1, "precision": "auto"}


def requirements() -> list[str]:
    """``name==version`` of the packages the model's code imports, as installed here."""
    pins = []
    for name in REQUIREMENTS:
        try:
            pins.append(f"{name}=={metadata.version(name)}")
        except metadata.PackageNotFoundError:
            pins.append(name)
    return pins


def signature() -> Any:
    """uint8 images in and out (the batch axis optional), with the upscaler's settings as inference params."""
    from mlflow.models import ModelSignature
    from mlflow.types.schema import ParamSchema, ParamSpec, Schema, TensorSpec

    return ModelSignature(
        inputs=Schema([TensorSpec(np.dtype(np.uint8), (-1, -1, 3))]),
        outputs=Schema([TensorSpec(np.dtype(np.uint8), (-1, -1, 3))]),
        params=ParamSchema([ParamSpec("tile", "long", PARAMS["tile"]),
                            ParamSpec("tile_pad", "long", PARAMS["tile_pad"]),
                            ParamSpec("precision", "string", PARAMS["precision"])]),
    )


class SuperResolution(mlflow.pyfunc.PythonModel):
    """x4 super-resolution of uint8 RGB images with the checkpoint in the model's artifacts."""

    # the model's signature (see :func:`signature`) validates the input; MLflow's type-hint validation is not used
    _skip_type_hint_validation = True

    def load_context(self, context):
        from srgan_lib.models import load_generator

        self.generator = load_generator(context.artifacts[ARTIFACT])
        self.upscalers: dict[tuple[Any, ...], Any] = {}

    def _upscaler(self, tile: int, tile_pad: int, precision: str) -> Any:
        from srgan_lib.inference.upscaler import Upscaler

        key = (tile, tile_pad, precision)
        if key not in self.upscalers:
            self.upscalers[key] = Upscaler(self.generator, device=os.environ.get("SRGAN_DEVICE", "auto"),
                                           tile=None if tile < 0 else tile,
                                           tile_pad=None if tile_pad < 0 else tile_pad, precision=precision)
        return self.upscalers[key]

    def predict(self, context, model_input, params=None):
        settings = {**PARAMS, **(params or {})}
        upscaler = self._upscaler(int(settings["tile"]), int(settings["tile_pad"]), str(settings["precision"]))
        images = np.asarray(model_input)
        if images.dtype != np.uint8:
            raise ValueError(f"expected uint8 pixels, got {images.dtype}")
        if images.ndim == 3:
            return upscaler.upscale_array(np.ascontiguousarray(images), progress=False)
        if images.ndim == 4:
            return np.stack([upscaler.upscale_array(np.ascontiguousarray(im), progress=False) for im in images])
        raise ValueError(f"expected an H x W x 3 (or N x H x W x 3) uint8 array, got shape {images.shape}")


def log_generator(checkpoint: str | Path, *, metadata_: dict[str, Any] | None = None,
                  tags: dict[str, str] | None = None) -> Any:
    """Log ``checkpoint`` as a pyfunc MLflow Model in the active run (a logged model linked to it); its ModelInfo.
    MLflow loads the logged model and runs the input example once: a model that cannot load fails here."""
    from srgan_lib.orchestration.imports import model_code_files

    library = Path(srgan_lib.__file__).parent
    with tempfile.TemporaryDirectory(prefix="srgan-model-code-") as tmp:
        code = Path(tmp) / "srgan_lib"  # the model's code: its entry point's import closure, not the whole library
        for f in model_code_files():
            (code / f.relative_to(library)).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(f, code / f.relative_to(library))
        return mlflow.pyfunc.log_model(
            name=MODEL_NAME,
            python_model=str(Path(__file__).with_name("mlflow_model_code.py")),  # models from code: nothing pickled
            artifacts={ARTIFACT: str(checkpoint)},
            code_paths=[str(code)],
            signature=signature(),
            input_example=(np.zeros((8, 8, 3), np.uint8), {"tile": 0}),
            pip_requirements=requirements(),
            metadata=metadata_,
            tags=tags,
        )


@contextlib.contextmanager
def fluent_uri(uri: str) -> Iterator[None]:
    """MLflow's process-wide tracking and registry URI set to ``uri`` for ``log_model`` (which has no client
    argument), then put back exactly as they were: the globals and ``MLFLOW_TRACKING_URI``/``MLFLOW_REGISTRY_URI``,
    which ``mlflow.set_tracking_uri`` also writes."""
    import mlflow
    from mlflow.tracking._model_registry import utils as registry_utils
    from mlflow.tracking._tracking_service import utils as tracking_utils

    env = {k: os.environ.get(k) for k in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")}
    saved = tracking_utils._tracking_uri, registry_utils._registry_uri
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    try:
        yield
    finally:
        tracking_utils._tracking_uri, registry_utils._registry_uri = saved
        for key, value in env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def log_generator_in_run(uri: str, run_id: str, checkpoint: str | Path, *, metadata_: dict[str, Any] | None = None,
                         tags: dict[str, str] | None = None) -> Any:
    """:func:`log_generator` into the existing run ``run_id`` of the store ``uri`` (which keeps its status): e.g. an
    evaluation run of an interpolated network, which no training run owns."""
    from mlflow.tracking import MlflowClient

    status = MlflowClient(tracking_uri=uri).get_run(run_id).info.status
    with fluent_uri(uri), mlflow.start_run(run_id=run_id):
        info = log_generator(checkpoint, metadata_=metadata_, tags=tags)
    MlflowClient(tracking_uri=uri).set_terminated(run_id, status)
    return info
