"""The local Kafka broker launcher against a real broker: start, produce/consume, transactions, restarts."""
from __future__ import annotations

import asyncio
import socket
import time
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from app.broker import BrokerError, LocalBroker
from tests.e2e.harness import free_ports

pytestmark = pytest.mark.e2e

TOPIC = "broker-smoke"


async def _create_topic(bootstrap: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(TOPIC, num_partitions=1, replication_factor=1)])
    finally:
        await admin.close()


async def _produce(bootstrap: str, value: bytes) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        await producer.send_and_wait(TOPIC, value, key=b"k")
    finally:
        await producer.stop()


async def _produce_in_transaction(bootstrap: str, value: bytes) -> None:
    # start() runs InitProducerId against the transaction coordinator: the part a one-node
    # cluster gets wrong when the transaction state log wants more replicas than there are brokers.
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, transactional_id="broker-smoke-tx")
    await producer.start()
    try:
        async with producer.transaction():
            await producer.send_and_wait(TOPIC, value, key=b"k")
    finally:
        await producer.stop()


async def _consume_all(bootstrap: str, expected: int, isolation: str = "read_uncommitted") -> list[bytes]:
    consumer = AIOKafkaConsumer(TOPIC, bootstrap_servers=bootstrap, group_id=None,
                                auto_offset_reset="earliest", isolation_level=isolation)
    await consumer.start()
    values: list[bytes] = []
    try:
        deadline = time.monotonic() + 30
        while len(values) < expected and time.monotonic() < deadline:
            for records in (await consumer.getmany(timeout_ms=1000)).values():
                values.extend(r.value for r in records)
    finally:
        await consumer.stop()
    return values


def test_a_port_in_use_is_named(tmp_path: Path) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        with pytest.raises(BrokerError, match=f"port {port} "):
            LocalBroker(home=tmp_path, port=port, controller_port=free_ports(1)[0]).start()


def test_a_broker_that_lost_the_race_for_its_ports_does_not_pass_for_the_one_that_won(tmp_path: Path,
                                                                                    monkeypatch) -> None:
    """Two checkouts starting brokers at once can both find a port pair free: the later JVM cannot bind,
    and the other broker answering on the port must not be taken for ours (the hostile-producer test once
    ran against, and wrote into, another checkout's broker that way)."""
    import app.broker as launcher
    port, controller_port = free_ports(2)
    winner = LocalBroker(home=tmp_path / "winner", port=port, controller_port=controller_port)
    loser = LocalBroker(home=tmp_path / "loser", port=port, controller_port=controller_port)
    try:
        winner.start()
        assert launcher.cluster_id_at(port) == winner.cluster_id() is not None
        monkeypatch.setattr(launcher, "_port_free", lambda port: True)  # the ports were free at the check
        with pytest.raises(BrokerError):
            loser.start()
        assert loser.pid() is None, "the loser is not left running"
        assert winner.is_running() and launcher.cluster_id_at(port) == winner.cluster_id()
    finally:
        loser.stop()
        winner.stop()


def test_start_produce_consume_transactions_restart_stop(tmp_path: Path) -> None:
    port, controller_port = free_ports(2)
    broker = LocalBroker(home=tmp_path / "kafka", port=port, controller_port=controller_port)
    try:
        bootstrap = broker.start()
        assert bootstrap == f"127.0.0.1:{port}"
        assert broker.is_running()
        pid = broker.pid()
        assert broker.start() == bootstrap and broker.pid() == pid, "a second start() reuses the broker"
        assert "Kafka Server started" in broker.log_file.read_text()

        asyncio.run(_create_topic(bootstrap))
        asyncio.run(_produce(bootstrap, b"plain"))
        assert asyncio.run(_consume_all(bootstrap, 1)) == [b"plain"]

        asyncio.run(_produce_in_transaction(bootstrap, b"transactional"))
        assert asyncio.run(_consume_all(bootstrap, 2, "read_committed")) == [b"plain", b"transactional"]

        broker.restart()
        assert broker.pid() != pid
        assert asyncio.run(_consume_all(bootstrap, 2, "read_committed")) == [b"plain", b"transactional"]

        broker.kill()  # a crash: the next start recovers the log without a clean shutdown marker
        assert not broker.is_running()
        broker.start()
        assert asyncio.run(_consume_all(bootstrap, 2)) == [b"plain", b"transactional"]
    finally:
        broker.stop()
    assert not broker.is_running() and not broker.pid_file.exists()
    broker.stop()  # stopping a stopped broker is fine
