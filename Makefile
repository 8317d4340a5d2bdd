VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip

.PHONY: install run test lint bench-messages bench-traffic bench-control-plane bench-hardening bench-cluster clean

$(PY):
	python3 -m venv $(VENV)
	$(PIP) install -q --upgrade pip

$(VENV)/.installed: pyproject.toml | $(PY)
	$(PIP) install -q -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml $(VENV)/.installed
	$(PIP) install -q -e '.[test]'
	touch $@

install: $(VENV)/.installed

run: install
	$(VENV)/bin/campaignd migrate
	$(VENV)/bin/campaignd serve

test: $(VENV)/.installed-test
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy
	$(VENV)/bin/pytest $(PYTEST_ARGS)

lint: $(VENV)/.installed-test
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

clean:
	rm -rf $(VENV) build *.egg-info

$(VENV)/.installed-bench: pyproject.toml $(VENV)/.installed
	$(PIP) install -q -e '.[test,bench]'
	touch $@

# Needs the Debian packages nginx and wrk (apt-get install -y nginx wrk) and taskset.
bench-traffic: $(VENV)/.installed-bench
	$(PY) bench/traffic_peers.py $(BENCH_ARGS)

bench-messages: $(VENV)/.installed-test
	$(PY) bench/messages.py

bench-control-plane: $(VENV)/.installed-test
	$(PY) bench/control_plane.py

# Needs PostgreSQL on 127.0.0.1:5432 (CAMPAIGND_TEST_POSTGRES_URL to point elsewhere).
bench-cluster: $(VENV)/.installed-test
	$(PY) bench/cluster.py $(BENCH_ARGS)

bench-hardening: $(VENV)/.installed-test
	$(PY) bench/hardening.py $(BENCH_ARGS)
