"""What one attempt at a stage batch sends: its records kept in order, handed to the producer at the end.

A loaded stage used to hand every output to aiokafka one by one (`AIOKafkaProducer.send`): per record
two coroutines, a partitioner call, a future and a done callback, about a sixth of the position
stage's profile. A stage batch now queues its outputs here while it applies its records, and `send`
gives them to the producer grouped per topic partition, as whole record batches
(`Producer.send_in_batches`, app/kafka_transport.py): one future per record batch. The whole
pipeline went from 456 to 597 raw events/s on one worker (BENCHMARKS.md).

Queueing first also makes a batch all or nothing on the way out. A record whose handling raises
takes back whatever it queued (`mark`/`take_back`), so a rejected record leaves only its dead
letter; an attempt at a batch that fails before `send` sends nothing, where records sent one by one
were already out. A record too large for Kafka is refused when it is queued, inside the handling of
the record that made it, so that record alone is rejected (a whole record batch refused by the
broker would stop the worker: agents/outputs.py, stop_if_lost).

Plain data and one call to the producer: no Faust, so the rules are unit-tested with a fake producer.
"""
from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from aiokafka.errors import MessageSizeTooLargeError
from aiokafka.record.default_records import DefaultRecordBatchBuilder

from app.packs import packed
from app.topics import PACKED_TOPICS


@dataclass(slots=True)
class OutgoingRecord:
    topic: str
    key: bytes | None
    value: bytes | None
    partition: int | None = None     # None: the key's partition, as the producer's partitioner picks it
    headers: list | None = None
    on_delivered: Callable[[int], None] | None = None   # called with the record's offset once acknowledged


class BatchProducer(Protocol):
    max_request_size: int

    async def send_in_batches(self, records: list[OutgoingRecord]) -> list[asyncio.Future]: ...


class Outbox:
    def __init__(self, max_request_size: int) -> None:
        self.max_request_size = max_request_size
        self.records: list[OutgoingRecord] = []
        self._after_queued: list[Callable[[], None]] = []

    def add(self, topic: str, key: bytes | None, value: bytes | None, partition: int | None = None,
            headers: list | None = None, on_delivered: Callable[[int], None] | None = None) -> None:
        size = DefaultRecordBatchBuilder.estimate_size_in_bytes(key, value, headers or [])
        if size > self.max_request_size:
            # The check `AIOKafkaProducer.send` makes, with the same error (not a transient one).
            raise MessageSizeTooLargeError(
                f"a record for {topic} is {size} bytes, more than the producer's max_request_size "
                f"({self.max_request_size})")
        self.records.append(OutgoingRecord(topic, key, value, partition, headers, on_delivered))

    def mark(self) -> int:
        return len(self.records)

    def take_back(self, mark: int) -> None:
        """Forget what was queued since `mark`: the record that queued it was not handled."""
        del self.records[mark:]

    def after_queued(self, action: Callable[[], None]) -> None:
        """Run `action` once every record is with the producer (a table's store write, which must
        not happen for changes whose changelog records never left: the batch is tried again)."""
        self._after_queued.append(action)

    async def send(self, producer: BatchProducer) -> list[asyncio.Future]:
        """Hand every queued record to the producer; the deliveries to wait for."""
        deliveries = await producer.send_in_batches(self.records) if self.records else []
        self.records = []
        for action in self._after_queued:
            action()
        self._after_queued.clear()
        return deliveries


def packed_runs(topic: str, partition: int, records: list[OutgoingRecord]) -> list[OutgoingRecord]:
    """One topic partition's records as the producer sends them, in their order. On a topic whose
    readers unpack packs (topics.PACKED_TOPICS), each run of records routed by their key (no
    partition of their own) is replaced by the records that pack them (app/packs.py), sent to
    `partition`, the one their keys hash to: the producer grouped them so."""
    if topic not in PACKED_TOPICS:
        return records

    def packs_of(run: list[tuple[bytes, bytes]]) -> list[OutgoingRecord]:
        return [OutgoingRecord(topic, key, value, partition) for key, value in packed(run)]
    sent: list[OutgoingRecord] = []
    run: list[tuple[bytes, bytes]] = []
    for record in records:
        if record.partition is None:
            run.append((record.key, record.value))
            continue
        sent += packs_of(run)
        sent.append(record)
        run = []
    return sent + packs_of(run)


class OneByOne:
    """A producer that has no record batches to offer (Faust's transaction manager, exactly_once):
    each record sent alone, with `send(topic, key, value, partition, timestamp, headers)`."""

    def __init__(self, producer) -> None:
        self.producer = producer

    async def send_in_batches(self, records: list[OutgoingRecord]) -> list[asyncio.Future]:
        deliveries = []
        for record in records:
            delivery = await self.producer.send(record.topic, record.key, record.value, record.partition, None,
                                                record.headers)
            if record.on_delivered is not None:
                delivery.add_done_callback(call_with_offset(record.on_delivered))
            deliveries.append(delivery)
        return deliveries


def call_with_offset(on_delivered: Callable[[int], None], index: int = 0) -> Callable[[asyncio.Future], None]:
    """A done callback for a delivery: `on_delivered` gets the offset of the record `index` places
    after the one the delivery reports (a record batch reports its first), if it was acknowledged."""
    def delivered(done: asyncio.Future) -> None:
        if not done.cancelled() and done.exception() is None:
            on_delivered(done.result().offset + index)
    return delivered
