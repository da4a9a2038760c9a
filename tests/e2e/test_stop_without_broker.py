"""A worker told to stop while its broker is gone ends within STOP_TIMEOUT (app/stop_deadline.py), and
what it had in flight is processed after the restart: every movement applied, none twice.

Before the deadline such a worker went on for minutes (the producer holds undelivered batches for
20 minutes), reconnecting, until something killed it."""
from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from app import topics as t
from app.broker import LocalBroker
from app.stop_deadline import EXIT_STOP_TIMED_OUT
from tests.e2e.harness import WorkerProcess, free_ports, read, send, wait_for_master, wait_for_versions
from tests.e2e.scenario import Scenario

pytestmark = pytest.mark.e2e

STOP_TIMEOUT = 5.0
SKUS = 100
RECEIPTS = 1000
LINES = 25   # per receipt: 25,000 movements, a drain of several seconds on one worker


@pytest.fixture
def private_broker(tmp_path: Path):
    """A broker of this test's own: it is killed half-way (the session broker serves the other tests)."""
    port, controller_port = free_ports(2)
    broker = LocalBroker(home=tmp_path / "kafka", port=port, controller_port=controller_port)
    broker.start(timeout=180)
    yield broker
    broker.stop()


def test_a_stop_during_a_broker_outage_ends_at_the_deadline_and_loses_nothing(private_broker, tmp_path):
    s = Scenario("stopdl")
    skus = [s.sku(n) for n in range(SKUS)]
    store = s.loc("S1")
    web_port = free_ports(1)[0]
    worker = WorkerProcess(private_broker.bootstrap, tmp_path / "w1", web_port, "e2e-stop-deadline",
                           STOP_TIMEOUT=str(STOP_TIMEOUT)).start(wait_ready=180)
    try:
        send(private_broker.bootstrap, [s.item(n) for n in range(SKUS)] + [s.location("S1")])
        wait_for_master(worker, skus=skus, locations=[store])
        # Receipt r holds 25 consecutive SKUs (mod 100), one unit each: every SKU is in 250 receipts.
        send(private_broker.bootstrap, [s.receipt(store, [(skus[(r * LINES + i) % SKUS], 1, "2.00") for i in range(LINES)])
                                        for r in range(RECEIPTS)])
        read(private_broker.bootstrap, t.AVAILABILITY, expect=1, timeout=60, settle=0)   # the drain has begun

        private_broker.kill()
        worker.proc.terminate()
        began = time.monotonic()
        try:
            code = worker.proc.wait(timeout=STOP_TIMEOUT + 25)
        except subprocess.TimeoutExpired:
            pytest.fail(f"the worker was still running {STOP_TIMEOUT + 25:.0f} s after SIGTERM:\n{worker.log_tail()}")
        took = time.monotonic() - began
        assert code == EXIT_STOP_TIMED_OUT, f"exit code {code} after {took:.1f} s:\n{worker.log_tail()}"
        assert STOP_TIMEOUT - 1 <= took <= STOP_TIMEOUT + 10, took
        assert "did not stop within 5 s (STOP_TIMEOUT); still waiting on" in worker.log_path.read_text()

        private_broker.start(timeout=180)
        worker.start(wait_ready=180)
        per_sku = RECEIPTS * LINES // SKUS
        latest = wait_for_versions(private_broker.bootstrap, {f"{sku}@{store}": per_sku for sku in skus},
                                   timeout=180)
        assert {key: (a["version"], a["on_hand"]) for key, a in latest.items()} == \
            {f"{sku}@{store}": (per_sku, per_sku) for sku in skus}
    finally:
        worker.kill()
