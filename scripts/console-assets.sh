#!/usr/bin/env bash
# Copy the console's pinned browser libraries (console/package-lock.json, installed by `npm ci --prefix console`)
# into omnirelay/console/static/vendor/, where the gateway serves them at /console/vendor/. The folder is
# gitignored: a fresh clone builds it with `make serve` or `make pytest`, and the console never loads anything from
# outside at run time. Without it the usage page still shows its tables and says charts are unavailable.
set -eu
root="$(cd "$(dirname "$0")/.." && pwd)"
src="$root/console/node_modules/chart.js"
dest="$root/omnirelay/console/static/vendor"
mkdir -p "$dest"
cp "$src/dist/chart.umd.min.js" "$dest/chart.umd.min.js"
cp "$src/LICENSE.md" "$dest/chart.js.LICENSE.md"
