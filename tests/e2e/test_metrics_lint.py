"""A worker's /metrics passes `promtool check metrics` (Prometheus' own linter)."""
from __future__ import annotations

import os
import re
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


ALERT_RULES = REPO_ROOT / "deploy" / "prometheus" / "alerts.yml"


def test_the_alert_rules_pass_promtool_and_their_own_tests():
    promtool = promtool_binary()
    for command in (["check", "rules", str(ALERT_RULES)],
                    ["test", "rules", str(ALERT_RULES.with_name("alerts_test.yml"))]):
        run = subprocess.run([promtool, *command], capture_output=True, text=True)
        assert run.returncode == 0, f"promtool {' '.join(command)}:\n{run.stdout}{run.stderr}"


def test_every_metric_the_alert_rules_use_is_one_a_worker_exports(pipeline):
    with urllib.request.urlopen(f"{pipeline.url}/metrics", timeout=10) as response:
        exposition = response.read().decode()
    # A labelled metric with no sample yet shows only its HELP and TYPE lines, a counter's without
    # its `_total`.
    declared = set(re.findall(r"^# TYPE (stock_sync_\w+) (\w+)", exposition, re.MULTILINE))
    exported = {name for name, kind in declared} | {f"{name}_total" for name, kind in declared if kind == "counter"}
    used = set(re.findall(r"\bstock_sync_\w+", ALERT_RULES.read_text()))
    assert len(used) >= 9
    assert sorted(used - exported) == []
