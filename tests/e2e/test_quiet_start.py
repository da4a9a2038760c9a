"""`make run` reads clean: its first minute logs no WARNING or ERROR (issue 17).

Runs `python -m app.cli run` as an operator would, with a broker of its own (KAFKA_PORT), its own web
port (WEB_PORT) and a run directory of its own under .run/test, so it shares nothing with the session
broker or another checkout's `make run`.
"""
from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.request

import pytest

from app.settings import REPO_ROOT
from tests.conftest import TEST_HOME, _free_port_pair, _free_web_ports

pytestmark = pytest.mark.e2e

FIRST_MINUTE = 60.0
# Text-format lines carry their level in brackets; a library logging before logging is configured
# would print bare lines, so tracebacks and retry chatter are looked for too.
NOISE = re.compile(r"\[(WARNING|ERROR|CRITICAL)\]|Traceback|NotLeaderForPartition|retrying")


def _wait_until_ready(url: str, run: subprocess.Popen, timeout: float) -> None:
    """Starting a broker and a worker takes a while on a busy 2-core box: the minute starts after."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert run.poll() is None, f"`run` exited with {run.returncode} before its worker was ready"
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(1.0)
    raise AssertionError(f"the worker of `run` was not ready within {timeout:.0f}s")


def test_first_minute_of_make_run_has_no_warnings():
    run_dir = TEST_HOME / "quiet-start"
    shutil.rmtree(run_dir, ignore_errors=True)
    run_dir.mkdir(parents=True)
    kafka_port, web_port = _free_port_pair(29092), _free_web_ports(26066)
    env = {k: v for k, v in os.environ.items() if k not in ("KAFKA_BOOTSTRAP", "DATA_DIR", "LOG_FORMAT")}
    env.update(KAFKA_PORT=str(kafka_port), WEB_PORT=str(web_port), PYTHONUNBUFFERED="1")
    log_path = run_dir / "run.log"
    with open(log_path, "wb") as log:
        run = subprocess.Popen([sys.executable, "-m", "app.cli", "run", "--run-dir", str(run_dir)],
                               cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                               start_new_session=True)
        try:
            _wait_until_ready(f"http://127.0.0.1:{web_port}/readyz", run, timeout=240)
            time.sleep(FIRST_MINUTE)  # the worker's first minute, with the simulated workload running
            assert run.poll() is None, f"`run` exited with {run.returncode}"
            before_stop = log_path.stat().st_size
        finally:
            run.send_signal(signal.SIGTERM)  # stops simulator, worker and broker in order
            try:
                run.wait(timeout=120)
            except subprocess.TimeoutExpired:
                os.killpg(run.pid, signal.SIGKILL)
    first_minute = log_path.read_bytes()[:before_stop].decode(errors="replace").splitlines()
    assert any(f"local Kafka broker on 127.0.0.1:{kafka_port}" in line for line in first_minute)
    assert any(re.match(r"simulated \d+ events", line) for line in first_minute), \
        "the simulated workload never got going:\n" + "\n".join(first_minute[-40:])
    noisy = [line for line in first_minute if NOISE.search(line)]
    assert not noisy, f"{len(noisy)} warning/error lines in the first minute (log: {log_path}):\n" + \
        "\n".join(noisy[:40])
