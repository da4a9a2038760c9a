#!/usr/bin/env bash
# Installs Debian's Chromium for the dashboard's browser test (tests/e2e/test_dashboard.py).
# Playwright (a test dependency from PyPI) drives this system browser; it never downloads one.
# Idempotent: does nothing when a Chromium is already on PATH. Exit 0 = a browser is available.
set -euo pipefail

for bin in chromium chromium-browser google-chrome; do
  if command -v "$bin" >/dev/null 2>&1; then
    echo "chromium: $(command -v "$bin") ($("$bin" --version 2>/dev/null || echo 'version unknown'))"
    exit 0
  fi
done

if ! command -v apt-get >/dev/null 2>&1; then
  echo "install-chromium: no apt-get here; install Chromium yourself (or set CHROMIUM_BIN)" >&2
  exit 1
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    SUDO="sudo -n"
  else
    echo "install-chromium: needs root (or passwordless sudo) to apt-get install chromium" >&2
    exit 1
  fi
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >/dev/null
echo "chromium: $(command -v chromium) ($(chromium --version))"
