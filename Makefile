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

# The S3 tests again, against LocalStack's S3: a second S3 implementation, stricter than moto
# (docs/s3-compatible.md). LocalStack runs from a virtualenv of its own, on Python 3.12+; its
# dependencies are unpinned, so the releases it works with are pinned here. Changing them
# rebuilds the virtualenv.
LOCALSTACK_VENV ?= .venv-localstack
LOCALSTACK_PYTHON ?= $(shell for p in python3.13 python3.12 $$HOME/.pyenv/versions/3.13*/bin/python $$HOME/.pyenv/versions/3.12*/bin/python python3; do $$p -c 'import sys; assert sys.version_info >= (3, 12)' >/dev/null 2>&1 && { echo $$p; break; }; done)
LOCALSTACK_REQUIREMENTS = 'localstack-core[base-runtime]==2026.3.0' 'cbor2<5.7' 'cryptography==43.0.3' 'pyopenssl==24.2.1' 'service_identity<24.3'
S3_TEST_MODULES = tests/test_s3.py tests/test_manifest.py tests/test_manifest_storage.py tests/test_failures.py

.PHONY: test-s3-compat
test-s3-compat: $(BIN)/.installed
	@if [ "$$(cat $(LOCALSTACK_VENV)/.installed 2>/dev/null)" != "$$(echo $(LOCALSTACK_REQUIREMENTS))" ]; then \
		test -n "$(LOCALSTACK_PYTHON)" || { echo "LocalStack needs Python 3.12 or newer"; exit 1; }; \
		set -ex; rm -rf $(LOCALSTACK_VENV); \
		$(LOCALSTACK_PYTHON) -m venv $(LOCALSTACK_VENV); \
		$(LOCALSTACK_VENV)/bin/python -m pip install --quiet --disable-pip-version-check $(LOCALSTACK_REQUIREMENTS); \
		echo $(LOCALSTACK_REQUIREMENTS) > $(LOCALSTACK_VENV)/.installed; \
	fi
	COLLECTFAST_S3_SERVER=localstack COLLECTFAST_LOCALSTACK_VENV=$(LOCALSTACK_VENV) $(BIN)/python -m pytest $(S3_TEST_MODULES)

clean:
	rm -rf $(VENV) .tox build dist *.egg-info
