# The README's commands. `make run`: the whole flow; `make test`: the tests.
# Both create (or reuse) .venv with Python 3.11 and install requirements.txt first.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup run test test-fast lab report style binder-check clean help

help:
	@echo "make run    set up, execute every notebook (full profile), write reports/index.html"
	@echo "make test   set up, run unit tests and every notebook in the smoke profile"
	@echo "make lab    set up, open JupyterLab on notebooks/"
	@echo "make style  ruff check + format check"
	@echo "make binder-check  build a fresh env from binder/ and check every notebook stays under 2 GB"

setup: $(STAMP)

$(STAMP): requirements.txt pyproject.toml
	@$(PYTHON) -c 'import sys; v=sys.version_info; sys.exit(0 if (3,11)<=v[:2]<(3,13) else "Python 3.11 or 3.12 needed, found %d.%d: set PYTHON=/path/to/python3.11" % v[:2])'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt
	$(BIN)/python -m pip install --quiet --no-deps -e .
	$(BIN)/python -m ipykernel install --sys-prefix --name workbench --display-name "Python (workbench)" >/dev/null
	touch $(STAMP)

run: setup
	$(BIN)/python -m workbench run --profile full

test: setup
	$(BIN)/python -m pytest

test-fast: setup
	$(BIN)/python -m pytest -m "not notebooks and not slow"

lab: setup
	$(BIN)/jupyter lab notebooks/

report: setup
	$(BIN)/python -m workbench report

binder-check: setup
	WORKBENCH_BINDER_CHECK=1 $(BIN)/python -m pytest -s tests/test_binder_build.py

style: setup
	$(BIN)/ruff check workbench tests
	$(BIN)/ruff format --check workbench tests

clean:
	rm -rf artifacts reports
