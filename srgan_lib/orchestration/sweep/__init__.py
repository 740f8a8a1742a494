"""Sweeps: one DVC experiment per combination of a parameter grid, run by DVC's queue workers, each an MLflow child
run of one sweep run, the best promoted through the registry gate (``srgan sweep``, Prefect flow ``sweep``)."""
