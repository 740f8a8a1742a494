"""The entry point of the generator's MLflow Model ("models from code": MLflow runs this file when it loads the
model, instead of unpickling an object, so loading a model never deserialises code)."""

import mlflow.models

from srgan_lib.registry.mlflow_model import SuperResolution

mlflow.models.set_model(SuperResolution())
