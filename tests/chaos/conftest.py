"""Chaos fixtures: a broker of the suite's own (never the session `broker` on 19092), fresh per test."""
from __future__ import annotations

import fcntl
import os
import time

import pytest

from tests.chaos.runner import CHAOS_HOME, fresh_broker

CHAOS_PORT = int(os.environ.get("CHAOS_KAFKA_PORT", "29192"))


@pytest.fixture
def chaos_broker():
    """A wiped single-node broker on 29192/29193 (home .run/chaos/kafka): the tests restart and kill it.

    One chaos test at a time per machine: several people run `make test` on one box, and two runs
    would wipe each other's broker. The lock (.run/chaos/lock) makes a second run wait its turn.
    """
    CHAOS_HOME.mkdir(parents=True, exist_ok=True)
    with open(CHAOS_HOME / "lock", "w") as lock:
        waited = time.monotonic()
        fcntl.flock(lock, fcntl.LOCK_EX)
        waited = time.monotonic() - waited
        if waited > 1:
            print(f"\n[chaos] waited {waited:.0f}s for another chaos run on this machine")
        broker = fresh_broker(CHAOS_HOME / "kafka", CHAOS_PORT)
        try:
            yield broker
        finally:
            broker.stop()
