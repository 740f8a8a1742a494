"""The model registry: the promotion gate, the MLflow Model of a generator, ``models:/`` resolution, and the
register stage."""
