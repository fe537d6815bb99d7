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

# The web console's chart library (console/package.json, pinned in console/package-lock.json), copied into
# omnirelay/console/static/vendor/ (gitignored) so the gateway serves it offline; both `make serve` and the tests
# need it.
CONSOLE_STAMP := omnirelay/console/static/vendor/chart.umd.min.js

# Everything installs from the hashed lock files in requirements/ (see requirements/README.md): first pip and the
# build backends, then the locked set built against exactly those, then omnirelay itself without dependencies.
PIP := $(PY) -m pip --disable-pip-version-check -q
LOCKED := --require-hashes --no-deps --no-build-isolation

# llama-cpp-python compiles llama.cpp here. Its default native build takes every kernel the CPU reports; on AMD EPYC
# with AVX-512 FP16/BF16 (this project's CI machines) those kernels segfault in decode with the bundled Q4_1 model
# (llama-cpp-python 0.3.36, seen 2026-12-02), so x86-64 builds for AVX2/FMA/F16C, the set the tests run on.
LLAMA_CMAKE_ARGS ?= $(if $(filter x86_64 amd64,$(shell uname -m)),-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON,)

$(BASE_STAMP): pyproject.toml requirements/build.txt requirements/local.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install --require-hashes --no-deps -r requirements/build.txt
	CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" $(PIP) install $(LOCKED) -r requirements/local.txt
	$(PIP) install --no-deps --no-build-isolation -e .
	touch $(BASE_STAMP)

# The test and lint tools on top (dev.txt is the same resolution as local.txt, plus those).
$(STAMP): $(BASE_STAMP) requirements/dev.txt
	$(PIP) install $(LOCKED) -r requirements/dev.txt
	touch $(STAMP)

# Re-resolve the locks from pyproject.toml's ranges: `make lock`, or `make lock ARGS="--upgrade-package NAME"`.
lock: $(STAMP)
	bash scripts/lock.sh $(VENV)/bin/uv $(ARGS)

serve: $(BASE_STAMP) $(CONSOLE_STAMP)
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

$(CONSOLE_STAMP): console/package.json console/package-lock.json scripts/console-assets.sh
	npm ci --prefix console --no-audit --no-fund
	bash scripts/console-assets.sh

# The bench's Node peers (Portkey, claude-code-router), pinned in bench/peers/*/package-lock.json, for the bench smoke
# test (tests/test_bench_smoke.py); reruns only when a peer's package.json or lock changed.
PEERS_STAMP := bench/.work/peers/.installed
$(PEERS_STAMP): bench/peers/portkey/package.json bench/peers/portkey/package-lock.json \
		bench/peers/claude-code-router/package.json bench/peers/claude-code-router/package-lock.json
	$(PY) -m bench.install peers
	touch $(PEERS_STAMP)

pytest: $(STAMP) $(NODE_STAMP) $(CONSOLE_STAMP) $(PEERS_STAMP) services
	$(VENV)/bin/pytest -q -p no:cacheprovider $(ARGS)

test: lint typecheck pytest

bench: $(STAMP)
	$(PY) -m bench $(ARGS)

clean:
	rm -rf $(VENV) node_modules console/node_modules omnirelay/console/static/vendor .mypy_cache .ruff_cache .pytest_cache
