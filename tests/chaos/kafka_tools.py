"""Kafka plumbing of the chaos suite: a background event loop, a pausable producer, an output tracker.

The test itself is synchronous (it starts and kills processes); everything that talks to Kafka runs
on one event loop in a background thread, so production and observation go on while faults happen.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import threading
import time
from collections.abc import Coroutine, Iterable
from dataclasses import dataclass, field

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError

from app.connection import client_kwargs
from tests.chaos.oracle import MovementRef, RawInput
from tests.chaos.workload import RawRecord

AVAILABILITY, POSTINGS, DLQ = "inventory.availability", "finance.postings", "inventory.dlq"
JOURNAL_BATCHES, CHANNEL_AVAILABILITY = "finance.journal_batches", "channel.availability"
BUCKETS = ("on_hand", "reserved", "quality_control", "damaged", "in_transit")


class LoopThread:
    """One asyncio loop in a daemon thread; `run(coro)` blocks for a result, `submit` does not."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="chaos-kafka", daemon=True)
        self.thread.start()

    def submit(self, coro: Coroutine) -> concurrent.futures.Future:
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def run(self, coro: Coroutine, timeout: float | None = None):
        return self.submit(coro).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


@dataclass
class ProduceProgress:
    total: int = 0
    sent: int = 0
    retried: int = 0
    paused_for: float = 0.0
    started_at: float = 0.0   # monotonic: the first record handed to the producer
    finished_at: float = 0.0  # monotonic: the last record acknowledged


class Producer:
    """Sends raw records in order, at a rate, and can be paused (e.g. around a planned broker restart).

    A send that fails after aiokafka's own retries is sent again: its outcome is unknown, so that
    may duplicate it, which is what a real producer does and the pipeline must absorb.
    """

    def __init__(self, bootstrap: str, loop: LoopThread) -> None:
        self.bootstrap = bootstrap
        self.loop = loop
        self.gate = threading.Event()
        self.gate.set()
        self.idle = threading.Event()
        self.sending = 0  # sends in progress; a pause with none has nothing to wait for
        self._producer: AIOKafkaProducer | None = None

    async def _get(self) -> AIOKafkaProducer:
        if self._producer is None:
            self._producer = AIOKafkaProducer(**client_kwargs(self.bootstrap), acks="all", linger_ms=5,
                                              request_timeout_ms=20000, retry_backoff_ms=250)
            await self._producer.start()
        return self._producer

    def start_sending(self, records: list[RawRecord], rate: float) -> tuple[concurrent.futures.Future, ProduceProgress]:
        progress = ProduceProgress(total=len(records))
        return self.loop.submit(self._send_all(records, rate, progress)), progress

    def send(self, records: list[RawRecord], rate: float | None = None) -> ProduceProgress:
        future, progress = self.start_sending(records, rate or 0)
        future.result()
        return progress

    def pause(self, timeout: float = 180.0) -> None:
        """Stop sending and wait until what was sent is acknowledged."""
        self.idle.clear()
        self.gate.clear()
        if not self.sending:
            return  # the phase was sent in full already (a fault late in a phase)
        if not self.idle.wait(timeout):
            raise TimeoutError("producer did not drain before the pause")

    def resume(self) -> None:
        self.gate.set()

    async def _send_all(self, records: list[RawRecord], rate: float, progress: ProduceProgress) -> None:
        self.sending += 1
        try:
            await self._send_each(records, rate, progress)
        finally:
            self.sending -= 1
            self.idle.set()

    async def _send_each(self, records: list[RawRecord], rate: float, progress: ProduceProgress) -> None:
        producer = await self._get()
        pending: list[tuple[RawRecord, asyncio.Future]] = []
        started = progress.started_at = time.monotonic()
        for record in records:
            if not self.gate.is_set():
                await self._settle(pending, progress)
                pending = []
                paused = time.monotonic()
                self.idle.set()
                while not self.gate.is_set():
                    await asyncio.sleep(0.05)
                progress.paused_for += time.monotonic() - paused
                started += time.monotonic() - paused
            pending.append((record, await self._enqueue(producer, record, progress)))
            progress.sent += 1
            if len(pending) >= 64:
                await self._settle(pending, progress)
                pending = []
            if rate:
                ahead = started + progress.sent / rate - time.monotonic()
                if ahead > 0:
                    await asyncio.sleep(ahead)
        await self._settle(pending, progress)
        progress.finished_at = time.monotonic()

    async def _enqueue(self, producer: AIOKafkaProducer, record: RawRecord, progress: ProduceProgress):
        while True:
            try:
                return await producer.send(record.topic, record.value,
                                           key=record.key.encode() if record.key is not None else None,
                                           headers=record.headers())
            except KafkaError:
                progress.retried += 1
                await asyncio.sleep(0.5)

    async def _settle(self, pending: list[tuple[RawRecord, asyncio.Future]], progress: ProduceProgress) -> None:
        producer = await self._get()
        for record, future in pending:
            while True:
                try:
                    await future
                    break
                except KafkaError:
                    progress.retried += 1
                    await asyncio.sleep(0.5)
                    future = await self._enqueue(producer, record, progress)

    async def _close(self) -> None:
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None

    def close(self) -> None:
        self.loop.run(self._close(), 30)


@dataclass
class Observed:
    """What the tracker has seen so far of the outputs in one namespace."""

    max_version: dict[str, int] = field(default_factory=dict)
    availability: int = 0
    posting_ids: set[str] = field(default_factory=set)
    postings: int = 0
    dlq: int = 0
    last_output_at: float = 0.0
    # The buckets of each key's highest version, and where each dead letter's record sat: what the
    # soak run compares with the oracle while it waits for convergence.
    latest: dict[str, tuple[int, ...]] = field(default_factory=dict)
    dead_lettered: set[tuple[str, int, int]] = field(default_factory=set)
    # Which movement each posting is for, so the soak run counts the postings the oracle expects
    # (movement, kind), not distinct ids: optional kinds and re-valued postings are ids too.
    movement_refs: dict[str, MovementRef] = field(default_factory=dict)   # movement_id -> the movement
    posting_kinds: set[tuple[str, str]] = field(default_factory=set)      # (movement_id, kind)

    def expected_postings_seen(self, expected: frozenset[tuple[MovementRef, str]]) -> int:
        """How many of the postings the oracle expects, (movement, kind), have been seen. A posting
        counts once its movement's availability record has said which movement it is; extra kinds
        (the oracle's optional ones) and unexpected postings do not count, so they cannot stand in
        for an expected one that is still missing. The verdict reports them."""
        refs = self.movement_refs
        return sum(1 for movement_id, kind in self.posting_kinds
                   if movement_id in refs and (refs[movement_id], kind) in expected)


class Tracker:
    """Follows availability, postings and the DLQ from the beginning, for barriers and progress."""

    def __init__(self, bootstrap: str, loop: LoopThread, namespace: str) -> None:
        self.bootstrap = bootstrap
        self.loop = loop
        self.namespace = namespace
        self.seen = Observed()
        self.lock = threading.Lock()
        self._stop = asyncio.Event()
        self.future = loop.submit(self._follow())
        self.errors = 0

    async def _follow(self) -> None:
        consumer = AIOKafkaConsumer(**client_kwargs(self.bootstrap), enable_auto_commit=False,
                                    auto_offset_reset="earliest", group_id=None, request_timeout_ms=20000)
        await consumer.start()
        try:
            tps = []
            for topic in (AVAILABILITY, POSTINGS, DLQ):
                partitions = None
                for _ in range(100):
                    partitions = consumer.partitions_for_topic(topic)
                    if partitions:
                        break
                    await consumer._client.force_metadata_update()
                    await asyncio.sleep(0.2)
                tps += [TopicPartition(topic, p) for p in partitions or ()]
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            marker = self.namespace.encode()
            while not self._stop.is_set():
                try:
                    batch = await consumer.getmany(timeout_ms=300, max_records=5000)
                except KafkaError:
                    self.errors += 1
                    await asyncio.sleep(0.5)
                    continue
                for tp, messages in batch.items():
                    for m in messages:
                        self._observe(tp.topic, m.key, m.value, marker)
        finally:
            await consumer.stop()

    def _observe(self, topic: str, key: bytes | None, value: bytes | None, marker: bytes) -> None:
        if not value or marker not in value:
            return
        with self.lock:
            self.seen.last_output_at = time.monotonic()
            if topic == AVAILABILITY and key is not None:
                record = orjson.loads(value)
                version = record["version"]
                k = key.decode()
                if version > self.seen.max_version.get(k, 0):
                    self.seen.max_version[k] = version
                    self.seen.latest[k] = tuple(record.get(b) for b in BUCKETS)
                cause = record.get("cause")
                if cause:
                    self.seen.movement_refs[cause["movement_id"]] = MovementRef.of_availability(k, cause)
                self.seen.availability += 1
            elif topic == POSTINGS:
                posting = orjson.loads(value)
                self.seen.postings += 1
                self.seen.posting_ids.add(posting["posting_id"])
                self.seen.posting_kinds.add((posting["movement_id"], posting["kind"]))
            elif topic == DLQ:
                self.seen.dlq += 1
                letter = orjson.loads(value)
                self.seen.dead_lettered.add((letter.get("source_topic"), letter.get("partition"),
                                             letter.get("offset")))

    def behind(self, expected_versions: dict[str, int]) -> dict[str, tuple[int, int]]:
        """Keys whose highest version seen is below the expected one: key -> (seen, expected)."""
        with self.lock:
            return {k: (self.seen.max_version.get(k, 0), v) for k, v in expected_versions.items()
                    if self.seen.max_version.get(k, 0) < v}

    def expected_postings_seen(self, expected: frozenset[tuple[MovementRef, str]]) -> int:
        with self.lock:
            return self.seen.expected_postings_seen(expected)

    def snapshot(self) -> tuple[int, int, int]:
        with self.lock:
            return self.seen.availability, len(self.seen.posting_ids), self.seen.dlq

    def stop(self) -> None:
        self.loop.loop.call_soon_threadsafe(self._stop.set)
        try:
            self.future.result(30)
        except Exception:  # the tracker is an observer: its own failure must not hide the verdict
            pass


@dataclass
class OutRecord:
    topic: str
    partition: int
    offset: int
    key: str | None
    value: dict
    raw: bytes


async def read_to_end(bootstrap: str, topics: Iterable[str], *, raw_inputs: bool = False,
                      namespace: str | None = None, timeout: float = 180.0) -> list:
    """Read whole topics up to their end offsets now; RawInput (with phase headers) or OutRecord."""
    consumer = AIOKafkaConsumer(**client_kwargs(bootstrap), enable_auto_commit=False, auto_offset_reset="earliest",
                                group_id=None, max_partition_fetch_bytes=4 << 20, request_timeout_ms=30000)
    await consumer.start()
    out: list = []
    marker = namespace.encode() if namespace else None
    try:
        tps = []
        for topic in topics:
            partitions = None
            for _ in range(50):
                partitions = consumer.partitions_for_topic(topic)
                if partitions:
                    break
                await consumer._client.force_metadata_update()
                await asyncio.sleep(0.2)
            tps += [TopicPartition(topic, p) for p in sorted(partitions or ())]
        if not tps:
            return out
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        todo = {tp for tp in tps if ends[tp] > 0}
        deadline = time.monotonic() + timeout
        while todo and time.monotonic() < deadline:
            batch = await consumer.getmany(*todo, timeout_ms=500, max_records=10000)
            for tp, messages in batch.items():
                for m in messages:
                    if m.offset >= ends[tp]:
                        continue
                    if raw_inputs:
                        headers = dict(m.headers or ())
                        if marker is not None and headers.get("chaos-run") != marker:
                            continue  # another run's record
                        phase = int(headers.get("chaos-phase", b"-1"))
                        bad = headers.get("chaos-bad")
                        out.append(RawInput(m.topic, m.partition, m.offset,
                                            m.key.decode() if m.key is not None else None, m.value or b"", phase,
                                            bad.decode() if bad else None))
                    elif marker is None or (m.value and marker in m.value):
                        out.append(OutRecord(m.topic, m.partition, m.offset,
                                             m.key.decode() if m.key is not None else None,
                                             orjson.loads(m.value) if m.value else {}, m.value or b""))
            for tp in list(todo):
                if await consumer.position(tp) >= ends[tp]:
                    todo.discard(tp)
        if todo:
            raise TimeoutError(f"could not read {sorted(map(str, todo))} to their end within {timeout}s")
    finally:
        await consumer.stop()
    return out


async def count_keys(bootstrap: str, topic: str) -> int:
    """Distinct keys in a topic (for the master-data changelogs)."""
    records = await read_to_end(bootstrap, [topic])
    return len({r.key for r in records})


def group_by_partition_order(records: list[RawInput]) -> list[RawInput]:
    """Phase by phase, each partition's records in log order: the per-key order the pipeline sees."""
    return sorted(records, key=lambda r: (r.phase, r.topic, r.partition, r.offset))


async def group_lag(bootstrap: str, group_id: str,
                    topics: Iterable[str] = ()) -> dict[str, dict[int, tuple[int, int]]]:
    """Committed and end offset of every partition the group committed, and of every partition of
    `topics` (committed -1 when the group never committed it), by topic."""
    from aiokafka.admin import AIOKafkaAdminClient
    admin = AIOKafkaAdminClient(**client_kwargs(bootstrap), request_timeout_ms=20000)
    consumer = AIOKafkaConsumer(**client_kwargs(bootstrap), group_id=None, enable_auto_commit=False)
    await admin.start()
    await consumer.start()
    try:
        committed = {tp: meta.offset for tp, meta in (await admin.list_consumer_group_offsets(group_id)).items()}
        for topic in topics:
            for p in consumer.partitions_for_topic(topic) or ():
                committed.setdefault(TopicPartition(topic, p), -1)
        tps = list(committed)
        ends = await consumer.end_offsets(tps) if tps else {}
        lag: dict[str, dict[int, tuple[int, int]]] = {}
        for tp, offset in committed.items():
            lag.setdefault(tp.topic, {})[tp.partition] = (offset, ends.get(tp, -1))
        return lag
    finally:
        await consumer.stop()
        await admin.close()


def lagging(lag: dict[str, dict[int, tuple[int, int]]]) -> dict[str, dict[int, int]]:
    return {topic: {p: end - max(off, 0) for p, (off, end) in parts.items() if end - max(off, 0) > 0}
            for topic, parts in lag.items() if any(end - max(off, 0) > 0 for off, end in parts.values())}
