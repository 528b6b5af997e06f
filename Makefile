# FlexKV Twin: set-up, checks, demo and benchmarks.
#
#   make setup    system packages (apt, as root), .venv, torch (pinned), the project (editable)
#   make test     setup, then ruff, mypy on the core, pytest
#   make native   rebuild the C++/CUDA module after editing csrc/ (incremental)
#   make clean    remove build outputs; `make distclean` also removes .venv
#
# Set-up is skipped when nothing it depends on changed (stamp file in .venv).

SHELL := /bin/bash
.DEFAULT_GOAL := test

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check
# Torch is installed first, pinned, and only when missing: pip resolving an unpinned torch
# would pull GBs of CUDA packages. 2.13.0 is the local CPU wheel (pip's find-links).
TORCH_SPEC ?= torch==2.13.0
EXTRAS ?= dev,engine,ray
APT_PACKAGES ?= liburing-dev fio redis-server chromium chromium-driver \
	cmake ninja-build pkg-config g++
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

STAMP := $(VENV)/.setup-stamp
SETUP_INPUTS := pyproject.toml CMakeLists.txt $(shell find csrc -type f 2>/dev/null)
LINT_DIRS := $(wildcard engine simulator tests bench)

define BUILD_REQUIRES_PY
try:
    import tomllib
except ImportError:  # Python 3.10
    from pip._vendor import tomli as tomllib
with open("pyproject.toml", "rb") as f:
    print(" ".join(tomllib.load(f)["build-system"]["requires"]))
endef
export BUILD_REQUIRES_PY

.PHONY: setup venv apt native test lint format demo bench clean distclean

# Two steps in sub-makes, so that the stamp is judged after apt ran (a newly installed
# liburing removes the stamp, and the native module is rebuilt to use it).
setup venv:
	@$(MAKE) --no-print-directory apt
	@$(MAKE) --no-print-directory $(STAMP)

# Checked on every run (a dpkg query, fast); apt runs only when a package is missing.
apt:
	@missing=""; \
	for p in $(APT_PACKAGES); do \
	  dpkg-query -W -f='$${Status}\n' "$$p" 2>/dev/null | grep -q '^install ok installed$$' \
	    || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "apt: installing$$missing"; \
	  log=$${TMPDIR:-/tmp}/flexkv-apt.log; \
	  { $(SUDO) apt-get update -qq && \
	    $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq -o Dpkg::Use-Pty=0 \
	      $$missing; } >"$$log" 2>&1 || { tail -n 30 "$$log" >&2; exit 1; }; \
	  rm -f $(STAMP); \
	fi

$(STAMP): $(SETUP_INPUTS)
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -c 'import importlib.metadata as m; m.version("torch")' 2>/dev/null \
	  || $(PIP) install -q '$(TORCH_SPEC)'
	@# Never let pip move torch while resolving the project's deps.
	@$(PY) -c 'import importlib.metadata as m; print("torch==" + m.version("torch"))' \
	  > $(VENV)/constraints.txt
	@# Build requirements come from pyproject.toml (the editable build is not isolated).
	$(PIP) install -q $$($(PY) -c "$$BUILD_REQUIRES_PY")
	$(PIP) install -q -c $(VENV)/constraints.txt --no-build-isolation -e '.[$(EXTRAS)]'
	@$(PY) -c 'from flexkv_engine import _native; print("native:", _native.build_info())'
	@touch $@

# Rebuild only the native module (no dependency changes); incremental in build/.
native: apt
	@test -x $(PY) || { echo "run 'make setup' first" >&2; exit 1; }
	$(PIP) install -q --no-build-isolation --no-deps -e .
	@$(PY) -c 'from flexkv_engine import _native; print("native:", _native.build_info())'

# All three checks run; the target fails if any failed. pytest's exit 5 (no test
# collected) counts as a failure.
test: setup
	@status=0; \
	echo "== ruff"; $(VENV)/bin/ruff check $(LINT_DIRS) || status=1; \
	echo "== mypy"; $(VENV)/bin/mypy engine/flexkv_engine/core || status=1; \
	echo "== pytest"; $(PY) -m pytest -q; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests" >&2; fi; \
	if [ $$rc -ne 0 ]; then status=1; fi; \
	exit $$status

lint: setup
	$(VENV)/bin/ruff check $(LINT_DIRS)
	$(VENV)/bin/mypy engine/flexkv_engine/core

format: setup
	$(VENV)/bin/ruff check --fix $(LINT_DIRS)
	$(VENV)/bin/ruff format $(LINT_DIRS)

# The twin on a workload it generates: 2,000 multi-turn chat requests replayed in timing
# mode on an H100 host with a Gen4 SSD; the last line names the HTML report.
DEMO_DIR ?= runs/demo
demo: setup
	@mkdir -p $(DEMO_DIR)
	$(VENV)/bin/flexkv-sim trace generate --workload multiturn --requests 2000 --seed 1 \
	  --rate 8 -o $(DEMO_DIR)/trace.jsonl
	$(VENV)/bin/flexkv-sim replay $(DEMO_DIR)/trace.jsonl --config scenarios/demo.json \
	  --mode timing --hardware h100-sxm-pcie5 --hardware ssd-gen4 --out $(DEMO_DIR)/run

bench: setup
	@if [ -f bench/run_all.sh ]; then \
	  PATH="$(abspath $(VENV))/bin:$$PATH" bash bench/run_all.sh; \
	else \
	  echo "bench/run_all.sh not found: nothing to run"; \
	fi

clean:
	rm -rf build dist .pytest_cache .mypy_cache .ruff_cache .hypothesis $(STAMP)
	find engine simulator tests bench -name __pycache__ -type d -prune -exec rm -rf {} + \
	  2>/dev/null || true

distclean: clean
	rm -rf $(VENV)
