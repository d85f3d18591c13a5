# The bundle's commands. `make test` and `make demo` are all a newcomer needs:
# each one sets up what it uses (a venv, Windmill's npm tools, an embedded Postgres).
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
PYTHON ?= python3

.PHONY: setup test lint bench demo serve soak lock clean mutants

$(VENV)/.installed: requirements.lock
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.lock
	touch $@

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

setup: $(VENV)/.installed node_modules/.installed

test: setup
	$(PY) -m pytest -q

lint: setup
	$(PY) -m tools.lint

bench: setup
	$(PY) -m bench

demo: setup
	$(PY) -m local_runner demo

serve: setup
	$(PY) -m local_runner serve

soak: setup
	$(PY) -m bench.soak

# Deliberate small bugs, one at a time, each of which a named test must catch (tools/mutants.py).
mutants: setup
	$(PY) -m tools.mutants

# Re-pin the Python dependencies after changing requirements.in.
lock:
	rm -rf /tmp/lockvenv && $(PYTHON) -m venv /tmp/lockvenv
	/tmp/lockvenv/bin/pip install --quiet -r requirements.in
	/tmp/lockvenv/bin/pip freeze > requirements.lock

clean:
	rm -rf $(VENV) node_modules .pytest_cache .hypothesis
