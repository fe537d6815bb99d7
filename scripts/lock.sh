#!/usr/bin/env bash
# Re-resolve the lock files in requirements/ from pyproject.toml's ranges (see requirements/README.md).
# Usage: scripts/lock.sh UV [uv pip compile options, e.g. --upgrade or --upgrade-package NAME]
set -euo pipefail
cd "$(dirname "$0")/.."
UV="$1"; shift
compile() { "$UV" pip compile --quiet --generate-hashes --universal --python-version 3.11 "$@"; }
compile pyproject.toml requirements/build.in --extra local --extra dev -o requirements/dev.txt "$@"
compile requirements/build.in -c requirements/dev.txt -o requirements/build.txt
compile pyproject.toml --extra local -c requirements/dev.txt -o requirements/local.txt
compile pyproject.toml -c requirements/dev.txt -o requirements/runtime.txt
