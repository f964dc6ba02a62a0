# `make run` serves on 127.0.0.1:50051; `make test` runs the whole suite.
# Both create .venv, install the pinned dependencies and generate the stubs first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed
GENERATED := src/policyhub/_gen/.generated
PROTOS := $(shell find proto -name '*.proto')

.PHONY: run test unit lint bench clean

$(INSTALLED): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check -e '.[dev]'
	touch $@

$(GENERATED): $(INSTALLED) $(PROTOS) proto/generate.py
	$(BIN)/python proto/generate.py
	touch $@

run: $(GENERATED)
	$(BIN)/python -m policyhub

lint: $(GENERATED)
	cd proto && ../$(BIN)/buf lint
	$(BIN)/ruff check src tests
	$(BIN)/ruff format --check src tests
	$(BIN)/mypy

test: $(GENERATED) lint
	$(BIN)/python -m pytest

bench: $(GENERATED)
	$(BIN)/python tests/bench/bench_api.py
	$(BIN)/python tests/bench/bench_check.py
	$(BIN)/python tests/bench/bench_index.py
	$(BIN)/python tests/bench/bench_trust.py
	$(BIN)/python tests/bench/bench_sets.py
	$(BIN)/python tests/bench/bench_bulk.py

clean:
	rm -rf $(VENV) src/policyhub/_gen .pytest_cache
