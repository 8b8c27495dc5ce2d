# clientpulse: `make demo` to see it work, `make test` to prove it.
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
STAMP   = $(VENV)/.installed-dev
DURATION ?=
DEMO_ARGS = $(if $(DURATION),--duration $(DURATION),)

OIDC_MODULES = tests/oidc/node_modules/.package-lock.json
CHROMIUM ?= /usr/bin/chromium

.PHONY: demo test lint typecheck bench bench-quick bench-api install clean ci system-deps chromium screenshots

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP) $(OIDC_MODULES) chromium

# The browser tests drive the distribution's Chromium through Playwright; a browser is never downloaded.
chromium:
	@test -x $(CHROMIUM) || { echo "installing Debian's chromium for the browser tests (tests/browser)"; \
	  apt-get install -y -qq --no-install-recommends chromium >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq --no-install-recommends chromium; }; }

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

test: $(STAMP) $(OIDC_MODULES) system-deps chromium lint typecheck
	$(BIN)/pytest -q

bench: $(STAMP)
	$(BIN)/clientpulse bench

bench-quick: $(STAMP)
	$(BIN)/clientpulse bench --quick

# The workbench and API on a store of 5,000,000 alerts (a database of its own; docs/performance.md).
bench-api: $(STAMP)
	$(BIN)/clientpulse bench-api

# Pictures of a running demo's workbench for the README: `make screenshots URL=http://127.0.0.1:PORT/`.
# Chinese text needs a CJK font, which a minimal system lacks (the pages would show boxes): Debian's Noto CJK.
screenshots: $(STAMP) chromium
	@fc-list :lang=zh 2>/dev/null | grep -q . || { echo "installing fonts-noto-cjk (Chinese text in the pictures)"; \
	  apt-get install -y -qq --no-install-recommends fonts-noto-cjk >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq --no-install-recommends fonts-noto-cjk; }; }
	$(BIN)/clientpulse screenshots $(URL)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .demo build *.egg-info tests/oidc/node_modules
