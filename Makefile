# The two entry points the README names: `make serve` and `make test`. Both build the venv from scratch
# when it is missing or pyproject.toml changed.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
ARGS ?=

.PHONY: serve test lint typecheck pytest services bench clean

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check --upgrade pip
	$(PY) -m pip install -q --disable-pip-version-check -e '.[local,dev]'
	touch $(STAMP)

serve: $(STAMP)
	$(VENV)/bin/omnirelay serve $(ARGS)

services:
	bash scripts/services.sh

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: $(STAMP)
	$(VENV)/bin/mypy

pytest: $(STAMP) services
	$(VENV)/bin/pytest -q -p no:cacheprovider $(ARGS)

test: lint typecheck pytest

bench: $(STAMP)
	$(PY) -m bench $(ARGS)

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
