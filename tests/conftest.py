"""Shared fixtures: one real Kafka broker per test session, and one pipeline worker for e2e tests."""
from __future__ import annotations

import asyncio
import os
import shutil
from pathlib import Path

import pytest

from app.settings import REPO_ROOT

TEST_HOME = REPO_ROOT / ".run" / "test"


def _free(port: int) -> bool:
    import socket
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


def _free_port_pair(preferred: int) -> int:
    """`preferred` (and the next port, for the controller) if both are free, else another free pair:
    a broker left running by another checkout must not fail the suite."""
    port = preferred
    while not (_free(port) and _free(port + 1)):
        port += 2
    return port


def _free_web_ports(preferred: int) -> int:
    """A base web port whose offsets used by the e2e tests (+0, +11, +100..+103) are all free, so two
    checkouts can run the suite side by side."""
    port = preferred
    while not all(_free(port + n) for n in (0, 11, 100, 101, 102, 103)):
        port += 200
    return port


@pytest.fixture(scope="session")
def broker():
    """A real single-node Apache Kafka broker on loopback ports of its own, fresh for the session."""
    from app.broker import BrokerError, LocalBroker
    home = TEST_HOME / "kafka"
    for attempt in range(3):
        port = int(os.environ.get("TEST_KAFKA_PORT") or _free_port_pair(19092 + 2 * attempt))
        instance = LocalBroker(home=home, port=port, controller_port=port + 1)
        instance.wipe()
        try:
            bootstrap = instance.start()
            break
        except BrokerError as lost:
            # Another checkout's broker took the pair between the check and the bind: try another pair.
            if "another broker" not in str(lost) or attempt == 2 or os.environ.get("TEST_KAFKA_PORT"):
                raise
    print(f"\n[e2e] Kafka broker started on {bootstrap} (log: {instance.log_file})")
    from app.kafka_io import create_topics
    asyncio.run(create_topics(bootstrap, 8))
    yield instance
    instance.stop()


@pytest.fixture(scope="session")
def bootstrap(broker) -> str:
    return f"127.0.0.1:{broker.port}"


@pytest.fixture(scope="session")
def pipeline(bootstrap):
    """One worker shared by the e2e scenarios; each scenario uses its own SKUs and locations."""
    from tests.e2e.harness import WorkerProcess
    data = TEST_HOME / "workers" / "shared"
    shutil.rmtree(data, ignore_errors=True)
    worker = WorkerProcess(bootstrap, data, web_port=_free_web_ports(16066), app_id="e2e-shared").start()
    yield worker
    worker.stop()


@pytest.fixture(scope="session")
def erp_server():
    """A real Tryton server (the default ERP, app/erp/launcher.py) with a fresh ledger for the session.

    The database template is built once per Tryton version set into .cache/erp/ (~30 s the first
    time on a 2-core box); later sessions copy it and start in about a second."""
    from app.erp.launcher import LocalErp
    erp = LocalErp(home=TEST_HOME / "erp", port=_free_port_pair(18069))
    erp.wipe()
    url = erp.start(timeout=120)
    print(f"\n[e2e] Tryton started on {url} (log: {erp.log_file})")
    yield erp
    erp.stop()
