# `make run` serves on 127.0.0.1:50051; `make test` runs the whole suite.
# Both create .venv and generate the stubs first. `make run` installs only what the server
# needs (plus grpcio-tools for the stubs); test, bench and lint add the dev set to the same venv.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# uv installs from PyPI several times faster than pip (parallel downloads, one resolution);
# pip only bootstraps it.
UV_VERSION := 0.13.9
PIP := $(BIN)/uv pip install -q --python $(BIN)/python
# Stamps: the runtime set is installed / the dev set is installed on top of it. A change to
# pyproject.toml redoes both in turn; the dev stamp is newer than the runtime one, so
# `make test` then `make run` installs nothing.
RUNTIME := $(VENV)/.runtime
DEV := $(VENV)/.dev
GENERATED := src/policyhub/_gen/.generated
PROTOS := $(shell find proto -name '*.proto')

.PHONY: run dev test lint bench clean

$(RUNTIME): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check uv==$(UV_VERSION)
	$(PIP) -e '.[codegen]'
	touch $@

$(DEV): $(RUNTIME)
	$(PIP) -e '.[dev]'
	touch $@

$(GENERATED): $(RUNTIME) $(PROTOS) proto/generate.py
	$(BIN)/python proto/generate.py
	touch $@

run: $(GENERATED)
	$(BIN)/python -m policyhub

# The dev set alone (grpcurl for the README's walk-through, helm, buf, pytest...).
dev: $(DEV) $(GENERATED)

lint: $(DEV) $(GENERATED)
	cd proto && ../$(BIN)/buf lint
	$(BIN)/ruff check src tests
	$(BIN)/ruff format --check src tests
	$(BIN)/mypy

# One worker per CPU; a module's tests stay on one worker, so its fixtures (a database and a
# server per module, a secantusdb server per worker) are set up once.
test: $(DEV) $(GENERATED) lint
	$(BIN)/python -m pytest -n auto --dist loadscope

bench: $(DEV) $(GENERATED)
	$(BIN)/python tests/bench/bench_api.py
	$(BIN)/python tests/bench/bench_check.py
	$(BIN)/python tests/bench/bench_index.py
	$(BIN)/python tests/bench/bench_trust.py
	$(BIN)/python tests/bench/bench_sets.py
	$(BIN)/python tests/bench/bench_bulk.py
	$(BIN)/python tests/bench/bench_workers.py
	$(BIN)/python tests/bench/bench_scale.py

clean:
	rm -rf $(VENV) src/policyhub/_gen .pytest_cache
