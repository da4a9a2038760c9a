"""Plain aiokafka helpers for the tools around the pipeline: create topics, produce, read back.

Each takes the `KafkaConnection` from Settings (TLS/SASL), or a plain bootstrap string for PLAINTEXT."""
from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import (
    CoordinatorLoadInProgressError, GroupCoordinatorNotAvailableError, TopicAlreadyExistsError,
)

from app.connection import KafkaConnection, client_kwargs, start_client
from app.domain.keys import PARTITIONED_BY_SKU
from app.partitions import key_partition
from app.topics import TOPIC_SPECS, replication_config, topic_config


async def create_topics(kafka: KafkaConnection | str, partitions: int, changelogs: Iterable[str] = (),
                        group: str | None = None, *, replication: int = 1, audit_retention_ms: int = -1) -> None:
    """Declare every contract topic (and the given table changelogs, compacted) up front.

    Producers then never auto-create a topic with other partitions, and a worker of a fresh app id
    never races its own changelog creation: Faust may snapshot the metadata while a new changelog
    has no partitions yet, crash the table's agent with PartitionsMismatch and leave the table out
    of the routing map until the next rebalance.

    It returns once every partition has a leader and `group` (a consumer group about to join) has a
    coordinator, so the first producer or consumer is not answered with retriable errors, each of
    which aiokafka logs as a WARNING or an ERROR.
    """
    admin = AIOKafkaAdminClient(**client_kwargs(kafka))
    await start_client(admin, kafka)
    try:
        existing = set(await admin.list_topics())
        wanted = [NewTopic(s.name, num_partitions=partitions, replication_factor=replication,
                           topic_configs=topic_config(s, replication, audit_retention_ms))
                  for s in TOPIC_SPECS if s.name not in existing]
        wanted += [NewTopic(name, num_partitions=partitions, replication_factor=replication,
                            topic_configs={"cleanup.policy": "compact", **replication_config(replication)})
                   for name in changelogs if name not in existing]
        if wanted:
            try:
                await admin.create_topics(wanted)
            except TopicAlreadyExistsError:
                pass
        await _await_leaders(kafka, [s.name for s in TOPIC_SPECS] + list(changelogs))
        if group is not None:
            await _await_coordinator(admin, group)
    finally:
        await admin.close()


async def _await_coordinator(admin: AIOKafkaAdminClient, group: str, timeout: float = 60.0) -> None:
    # On a fresh broker the first FindCoordinator creates __consumer_offsets; until its partition
    # for the group is loaded the answer is "not available", which a joining consumer logs as ERROR.
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        try:
            await admin.find_coordinator(group)
            return
        except (GroupCoordinatorNotAvailableError, CoordinatorLoadInProgressError):
            if loop.time() > deadline:
                raise
            await asyncio.sleep(0.2)


async def _await_leaders(kafka: KafkaConnection | str, topics: list[str]) -> None:
    """Return once every partition of `topics` has a leader that answers as one.

    A new topic's metadata can name a leader before that broker has taken the partition on; a producer
    sending then gets NotLeaderForPartitionError and logs a WARNING per partition and retry. ListOffsets
    goes to the leader and succeeds only when it really leads; aiokafka retries it quietly (DEBUG).
    """
    consumer = AIOKafkaConsumer(**client_kwargs(kafka), enable_auto_commit=False, group_id=None)
    await start_client(consumer, kafka)
    try:
        partitions: list[TopicPartition] = []
        for topic in topics:
            found = consumer.partitions_for_topic(topic)
            for _ in range(50):
                if found:
                    break
                await asyncio.sleep(0.2)
                await consumer._client.force_metadata_update()
                found = consumer.partitions_for_topic(topic)
            partitions += [TopicPartition(topic, p) for p in sorted(found or ())]
        await consumer.end_offsets(partitions)
    finally:
        await consumer.stop()


def encode(value: dict | bytes | str) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode()
    return orjson.dumps(value)


async def produce(kafka: KafkaConnection | str, events: Iterable[tuple[str, str | None, dict | bytes | str]],
                  rate: float | None = None, headers: list[tuple[str, bytes]] | None = None) -> int:
    """Send (topic, key, value) tuples, each with `headers`; with `rate`, at that many events per
    second (open loop)."""
    producer = AIOKafkaProducer(**client_kwargs(kafka), linger_ms=5, acks="all")
    await start_client(producer, kafka)
    sent = 0
    loop = asyncio.get_running_loop()
    started = loop.time()
    try:
        for topic, key, value in events:
            raw_key = key.encode() if key is not None else None
            partition = None
            if raw_key is not None and topic in PARTITIONED_BY_SKU:   # hashed from the SKU, as the app sends it
                partition = key_partition(topic, raw_key, len(await producer.partitions_for(topic)))
            await producer.send(topic, encode(value), key=raw_key, partition=partition, headers=headers)
            sent += 1
            if rate:
                ahead = started + sent / rate - loop.time()
                if ahead > 0:
                    await asyncio.sleep(ahead)
        await producer.flush()
    finally:
        await producer.stop()
    return sent


@dataclass
class Received:
    topic: str
    partition: int
    offset: int
    key: str | None
    value: dict
    timestamp_ms: int


async def read_topic(kafka: KafkaConnection | str, topic: str, *, until_idle: float = 2.0, timeout: float = 60.0,
                     min_records: int = 0, where: Callable[[Received], bool] | None = None,
                     limit: int | None = None) -> list[Received]:
    """Read a topic from the beginning until `min_records` are seen and it stays idle for `until_idle` s.

    With `where`, only the records it accepts are kept (a DLQ of millions of letters is scanned, not
    held), and with `limit` the read stops at that many."""
    consumer = AIOKafkaConsumer(**client_kwargs(kafka), enable_auto_commit=False,
                                auto_offset_reset="earliest", group_id=None)
    await start_client(consumer, kafka)
    records: list[Received] = []
    try:
        partitions = consumer.partitions_for_topic(topic)
        for _ in range(50):
            if partitions:
                break
            await asyncio.sleep(0.2)
            await consumer._client.force_metadata_update()
            partitions = consumer.partitions_for_topic(topic)
        if not partitions:
            return records
        consumer.assign([TopicPartition(topic, p) for p in partitions])
        await consumer.seek_to_beginning()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        idle_since = loop.time()
        while loop.time() < deadline:
            batch = await consumer.getmany(timeout_ms=200)
            got = False
            for messages in batch.values():
                for m in messages:
                    got = True
                    record = Received(m.topic, m.partition, m.offset, m.key.decode() if m.key is not None else None,
                                      orjson.loads(m.value) if m.value else {}, m.timestamp)
                    if where is None or where(record):
                        records.append(record)
            if limit is not None and len(records) >= limit:
                return records[:limit]
            if got:
                idle_since = loop.time()
            elif len(records) >= min_records and loop.time() - idle_since >= until_idle:
                break
    finally:
        await consumer.stop()
    return records
