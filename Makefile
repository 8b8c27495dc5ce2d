# clientpulse: `make demo` to see it work, `make test` to prove it.
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
STAMP   = $(VENV)/.installed-dev
DURATION ?=
DEMO_ARGS = $(if $(DURATION),--duration $(DURATION),)

OIDC_MODULES = tests/oidc/node_modules/.package-lock.json

.PHONY: demo test lint typecheck bench bench-quick install clean ci system-deps

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP) $(OIDC_MODULES)

# The OpenID Connect tests run a real provider (oidc-provider, Node.js) from tests/oidc.
$(OIDC_MODULES): tests/oidc/package.json tests/oidc/package-lock.json
	@command -v npm >/dev/null || { apt-get update && apt-get install -y --no-install-recommends nodejs npm; }
	cd tests/oidc && npm ci --no-audit --no-fund

demo: $(STAMP)
	$(BIN)/clientpulse demo $(DEMO_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check schemas handlers streams tests
	$(BIN)/ruff format --check schemas handlers streams tests

typecheck: $(STAMP)
	$(BIN)/mypy

# The TLS tests put Debian's stunnel in front of the embedded broker; installed here when missing.
system-deps:
	@command -v stunnel4 >/dev/null 2>&1 || command -v stunnel >/dev/null 2>&1 || { \
	  echo "installing stunnel4 (TLS proxy for the TLS tests)"; \
	  apt-get install -y -qq stunnel4 >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq stunnel4; }; }

test: $(STAMP) $(OIDC_MODULES) system-deps lint typecheck
	$(BIN)/pytest -q

bench: $(STAMP)
	$(BIN)/clientpulse bench

bench-quick: $(STAMP)
	$(BIN)/clientpulse bench --quick

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .demo build *.egg-info tests/oidc/node_modules
