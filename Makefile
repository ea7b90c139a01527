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

# `mentor run` on generated demo media with the tiny presets (build, split, both models,
# evaluation, audit); a second `make demo` finds every step done and says so at once.
demo: setup
	$(VENV)/bin/mentor demo --out $(DEMO_OUT)

# The suite CI runs: everything, slow tests included.
test: setup
	$(PY) -m pytest -q tests

# Quick loop while developing.
test-fast: setup
	$(PY) -m pytest -q -m "not slow" tests

# Every benchmark in benchmarks/ (each prints its figures with a ratio against a baseline
# measured in the same run); one that fails is named at the end and the target fails.
BENCHMARKS := $(filter-out motion_data,$(basename $(notdir $(wildcard benchmarks/*.py))))
bench: setup
	@echo "machine: $$(nproc) CPUs, $$(free -g | awk '/Mem:/{print $$2}') GiB"; \
	fail=""; for b in $(BENCHMARKS); do echo; \
	  echo "== benchmarks/$$b.py (load average $$(cut -d' ' -f1-3 /proc/loadavg))"; \
	  $(PY) -m benchmarks.$$b || fail="$$fail $$b"; done; \
	if [ -n "$$fail" ]; then echo "failed benchmarks:$$fail"; exit 1; fi

clean:
	rm -rf out .pytest_cache
