# Thin aliases: each target sets up what it needs in .venv first.
# Django 6 needs Python 3.12+, so the newest Python found is preferred.
PYTHON ?= $(shell for p in python3.13 python3.12 $$HOME/.pyenv/versions/3.13*/bin/python $$HOME/.pyenv/versions/3.12*/bin/python python3; do $$p -c 'import sys; assert sys.version_info >= (3, 10)' >/dev/null 2>&1 && { echo $$p; break; }; done)
VENV ?= .venv
BIN = $(VENV)/bin

.PHONY: help test demo bench lint tox clean

help:
	@echo "make test   run the test suite (real S3-compatible server on 127.0.0.1)"
	@echo "make demo   collectstatic of example/ into a local S3 server, twice"
	@echo "make bench  benchmark collectfast against stock collectstatic and its peers"
	@echo "make lint   ruff and mypy"
	@echo "make tox    the whole Django/Python matrix"

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

test: $(BIN)/.installed
	$(BIN)/python -m pytest

demo: $(BIN)/.installed
	$(BIN)/python example/demo.py

$(BIN)/.bench-installed: $(BIN)/.installed pyproject.toml
	$(BIN)/python -m pip install --quiet -e '.[bench]'
	touch $@

# The peers' own virtualenvs are made by the benchmark, under benchmarks/.venvs/.
bench: $(BIN)/.bench-installed
	$(BIN)/python -m benchmarks.run

lint: $(BIN)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

tox: $(BIN)/.installed
	$(BIN)/tox run

clean:
	rm -rf $(VENV) .tox build dist *.egg-info
