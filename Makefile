# `make run` and `make test` are the two commands a newcomer needs (see README.md).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: run test demo lint clean

# The stamp files re-install only when pyproject.toml changes.
$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@ $(VENV)/.installed

run: $(VENV)/.installed
	$(BIN)/newsalert run

demo: $(VENV)/.installed
	$(BIN)/newsalert demo

test: $(VENV)/.installed-dev
	$(BIN)/ruff check bot tests
	$(BIN)/python -m pytest -q -n 2

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check bot tests

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache *.egg-info
