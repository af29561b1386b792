# Set-up is two commands on a fresh machine: `make preview` and `make test`.
VENV := .venv
PYTHON ?= python3
STACK ?= dev
STAMP := $(VENV)/.installed

.PHONY: preview test live plan check lint benchmark clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check --upgrade pip
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -e '.[test]'
	touch $@

# The main job without an engine: the default stack's plan under Pulumi's mocks.
preview: $(STAMP)
	$(VENV)/bin/infra plan --stack $(STACK)

plan: preview

test: $(STAMP)
	$(VENV)/bin/python -m pytest

# The prod stack booted on this machine's Docker engine (both runtimes) from images built here, and proven;
# `make live LIVE_KEEP=1` leaves it running for a look (remove it with `docker rm -f`, or run again).
live: $(STAMP)
	LIVE_KEEP=$(LIVE_KEEP) $(VENV)/bin/python -m pytest -m live -s tests/live

lint: $(STAMP)
	$(VENV)/bin/ruff check .

check: $(STAMP)
	$(VENV)/bin/infra check --stack $(STACK)

benchmark: $(STAMP)
	$(VENV)/bin/python benchmarks/plan_scaling.py
	$(VENV)/bin/python benchmarks/plan_scaling.py --runtime swarm
	$(VENV)/bin/python benchmarks/check_overhead.py

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache
