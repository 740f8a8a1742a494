"""Orchestration entry points (Prefect flows and deployments) that run the library's stages.

The DVC DAG (`dvc.yaml`) is the reproducible record today; the Prefect flows `train-srgan`, `train-esrgan` and
`evaluate` arrive with the pipelines issue and call the same `srgan_lib` functions.
"""
