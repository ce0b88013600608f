# Thin aliases: each target sets up what it needs in .venv first.
# Django 6 needs Python 3.12+, so the newest Python found is preferred.
PYTHON ?= $(shell for p in python3.13 python3.12 $$HOME/.pyenv/versions/3.13*/bin/python $$HOME/.pyenv/versions/3.12*/bin/python python3; do $$p -c 'import sys; assert sys.version_info >= (3, 10)' >/dev/null 2>&1 && { echo $$p; break; }; done)
VENV ?= .venv
BIN = $(VENV)/bin

.PHONY: help test demo bench lint tox docs clean azurite

help:
	@echo "make test   run the test suite (real S3, GCS and Azure servers on 127.0.0.1; Azurite comes from npm)"
	@echo "make demo   collectstatic of example/ into local S3, GCS and Azure servers, twice each"
	@echo "make bench  benchmark collectfast against stock collectstatic and its peers"
	@echo "make lint   ruff and mypy"
	@echo "make tox    the whole Django/Python matrix"
	@echo "make docs   the documentation site, in docs/_build/html (warnings are errors)"

# Installs go through uv (from PyPI, into .venv/uv): it downloads in parallel and installs in
# seconds, where pip takes longer than the whole demo. The venv gets pip too, for hand use.
UV = $(VENV)/uv/bin/uv
INSTALL = $(UV) pip install --quiet --python $(BIN)/python

$(BIN)/python:
	$(PYTHON) -m venv --without-pip $(VENV)

$(UV): | $(BIN)/python
	$(PYTHON) -m pip install --quiet --disable-pip-version-check --root-user-action=ignore --target $(VENV)/uv 'uv>=0.8'
	$(INSTALL) pip

# One stamp per purpose, each installing collectfast (editable) with only the extras and the
# dependency group (pyproject.toml [dependency-groups]) that the target needs.
$(BIN)/.installed: pyproject.toml | $(UV)
	$(INSTALL) --compile-bytecode -e '.[s3,gcloud,azure]' --group test
	touch $@

# Azurite, the Azure Storage emulator the Azure tests start (tests/azuriteserver.py), pinned by
# tests/azurite/package-lock.json and installed from the npm registry into tests/azurite/node_modules.
AZURITE_STAMP = tests/azurite/node_modules/.installed
$(AZURITE_STAMP): tests/azurite/package.json tests/azurite/package-lock.json
	@command -v npm >/dev/null || { echo "The Azure tests need Node.js 18+ and npm, to install Azurite"; exit 1; }
	npm ci --prefix tests/azurite --no-audit --no-fund --loglevel=error
	touch $@

azurite: $(AZURITE_STAMP)

# The three clouds' extras, and the demo group: moto for S3, gcp-storage-emulator for GCS.
# No --compile-bytecode: compiling all of moto, botocore, Django and the cloud SDKs (4,000 files) takes
# longer than the demo; demo.py --precompile compiles the 1,000 its processes import.
$(BIN)/.demo-installed: pyproject.toml | $(UV)
	$(INSTALL) -e '.[s3,gcloud,azure]' --group demo
	$(BIN)/python example/demo.py --precompile
	touch $@

# Azurite for the demo's Azure part, when npm is there; without it the demo skips Azure and says so.
DEMO_AZURITE = $(if $(shell command -v npm 2>/dev/null),$(AZURITE_STAMP))

$(BIN)/.lint-installed: pyproject.toml | $(UV)
	$(INSTALL) -e '.[s3,gcloud,azure]' --group lint
	touch $@

$(BIN)/.docs-installed: pyproject.toml | $(UV)
	$(INSTALL) -e . --group docs
	touch $@

$(BIN)/.tox-installed: pyproject.toml | $(UV)
	$(INSTALL) --group tox
	touch $@

test: $(BIN)/.installed $(AZURITE_STAMP)
	@echo "make test: the whole suite (about 400 tests) usually takes about 10 minutes on 2 cores (9 min 44 s measured), longer on a loaded machine;"
	@echo "  a quick check: .venv/bin/python -m pytest tests/test_units.py tests/test_filesystem.py (about a minute)."
	$(BIN)/python -m pytest

demo: $(BIN)/.demo-installed $(DEMO_AZURITE)
	$(BIN)/python example/demo.py

docs: $(BIN)/.docs-installed
	$(BIN)/python -m sphinx -W --keep-going -b html -q docs docs/_build/html
	@echo "The documentation is in docs/_build/html/index.html"

# The three clouds' extras and Azurite, for BENCH_BACKENDS (collectfast on S3, GCS and Azure).
$(BIN)/.bench-installed: pyproject.toml | $(UV) $(AZURITE_STAMP)
	$(INSTALL) --compile-bytecode -e '.[s3,gcloud,azure]' --group bench
	touch $@

# The peers' own virtualenvs are made by the benchmark, under benchmarks/.venvs/.
# BENCH_BACKENDS=s3,gcs,azure runs benchmarks/backends.py instead: collectfast per backend against its floor.
bench: $(BIN)/.bench-installed
	$(BIN)/python -m $(if $(BENCH_BACKENDS),benchmarks.backends,benchmarks.run)

lint: $(BIN)/.lint-installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

tox: $(BIN)/.tox-installed
	$(BIN)/tox run

# The S3 tests again, against LocalStack's S3: a second S3 implementation, stricter than moto
# (docs/s3-compatible.md). LocalStack runs from a virtualenv of its own, on Python 3.12+; its
# dependencies are unpinned, so the releases it works with are pinned here. Changing them
# rebuilds the virtualenv.
LOCALSTACK_VENV ?= .venv-localstack
LOCALSTACK_PYTHON ?= $(shell for p in python3.13 python3.12 $$HOME/.pyenv/versions/3.13*/bin/python $$HOME/.pyenv/versions/3.12*/bin/python python3; do $$p -c 'import sys; assert sys.version_info >= (3, 12)' >/dev/null 2>&1 && { echo $$p; break; }; done)
LOCALSTACK_REQUIREMENTS = 'localstack-core[base-runtime]==2026.3.0' 'cbor2<5.7' 'cryptography==43.0.3' 'pyopenssl==24.2.1' 'service_identity<24.3'
S3_TEST_MODULES = tests/test_s3.py tests/test_s3_private.py tests/test_s3uploads.py tests/test_manifest.py tests/test_manifest_storage.py tests/test_failures.py

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
	rm -rf $(VENV) .tox build dist *.egg-info docs/_build tests/azurite/node_modules
