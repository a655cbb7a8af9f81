# Two entry points: `make demo` and `make test`. Both create/refresh .venv first.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.ktune-installed
export HF_HUB_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false

.PHONY: venv browser demo test test-fast lint bench clean

venv: $(STAMP)

# Re-install only when the project's dependency list changes (idempotent second run).
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet "torch==2.13.0"
	$(PY) -m pip install --quiet -e ".[cpu,dev,postgres]"
	touch $(STAMP)

# Debian's chromium for the browser tests (tests/serve/test_browser.py); apt-get, with sudo when not root.
browser:
	scripts/chromium.sh

demo: venv
	$(VENV)/bin/ktune demo

test: venv browser
	$(PY) -m pytest -q

test-fast: venv browser
	$(PY) -m pytest -q -m "not slow"

lint: venv
	$(VENV)/bin/ruff check src tests bench

bench: venv
	$(PY) bench/kb.py

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache
