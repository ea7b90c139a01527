# One command sets up and runs the demo, one sets up and runs the tests (see README).
# Both are idempotent: Debian packages, a virtual environment and the pinned
# Python dependencies are installed only when missing or changed.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
# uv lives inside the project's own venv: no global install, no PATH assumptions
UV := $(PY) -m uv
APT_PACKAGES := ffmpeg espeak-ng sox chromium python3-venv
DEMO_OUT ?= out/demo

.PHONY: setup demo test test-all bench clean

$(VENV)/.apt-done:
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing; fi
	@mkdir -p $(VENV) && touch $@

$(VENV)/.deps-done: $(VENV)/.apt-done requirements/base.txt requirements/test.txt requirements/overrides.txt pyproject.toml
	@[ -x $(PY) ] || python3.11 -m venv $(VENV) || python3 -m venv $(VENV)
	@$(UV) --version >/dev/null 2>&1 || $(PY) -m pip install -q uv
	$(UV) pip install -q -p $(PY) -r requirements/base.txt -r requirements/test.txt --override requirements/overrides.txt
	$(UV) pip install -q -p $(PY) --no-deps -e .
	@touch $@

setup: $(VENV)/.deps-done

demo: setup
	$(VENV)/bin/mentor demo --out $(DEMO_OUT)

# The suite CI runs: everything, slow tests included.
test: setup
	$(PY) -m pytest -q tests

# Quick loop while developing.
test-fast: setup
	$(PY) -m pytest -q -m "not slow" tests

bench: setup
	$(PY) benchmarks/curation.py
	$(PY) benchmarks/smplx_fit.py

clean:
	rm -rf out .pytest_cache
