# Set-up is two commands on a fresh machine: `make preview` and `make test`.
VENV := .venv
STAMP := $(VENV)/.installed
# The Python versions this project supports: pyproject.toml's requires-python and classifiers, the README and
# CI say the same (tests/test_setup.py checks).
SUPPORTED_PYTHONS := 3.11 3.12 3.13
# The stamp holds the Python version the .venv was built with; by default the next run uses that one again
# (when `pythonX.Y` is on the PATH).
VENV_PYTHON := $(shell cat $(STAMP) 2>/dev/null)
PYTHON ?= $(or $(if $(VENV_PYTHON),$(shell command -v python$(VENV_PYTHON) 2>/dev/null)),python3)
STACK ?= dev
PYTHON_VERSION := $(shell $(PYTHON) -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null)

# Refused before anything is created, in one line (make's own `*** ... Stop.`), for every target but clean.
ifneq ($(filter-out clean,$(or $(MAKECMDGOALS),default)),)
ifeq ($(filter $(PYTHON_VERSION),$(SUPPORTED_PYTHONS)),)
$(error $(PYTHON) is $(if $(PYTHON_VERSION),Python $(PYTHON_VERSION),not a Python that runs); this project needs Python $(firstword $(SUPPORTED_PYTHONS)) to $(lastword $(SUPPORTED_PYTHONS)): choose one with e.g. make PYTHON=python3.12 $(or $(MAKECMDGOALS),preview))
endif
endif

# A .venv without the stamp (a failed attempt) or built with another Python is removed and built again.
ifneq ($(VENV_PYTHON),$(PYTHON_VERSION))
STALE_VENV := yes
.PHONY: $(STAMP)
endif

.PHONY: preview test live plan check lint benchmark benchmark-quick clean

$(STAMP): pyproject.toml
	$(if $(STALE_VENV),rm -rf $(VENV))
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check --upgrade pip
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -e '.[test]'
	echo $(PYTHON_VERSION) > $@

# The main job without an engine: the default stack's plan under Pulumi's mocks.
preview: $(STAMP)
	$(VENV)/bin/infra plan --stack $(STACK)

plan: preview

# Two workers, the machine's two cores; tests/conftest.py says which modules share one (SERIAL_GROUPS).
test: $(STAMP)
	$(VENV)/bin/python -m pytest -n 2 --no-loadscope-reorder

# The prod stack booted on this machine's Docker engine (both runtimes) from images built here, and proven;
# `make live LIVE_KEEP=1` leaves it running for a look (remove it with `docker rm -f`, or run again).
live: $(STAMP)
	LIVE_KEEP=$(LIVE_KEEP) $(VENV)/bin/python -m pytest -m live -s tests/live

lint: $(STAMP)
	$(VENV)/bin/ruff check .

check: $(STAMP)
	$(VENV)/bin/infra check --stack $(STACK)

# Each benchmark ends with one verdict line per goal; `benchmark-quick` is the short run CI makes (tests/test_benchmarks.py).
benchmark: $(STAMP)
	$(VENV)/bin/python benchmarks/plan_scaling.py
	$(VENV)/bin/python benchmarks/plan_scaling.py --runtime swarm
	$(VENV)/bin/python benchmarks/check_overhead.py
	$(VENV)/bin/python benchmarks/restore_rto.py

benchmark-quick: $(STAMP)
	$(VENV)/bin/python benchmarks/plan_scaling.py --workers 3 6 12 --repeat 1
	$(VENV)/bin/python benchmarks/plan_scaling.py --runtime swarm --workers 3 6 12 --repeat 1
	$(VENV)/bin/python benchmarks/check_overhead.py --repeat 1
	$(VENV)/bin/python benchmarks/restore_rto.py --sizes 16MB

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache
