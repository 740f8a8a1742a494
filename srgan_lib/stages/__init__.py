"""Pipeline stages as library functions taking typed settings: ``srgan`` sub-commands parse their flags into the
settings and print the returned summary; ``dvc.yaml`` runs those commands and the Prefect flows run ``dvc repro``."""
