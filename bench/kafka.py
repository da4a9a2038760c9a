"""The benchmark's own broker and its Kafka tools: topic resets, bulk pre-loads, paced producing, collecting.

The tools use confluent-kafka (librdkafka, in C) so that the harness costs the box as little CPU as
possible while a system is measured. Keys are partitioned with murmur2, as the Java client, aiokafka
(and so Faust) and Quix Streams do, so pre-loaded records land where the pipeline would put them.
"""
from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from app import broker as broker_mod
from app.domain.keys import PARTITIONED_BY_SKU
from app.partitions import key_partition
from app.settings import REPO_ROOT
from app.topics import TOPIC_SPECS, topic_config
from bench.measures import acks_by_second

BENCH_HOME = REPO_ROOT / ".run" / "bench"
PORT, CONTROLLER_PORT = 39192, 39193


class BenchBroker(broker_mod.LocalBroker):
    """LocalBroker on the benchmark's ports and home (its own config rendering: one template for both)."""

    def __init__(self, home: Path = BENCH_HOME / "kafka", heap: str = "1g") -> None:
        super().__init__(home=home, port=PORT, controller_port=CONTROLLER_PORT, heap=heap)


def _producer_conf(bootstrap: str, **extra) -> dict:
    return {"bootstrap.servers": bootstrap, "partitioner": "murmur2_random", "acks": "all",
            "linger.ms": 5, "queue.buffering.max.messages": 1_000_000,
            "queue.buffering.max.kbytes": 1_048_576, **extra}


def admin(bootstrap: str) -> AdminClient:
    return AdminClient({"bootstrap.servers": bootstrap})


def list_topics(bootstrap: str) -> set[str]:
    return set(admin(bootstrap).list_topics(timeout=10).topics)


def delete_topics(bootstrap: str, predicate: Callable[[str], bool], timeout: float = 60.0) -> None:
    client = admin(bootstrap)
    doomed = [t for t in client.list_topics(timeout=10).topics if not t.startswith("__") and predicate(t)]
    if not doomed:
        return
    for future in client.delete_topics(doomed, operation_timeout=30).values():
        try:
            future.result()
        except KafkaException:
            pass
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not set(doomed) & set(client.list_topics(timeout=10).topics):
            return
        time.sleep(0.3)
    raise TimeoutError(f"topics not deleted after {timeout}s: {doomed[:5]}")


def create_topics(bootstrap: str, names: Iterable[str], partitions: int, configs: dict[str, dict] | None = None,
                  timeout: float = 60.0) -> None:
    """Create topics, retrying while a deletion of the same name is still settling."""
    client = admin(bootstrap)
    wanted = set(names)
    deadline = time.monotonic() + timeout
    while True:
        missing = wanted - set(client.list_topics(timeout=10).topics)
        if not missing:
            return
        futures = client.create_topics([NewTopic(t, partitions, 1, config=(configs or {}).get(t, {}))
                                        for t in sorted(missing)], operation_timeout=30)
        for future in futures.values():
            try:
                future.result()
            except KafkaException:
                pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"could not create {sorted(missing)[:5]}")
        time.sleep(0.5)


def reset_pipeline_topics(bootstrap: str, partitions: int) -> None:
    """A clean slate for a pipeline run: the contract topics (whose names are fixed) and every changelog."""
    contract = {s.name for s in TOPIC_SPECS}
    delete_topics(bootstrap, lambda t: t in contract or t.startswith("retail-bench") or t.startswith("pipeline-"))
    create_topics(bootstrap, contract, partitions, {s.name: topic_config(s) for s in TOPIC_SPECS})


def preload(bootstrap: str, records: Iterable[tuple], **conf) -> int:
    """Write (topic, key, value) records, or (topic, key, value, partition), as fast as the producer
    goes; returns the count. A keyed record goes where the app would send it: murmur2 of its key, of
    the SKU on inventory.movements (app/partitions.py)."""
    producer = Producer(_producer_conf(bootstrap, **{"linger.ms": 50, "batch.size": 1_000_000,
                                                     "compression.type": "none", **conf}))
    partitions: dict[str, int] = {}
    sent = 0
    for topic, key, value, *explicit in records:
        partition = explicit[0] if explicit else -1   # -1: confluent-kafka's partitioner picks
        if partition < 0 and key and topic in PARTITIONED_BY_SKU:
            if topic not in partitions:
                partitions[topic] = len(admin(bootstrap).list_topics(topic, timeout=10).topics[topic].partitions)
            partition = key_partition(topic, key, partitions[topic])
        while True:
            try:
                producer.produce(topic, value, key or None, partition=partition)
                break
            except BufferError:
                producer.poll(0.05)
        sent += 1
        if sent % 10_000 == 0:
            producer.poll(0)
    if producer.flush(120) != 0:
        raise RuntimeError("pre-load did not complete")
    return sent


def produce_at_rate(bootstrap: str, records: list[tuple[str, bytes, bytes]], rate: float,
                    ) -> tuple[float, float, list[tuple[float, float]]]:
    """Open-loop producer: record i is sent at start + i/rate whatever the consumers do.

    Returns (start, end) wall times and, per record, (when it was handed to the producer, seconds
    until the broker acknowledged it, as librdkafka measured it): a latency point whose inputs
    reached the broker late measures the harness, not the system. It catches up after a stall
    rather than slowing down.
    """
    producer = Producer(_producer_conf(bootstrap))
    acked: list[tuple[float, float]] = []

    def on_delivery(sent_at: float, error, message) -> None:
        latency = message.latency()
        if error is None and latency is not None:
            acked.append((sent_at, latency))

    start = time.time()
    for i, (topic, key, value) in enumerate(records):
        due = start + i / rate
        while (delay := due - time.time()) > 0.001:
            # Waiting in poll serves the delivery reports as they come: librdkafka measures a record's
            # latency when its report is served, so a report left until the next poll 200 records
            # later read as a 190 ms acknowledgement at 1,091 records/s.
            producer.poll(delay)
        while True:
            try:
                producer.produce(topic, value, key or None, on_delivery=functools.partial(on_delivery, time.time()))
                break
            except BufferError:
                producer.poll(0.01)
        if i % 200 == 0:
            producer.poll(0)
    end = time.time()
    producer.flush(60)
    return start, end, acked


class ProduceProbe(threading.Thread):
    """How fast the broker acknowledges one small record, every `interval` s, while a latency point
    runs: a broker starved of its core (it shares one with the harness) shows here first, while
    the worker sits idle waiting for it (BENCHMARKS.md, fourteenth session). Each record is sent
    alone (linger 0, acks=all) and waited for, so the figure is one produce round trip as the
    harness sees it (its own thread's share of the GIL included)."""

    TOPIC = "bench.probe"

    def __init__(self, bootstrap: str, interval: float = 0.05) -> None:
        super().__init__(daemon=True)
        self.bootstrap = bootstrap
        self.interval = interval
        self.acks: list[tuple[float, float]] = []   # (sent at, seconds to the acknowledgement)
        self.stopping = threading.Event()

    def run(self) -> None:
        producer = Producer(_producer_conf(self.bootstrap, **{"linger.ms": 0}))
        while not self.stopping.is_set():
            sent = time.time()
            producer.produce(self.TOPIC, b"probe")
            if producer.flush(10.0) == 0:
                self.acks.append((sent, time.time() - sent))
            self.stopping.wait(self.interval)

    def stop(self) -> None:
        self.stopping.set()
        self.join(timeout=15)

    def between(self, start: float, end: float) -> list[float]:
        """Round trips (ms) of the probes sent between two wall times."""
        return [ack * 1000 for sent, ack in self.acks if start <= sent < end]

    def by_second(self, start: float, end: float) -> list[list[float]]:
        """Round trips (ms) of the probes sent in each second from `start` to `end`."""
        return acks_by_second(self.acks, start, end)


def end_offsets(bootstrap: str, topic: str) -> dict[int, int]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "bench-offsets", "enable.auto.commit": False})
    try:
        meta = consumer.list_topics(topic, timeout=10).topics[topic]
        return {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in meta.partitions}
    finally:
        consumer.close()


@dataclass
class Collected:
    """What a collector saw: Kafka timestamps (ms) of every record, and optional ids parsed from values."""

    count: int = 0
    first_ts: int | None = None
    last_ts: int | None = None
    last_seen: float = 0.0                 # wall time the last record arrived at the collector
    ids: list[tuple[str, int]] = field(default_factory=list)  # (id, timestamp ms), when an extractor is given
    by_topic: dict[str, list[int]] = field(default_factory=dict)   # topic -> [count, first ts, last ts]


class Collector(threading.Thread):
    """Reads output topics from given offsets in a background thread and keeps counts and timestamps."""

    def __init__(self, bootstrap: str, topics: list[str], extract: Callable[[bytes], str | None] | None = None,
                 start_offsets: dict[str, dict[int, int]] | None = None) -> None:
        super().__init__(daemon=True)
        self.bootstrap = bootstrap
        self.topics = topics
        self.extract = extract
        self.start_offsets = start_offsets or {}
        self.result = Collected()
        self.stopping = threading.Event()
        self.ready = threading.Event()

    def run(self) -> None:
        consumer = Consumer({"bootstrap.servers": self.bootstrap, "group.id": f"bench-collector-{time.time_ns()}",
                             "enable.auto.commit": False, "auto.offset.reset": "earliest",
                             "fetch.wait.max.ms": 20, "topic.metadata.refresh.interval.ms": 1000})
        assignment = []
        for topic in self.topics:
            meta = None
            for _ in range(100):
                meta = consumer.list_topics(topic, timeout=10).topics.get(topic)
                if meta is not None and meta.partitions and meta.error is None:
                    break
                time.sleep(0.2)
            offsets = self.start_offsets.get(topic, {})
            assignment += [TopicPartition(topic, p, offsets.get(p, 0)) for p in meta.partitions]
        consumer.assign(assignment)
        self.ready.set()
        r = self.result
        try:
            while not self.stopping.is_set():
                batch = consumer.consume(num_messages=5000, timeout=0.1)
                if not batch:
                    continue
                now = time.time()
                for m in batch:
                    if m.error():
                        continue
                    ts = m.timestamp()[1]
                    r.count += 1
                    if r.first_ts is None or ts < r.first_ts:
                        r.first_ts = ts
                    if r.last_ts is None or ts > r.last_ts:
                        r.last_ts = ts
                    seen = r.by_topic.setdefault(m.topic(), [0, ts, ts])
                    seen[0] += 1
                    seen[1], seen[2] = min(seen[1], ts), max(seen[2], ts)
                    if self.extract is not None:
                        ident = self.extract(m.value())
                        if ident is not None:
                            r.ids.append((ident, ts))
                r.last_seen = now
        finally:
            consumer.close()

    def wait_idle(self, idle: float, timeout: float, at_least: int = 1) -> bool:
        """Block until `at_least` records were seen and none arrived for `idle` s (or the timeout)."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            r = self.result
            if r.count >= at_least and time.time() - r.last_seen >= idle:
                return True
            time.sleep(0.2)
        return False

    def stop(self) -> Collected:
        self.stopping.set()
        self.join(timeout=30)
        return self.result


def read_timestamps(bootstrap: str, topics: list[str], extract: Callable[[str, bytes], str | None],
                    timeout: float = 120.0) -> dict[str, int]:
    """Read whole topics and map an id taken from each value to its earliest record timestamp."""
    ends = {t: end_offsets(bootstrap, t) for t in topics}
    total = sum(sum(v.values()) for v in ends.values())
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"bench-reader-{time.time_ns()}",
                         "enable.auto.commit": False, "auto.offset.reset": "earliest"})
    consumer.assign([TopicPartition(t, p, 0) for t, parts in ends.items() for p in parts])
    seen: dict[str, int] = {}
    read = 0
    deadline = time.time() + timeout
    try:
        while read < total and time.time() < deadline:
            for m in consumer.consume(num_messages=10000, timeout=0.5):
                if m.error():
                    continue
                read += 1
                ident = extract(m.topic(), m.value())
                if ident is None:
                    continue
                ts = m.timestamp()[1]
                if ident not in seen or ts < seen[ident]:
                    seen[ident] = ts
    finally:
        consumer.close()
    return seen
