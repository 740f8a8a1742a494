# Two commands a new user needs:  `make run` (set up + run the embedded-default pipeline)  and  `make test`.
# The environment lives in .venv and is reinstalled only when requirements.lock or pyproject.toml change.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat requirements.lock pyproject.toml | sha256sum | cut -c1-16)

# Quiet, offline-friendly tools.
export DO_NOT_TRACK := true
export MLFLOW_DISABLE_TELEMETRY := true
export PREFECT_SERVER_ANALYTICS_ENABLED := false
export DVC_NO_ANALYTICS := 1

.PHONY: venv run test lint clean-venv prefect-up prefect-down mlflow-ui

venv: $(STAMP)

$(STAMP): requirements.lock pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@echo "installing pinned requirements into $(VENV) (a few minutes the first time)..."
	@# the lock is complete (every package pinned, setuptools included): no resolver run (2:06 instead of 2:36 on 2
	@# cores); `pip check` then proves nothing is missing or mismatched
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-compile --no-deps -r requirements.lock
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-compile --no-deps --no-build-isolation -e .
	$(BIN)/python -m pip check --disable-pip-version-check
	@# byte-compile on every core (pip does it on one: 1:45 of a 3:40 install on 2 cores), leaving out the packages'
	@# own test suites and the tools the pipeline never imports (40 s instead of 63 s); compileall exits 1 for the
	@# few test-data files in site-packages that are not Python 3, as pip ignores them too
	@$(BIN)/python -m compileall -q -j 0 -x '/tests?/|/site-packages/(pip|setuptools|sklearn|networkx)/' \
		$(VENV)/lib > /dev/null || true
	@rm -f $(VENV)/.installed-*
	@touch $@

# `srgan repro`: validate params.yaml, open an MLflow parent run, `dvc repro`, print the evaluation table.
run: venv
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/srgan repro

# Local Prefect server (127.0.0.1:4200, SQLite in .prefect/), the deployments of prefect.yaml and a process worker.
prefect-up: venv
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m pipelines.services up

prefect-down:
	$(BIN)/python -m pipelines.services down

# The MLflow UI on the project's tracking store (127.0.0.1:5000, one worker); Ctrl-C stops it.
mlflow-ui: venv
	$(BIN)/python -m pipelines.services mlflow-ui

# Two pytest-xdist workers, a whole file each (the pipeline's tests share one repository in file order); most tests
# spend their time starting processes and waiting on servers, so two workers fill two cores. TEST_WORKERS=0: serial.
TEST_WORKERS ?= 2
test: venv
	$(BIN)/ruff check .
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder

lint: venv
	$(BIN)/ruff check .

clean-venv:
	rm -rf $(VENV)
