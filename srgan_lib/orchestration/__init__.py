"""Driving the pipeline: DVC (repro, stage names, the lock) and sweeps over DVC's queue. The Prefect flows are in
``pipelines/``."""
