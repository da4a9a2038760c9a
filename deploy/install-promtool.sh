#!/usr/bin/env bash
# Installs Debian's `prometheus` package for its `promtool`, which tests/e2e/test_metrics_lint.py runs
# on a worker's /metrics (`promtool check metrics`). Idempotent: does nothing when promtool is on PATH.
# Exit 0 = promtool is available; the test skips with the reason otherwise.
set -euo pipefail

if command -v promtool >/dev/null 2>&1; then
  echo "promtool: $(command -v promtool) ($(promtool --version 2>&1 | head -1))"
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "install-promtool: no apt-get here; install Prometheus' promtool yourself (or set PROMTOOL_BIN)" >&2
  exit 1
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    SUDO="sudo -n"
  else
    echo "install-promtool: needs root (or passwordless sudo) to apt-get install prometheus" >&2
    exit 1
  fi
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# The package's postinst may try to start a service; without an init system that fails harmlessly.
$SUDO apt-get install -y -qq --no-install-recommends prometheus >/dev/null
echo "promtool: $(command -v promtool) ($(promtool --version 2>&1 | head -1))"
