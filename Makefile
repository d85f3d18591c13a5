# The bundle's commands. `make test` and `make demo` are all a newcomer needs:
# each one sets up what it uses (a venv, Windmill's npm tools, an embedded Postgres).
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
PYTHON ?= python3

.PHONY: setup mariadb test lint bench demo serve soak lock clean mutants

$(VENV)/.installed: requirements.lock
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.lock
	touch $@

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

# The MySQL mirror's tests start a real MariaDB (local_runner/mysql_server.py): Debian's
# server, installed once when neither mariadbd nor mysqld is there (CI runs as root).
mariadb:
	@test -x /usr/sbin/mariadbd || test -x /usr/sbin/mysqld || command -v mariadbd >/dev/null || \
	  { $$(test "$$(id -u)" = 0 || echo sudo) apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive $$(test "$$(id -u)" = 0 || echo sudo -E) \
	    apt-get install -y -qq --no-install-recommends mariadb-server >/dev/null; }

setup: $(VENV)/.installed node_modules/.installed mariadb

test: setup
	$(PY) -m pytest -q

lint: setup
	$(PY) -m tools.lint

bench: setup
	$(PY) -m bench

demo: setup
	$(PY) -m local_runner demo

serve: setup
	$(PY) -m local_runner serve $(if $(DATA_DIR),--data-dir $(DATA_DIR))

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
