# The README's commands. `make run`: the whole flow; `make test`: the tests.
# Both create (or reuse) .venv with Python 3.11 and install the lock (requirements.txt) first;
# the venv is brought back in line whenever the lock or pyproject.toml changes.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The platform the locks are resolved for (what the venv, CI and Binder run on).
LOCK_TARGET := --python-version 3.11 --python-platform x86_64-manylinux_2_28
# Extra arguments for `make lock`, e.g. LOCK_ARGS=--upgrade or LOCK_ARGS="--upgrade-package numpy".
LOCK_ARGS ?=
UV_COMPILE = $(BIN)/uv pip compile pyproject.toml --quiet --annotation-style line --generate-hashes \
	--custom-compile-command "make lock" $(LOCK_TARGET) $(LOCK_ARGS)

.PHONY: help setup run test test-fast zoo lab report docs schema style lock binder-check clean

# `make help` lists every target from its `## ` comment (tests/unit/test_cli.py checks that
# every target has one).
help:  ## list the targets
	@awk 'BEGIN {FS = ":[^#]*## "} /^[a-zA-Z0-9_-]+:.*## / {printf "make %-13s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

setup: $(STAMP)  ## create .venv and install the lock (every other target does this first)

# Install exactly the lock, every file checked against its sha256, then the package itself
# without dependencies (the lock has them all, setuptools included, so no build isolation and
# nothing unhashed is fetched), then the Jupyter kernel "Python (workbench)", whose spec sets
# TF_USE_LEGACY_KERAS=1.
$(STAMP): requirements.txt pyproject.toml setup.py
	@$(PYTHON) -c 'import sys; v=sys.version_info[:2]; v >= (3, 13) and print("note: the lock is tested on Python 3.11 and 3.12, this is %d.%d" % v, file=sys.stderr); sys.exit("Python 3.11 or newer needed, found %d.%d: set PYTHON=/path/to/python3.11" % v if v < (3, 11) else 0)'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet --require-hashes -r requirements.txt
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	$(BIN)/python -m pip check
	$(BIN)/python -m ipykernel install --sys-prefix --name workbench \
		--display-name "Python (workbench)" --env TF_USE_LEGACY_KERAS 1 --env TF_CPP_MIN_LOG_LEVEL 2 >/dev/null
	touch $(STAMP)

run: setup  ## execute every notebook (full profile), write reports/index.html
	$(BIN)/python -m workbench run --profile full

test: setup  ## the unit tests and every notebook in the smoke profile (what CI runs)
	$(BIN)/python -m pytest

test-fast: setup  ## only the tests that take seconds (no notebooks, nothing slow)
	$(BIN)/python -m pytest -m "not notebooks and not slow"

zoo: setup  ## every keras.applications family through assess (Keras 3, tf-keras): reports/zoo.html
	WORKBENCH_ZOO=all $(BIN)/python -m pytest tests/test_zoo.py

lab: setup  ## open JupyterLab on notebooks/ (kernel "Python (workbench)")
	$(BIN)/jupyter lab notebooks/

report: setup  ## rebuild reports/index.html from the recorded results
	$(BIN)/python -m workbench report

docs: setup  ## the executed notebooks of the last run and the report as a static site
	$(BIN)/python -m workbench site

schema: setup  ## regenerate workbench/assess/assessment.schema.json from its pydantic models
	$(BIN)/python -m workbench.assess.schema

binder-check: setup  ## build a fresh env from binder/, check every notebook fits in 2 GB
	WORKBENCH_BINDER_CHECK=1 $(BIN)/python -m pytest -s tests/test_binder_build.py

style: setup  ## ruff check + format check of the whole repository (notebooks included)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# The locks, resolved by uv from pyproject.toml for Python 3.11 on Linux x86_64, each pin with the
# sha256 of every file PyPI serves for it. The current pins are kept wherever they still satisfy
# pyproject.toml (uv prefers the versions in the output file).
#   requirements.txt         runtime + extras test, cloud, dev: what `make setup` and CI install
#   binder/requirements.txt  runtime only, constrained to the same pins: what Binder installs
lock: setup  ## re-resolve both locks (with hashes) from pyproject.toml
	$(UV_COMPILE) --extra test --extra cloud --extra dev -o requirements.txt
	$(UV_COMPILE) --constraint requirements.txt -o binder/requirements.txt
	@{ printf '%s\n' \
	  "# The lock: every package that \`make setup\` and CI install, exactly pinned, with hashes" \
	  "# (pip install --require-hashes -r requirements.txt, then the package itself: pip install" \
	  "# --no-deps -e .). pyproject.toml's dependencies and its extras test, cloud and dev," \
	  "# resolved by uv for Python 3.11 on Linux x86_64." \
	  "# Do not edit by hand: change pyproject.toml, then run \`make lock\`" \
	  "# (LOCK_ARGS=--upgrade moves every package to the newest version pyproject.toml allows)."; \
	  cat requirements.txt; } > requirements.txt.new && mv requirements.txt.new requirements.txt
	@{ printf '%s\n' \
	  "# What Binder (repo2docker) installs, in its cached layer before it copies the repository:" \
	  "# the runtime dependencies only (no test, dev or cloud extras), at the same pins and hashes as" \
	  "# ../requirements.txt (tests/unit/test_binder.py checks both). No -r/-e lines: they would" \
	  "# make repo2docker reinstall everything on every commit. Generated by \`make lock\`."; \
	  cat binder/requirements.txt; } > binder/requirements.txt.new \
	  && mv binder/requirements.txt.new binder/requirements.txt

clean:  ## remove everything generated (artifacts/, reports/, build/, dist/)
	rm -rf artifacts reports build dist
