#!/usr/bin/env bash
# Install the Debian packages the tests need that are missing (bubblewrap: the python tool's sandbox; chromium:
# the console's browser tests, driven by Playwright at /usr/bin/chromium).
# Idempotent and quick when everything is there: apt-get update runs only when something must be installed.
set -eu
packages=(bubblewrap chromium)
missing=()
for pkg in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$pkg")
  fi
done
[ ${#missing[@]} -eq 0 ] && exit 0
if ! command -v apt-get >/dev/null 2>&1; then
  echo "system-deps: missing ${missing[*]} and no apt-get here; install them by hand" >&2
  exit 0
fi
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
echo "system-deps: installing ${missing[*]}"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
