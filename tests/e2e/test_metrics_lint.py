"""A worker's /metrics passes `promtool check metrics` (Prometheus' own linter)."""
from __future__ import annotations

import os
import shutil
import subprocess
import urllib.request

import pytest

from app.settings import REPO_ROOT

pytestmark = pytest.mark.e2e

INSTALLER = REPO_ROOT / "deploy" / "install-promtool.sh"


def promtool_binary() -> str:
    """PROMTOOL_BIN, else promtool on PATH, else what deploy/install-promtool.sh installs; skip otherwise."""
    found = os.environ.get("PROMTOOL_BIN") or shutil.which("promtool")
    if found:
        return found
    result = subprocess.run(["bash", str(INSTALLER)], capture_output=True, text=True)
    found = shutil.which("promtool")
    if not found:
        pytest.skip(f"promtool is not installed and {INSTALLER.name} could not install it: "
                    f"{(result.stderr or result.stdout).strip()[-300:]}")
    return found


def test_metrics_pass_promtool_check(pipeline):
    promtool = promtool_binary()
    with urllib.request.urlopen(f"{pipeline.url}/metrics", timeout=10) as response:
        exposition = response.read()
    assert b"stock_sync_worker_lag" in exposition and b"stock_sync_events_in_total" in exposition
    check = subprocess.run([promtool, "check", "metrics"], input=exposition, capture_output=True)
    report = (check.stdout + check.stderr).decode(errors="replace").strip()
    assert check.returncode == 0 and not report, f"promtool check metrics:\n{report}"
