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
# `make bench` runs each at the quick size below (a smoke run of the whole set: the ratios
# are printed, but short runs are dominated by start-up; see the README for the time it
# takes); `make bench FULL=1` runs each at its own default size, the one the README's
# figures come from (hours on a 2-core box). `make bench ONLY="windows eval"` runs some.
BENCHMARKS := $(filter-out motion_data _%,$(basename $(notdir $(wildcard benchmarks/*.py))))
BENCH_QUICK_audio_annotators := --seconds 5 --repeats 1
BENCH_QUICK_curation := --sources 4 --seconds 15
BENCH_QUICK_curation_cost := --sources 2 --choice-clips 1
BENCH_QUICK_decode_passes := --seconds 4 --repeat 1
BENCH_QUICK_eval := --seconds 2 --repeats 1
BENCH_QUICK_jitter_where := --scenarios talking --frames 40
BENCH_QUICK_motion := --config small --steps 10 --sample-configs small
BENCH_QUICK_motion_speech := --clips 8 --identities 4 --seconds 2 --steps 20 --guidance 1 --out out/bench/motion_speech_quick
BENCH_QUICK_person_filter := --seconds 4 --repeats 1
BENCH_QUICK_scaling := --sources 4 --seconds 10
BENCH_QUICK_smplx_ab := --variants steps10 --reps 1 --scenarios talking --frames 40
BENCH_QUICK_smplx_fit := --stride 50
BENCH_QUICK_smooth_ab := --variants despike0 --scenarios switch --frames 40
BENCH_QUICK_smplx_focal_guess := --truths 1.0 --guesses 0.7 --frames 40
BENCH_QUICK_smplx_truth := --quick --scenarios talking
BENCH_QUICK_video := --size 128 --frames 8 --train-steps 4 --baseline-loader --gen-frames 16 --gen-steps 4
BENCH_QUICK_windows := --clips 4 --seconds 4
bench_args = $(if $(FULL),,$(BENCH_QUICK_$(1)))
bench: setup
	@echo "machine: $$(nproc) CPUs, $$(free -g | awk '/Mem:/{print $$2}') GiB; sizes: $(if $(FULL),each benchmark's default (FULL=1),quick (FULL=1 for the defaults))"; \
	fail=""; start=$$SECONDS; TIMEFORMAT="   took %R s wall, %U + %S s CPU (user + system, children included)"; \
	$(foreach b,$(or $(ONLY),$(BENCHMARKS)),echo; \
	  echo "== benchmarks/$(b).py $(call bench_args,$(b)) (load average $$(cut -d' ' -f1-3 /proc/loadavg))"; \
	  time $(PY) -m benchmarks.$(b) $(call bench_args,$(b)) || fail="$$fail $(b)";) \
	echo; echo "make bench: $$((SECONDS - start)) s wall in all; load average now $$(cut -d' ' -f1-3 /proc/loadavg)"; \
	if [ -n "$$fail" ]; then echo "failed benchmarks:$$fail"; exit 1; fi

clean:
	rm -rf out .pytest_cache
