# clientpulse: `make demo` to see it work, `make test` to prove it.
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
STAMP   = $(VENV)/.installed-dev
DURATION ?=
DEMO_ARGS = $(if $(DURATION),--duration $(DURATION),)

.PHONY: demo test lint typecheck bench bench-quick install clean ci

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/clientpulse demo $(DEMO_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check schemas handlers streams tests
	$(BIN)/ruff format --check schemas handlers streams tests

typecheck: $(STAMP)
	$(BIN)/mypy

test: $(STAMP) lint typecheck
	$(BIN)/pytest -q

bench: $(STAMP)
	$(BIN)/clientpulse bench

bench-quick: $(STAMP)
	$(BIN)/clientpulse bench --quick

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .demo build *.egg-info
