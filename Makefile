# driftline: `make demo` runs the main job on the local stack; `make test` runs the suite.
SHELL := /bin/bash
VENV := .cache/venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test test-faults up down status lint check unit bench clean-cache

$(STAMP): pyproject.toml constraints.txt
	@test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt -e ".[test,dev]"
	@touch $(STAMP)

venv: $(STAMP)

up: $(STAMP)
	bash deploy/local/up.sh

down:
	bash deploy/local/down.sh

status:
	bash deploy/local/status.sh

demo: up
	$(VENV)/bin/driftline --config config/driftline.yaml demo

lint: $(STAMP)
	$(VENV)/bin/ruff check
	$(VENV)/bin/mypy

# Unit tests only: no services needed.
unit: $(STAMP)
	$(VENV)/bin/pytest -q tests/unit

test: lint up
	source deploy/local/env.sh && OPENBLAS_NUM_THREADS=1 $(VENV)/bin/pytest -q -m "not slow_fault"

# The long fault-injection cases (tests/faults, marker `slow_fault`); `make test` runs the short ones.
test-faults: lint up
	source deploy/local/env.sh && OPENBLAS_NUM_THREADS=1 $(VENV)/bin/pytest -q -m slow_fault tests/faults

bench: up
	source deploy/local/env.sh && for b in benchmarks/bench_*.py; do echo "== $$b"; $(PY) $$b --quick || exit 1; done

clean-cache: down
	rm -rf "$$(bash deploy/local/postgres.sh paths | sed -n 's/^home //p')"
	rm -rf .cache/kafka/data .cache/postgres .cache/prometheus .cache/worker
