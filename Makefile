# The two entry points the README names: `make serve` and `make test`. Both build the venv from scratch
# when it is missing or pyproject.toml or a lock file changed.
VENV ?= .venv
PY := $(VENV)/bin/python
BASE_STAMP := $(VENV)/.installed-local
STAMP := $(VENV)/.installed-dev
ARGS ?=

.PHONY: serve test lock lint typecheck pytest services bench clean

# The agent clients the tests drive through the gateway (tests/test_claude_code.py, tests/test_codex_cli.py), pinned in
# package-lock.json.
# npm ci rewrites node_modules/.package-lock.json, so this reruns only when package.json or the lock changed.
# `make serve` never needs it.
NODE_STAMP := node_modules/.package-lock.json

# Everything installs from the hashed lock files in requirements/ (see requirements/README.md): first pip and the
# build backends, then the locked set built against exactly those, then omnirelay itself without dependencies.
PIP := $(PY) -m pip --disable-pip-version-check -q
LOCKED := --require-hashes --no-deps --no-build-isolation

$(BASE_STAMP): pyproject.toml requirements/build.txt requirements/local.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install --require-hashes --no-deps -r requirements/build.txt
	$(PIP) install $(LOCKED) -r requirements/local.txt
	$(PIP) install --no-deps --no-build-isolation -e .
	touch $(BASE_STAMP)

# The test and lint tools on top (dev.txt is the same resolution as local.txt, plus those).
$(STAMP): $(BASE_STAMP) requirements/dev.txt
	$(PIP) install $(LOCKED) -r requirements/dev.txt
	touch $(STAMP)

# Re-resolve the locks from pyproject.toml's ranges: `make lock`, or `make lock ARGS="--upgrade-package NAME"`.
lock: $(STAMP)
	bash scripts/lock.sh $(VENV)/bin/uv $(ARGS)

serve: $(BASE_STAMP)
	$(VENV)/bin/omnirelay serve $(ARGS)

services:
	bash scripts/system-deps.sh
	bash scripts/services.sh

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: $(STAMP)
	$(VENV)/bin/mypy

$(NODE_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund

# The bench's Node peers (Portkey, claude-code-router), pinned in bench/peers/*/package-lock.json, for the bench smoke
# test (tests/test_bench_smoke.py); reruns only when a peer's package.json or lock changed.
PEERS_STAMP := bench/.work/peers/.installed
$(PEERS_STAMP): bench/peers/portkey/package.json bench/peers/portkey/package-lock.json \
		bench/peers/claude-code-router/package.json bench/peers/claude-code-router/package-lock.json
	$(PY) -m bench.install peers
	touch $(PEERS_STAMP)

pytest: $(STAMP) $(NODE_STAMP) $(PEERS_STAMP) services
	$(VENV)/bin/pytest -q -p no:cacheprovider $(ARGS)

test: lint typecheck pytest

bench: $(STAMP)
	$(PY) -m bench $(ARGS)

clean:
	rm -rf $(VENV) node_modules .mypy_cache .ruff_cache .pytest_cache
