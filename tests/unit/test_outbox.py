"""A stage batch's outbox (app/outbox.py) and the producer that sends it in record batches
(app/kafka_transport.py, Producer.send_in_batches), without Kafka."""
from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from types import SimpleNamespace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from aiokafka.errors import MessageSizeTooLargeError
from aiokafka.producer.message_accumulator import BatchBuilder

import agents.streams as streams
from app.faust_app import app
from app.kafka_transport import Producer
from app.outbox import Outbox
from app.domain.lineage import fact_line
from app.models.records import TraceStage
from app.packs import packed, records_of

PARTITIONS = 12
AT = datetime(2026, 12, 5, tzinfo=UTC)


class Client:
    """What `send_in_batches` uses of aiokafka's producer: record batches in, one future each out."""

    def __init__(self, batch_size: int = 16384) -> None:
        self.batch_size, self.sent, self.ends = batch_size, [], {}
        self.open_when_sent = 0   # record batches handed over open: aiokafka would let them linger
        self.client = SimpleNamespace(cluster=SimpleNamespace(
            available_partitions_for_topic=lambda topic: set(range(PARTITIONS))))

    async def partitions_for(self, topic):
        return set(range(PARTITIONS))

    def create_batch(self):
        return BatchBuilder(self.batch_size, 0)

    async def send_batch(self, builder, topic, *, partition):
        self.open_when_sent += not builder.closed()
        count = builder.record_count()
        base = self.ends.get((topic, partition), 0)
        self.ends[(topic, partition)] = base + count
        self.sent.append((topic, partition, count))
        delivery = asyncio.get_running_loop().create_future()
        delivery.set_result(SimpleNamespace(offset=base))
        return delivery


def our_producer(monkeypatch, client: Client) -> Producer:
    producer = app.producer
    assert type(producer) is Producer   # the transport hands Faust our producer
    monkeypatch.setattr(producer, "_ensure_producer", lambda: client)
    return producer


def test_a_keyed_record_goes_where_aiokafkas_send_would_put_it():
    # aiokafka's own `_partition`, on the producer Faust builds for the app, with the same partitions.
    # A Faust or aiokafka upgrade that changes the partitioner breaks this test, not the routing.
    async def both() -> tuple[list, list]:
        client = app.producer._new_producer()
        client._metadata = SimpleNamespace(partitions_for_topic=lambda topic: set(range(PARTITIONS)),
                                           available_partitions_for_topic=lambda topic: set(range(PARTITIONS)))
        keys = [f"SKU-{n:05d}@STORE-{n % 97:03d}".encode() for n in range(3000)]
        theirs = [client._partition("t", None, key, b"v", key, b"v") for key in keys]
        ours = [app.producer._partition_of(key, list(range(PARTITIONS)), client, "t") for key in keys]
        await client.stop()
        return theirs, ours

    theirs, ours = asyncio.run(both())
    assert ours == theirs and len(set(ours)) == PARTITIONS


def test_a_movement_goes_to_its_skus_partition_whichever_way_it_is_sent(monkeypatch):
    # inventory.movements is keyed SKU@LOCATION and partitioned by SKU (app/domain/keys.py): every
    # location of a SKU in one partition, through the outbox and through a single send alike.
    from app.partitions import sku_partition
    client = Client()
    producer = our_producer(monkeypatch, client)
    sent_one_by_one = []

    async def fausts_send(self, topic, key, value, partition, timestamp, headers, *, transactional_id=None):
        sent_one_by_one.append((topic, key, partition))

    monkeypatch.setattr("faust.transport.drivers.aiokafka.Producer.send", fausts_send)
    outbox = Outbox(max_request_size=1 << 20)
    skus = [f"SKU-{n}" for n in range(40)]
    for sku in skus:
        for store in ("S1", "S2", "DC-EAST"):
            outbox.add("inventory.movements", f"{sku}@{store}".encode(), b"m")

    async def send():
        await outbox.send(producer)
        await producer.send("inventory.movements", b"SKU-7@S9", b"m", None, None, None)
        await producer.send("inventory.availability", b"SKU-7@S9", b"a", None, None, None)

    asyncio.run(send())
    by_sku = {sku: sku_partition(sku, PARTITIONS) for sku in skus}
    assert sorted(client.sent) == sorted(("inventory.movements", p, 3 * sum(1 for q in by_sku.values() if q == p))
                                         for p in set(by_sku.values()))
    assert sent_one_by_one == [("inventory.movements", b"SKU-7@S9", sku_partition("SKU-7", PARTITIONS)),
                               ("inventory.availability", b"SKU-7@S9", None)]   # other topics: the key's own


def test_records_go_per_partition_in_their_order_in_as_few_record_batches_as_fit(monkeypatch):
    client = Client(batch_size=400)
    producer = our_producer(monkeypatch, client)
    delivered = []
    outbox = Outbox(max_request_size=1 << 20)
    for n in range(10):
        outbox.add("changelog", f"K{n}".encode(), b"x" * 100, partition=n % 2,
                   on_delivered=lambda offset, n=n: delivered.append((n, offset)))
    outbox.add("availability", b"SKU1@S1", b"y")

    async def send():
        deliveries = await outbox.send(producer)
        await asyncio.gather(*deliveries)
        await asyncio.sleep(0)
        return deliveries

    deliveries = asyncio.run(send())
    # 5 records of ~110 bytes per partition in batches of 400 bytes: 3 + 2; the keyed one alone.
    assert sorted(client.sent) == sorted([("changelog", 0, 3), ("changelog", 0, 2), ("changelog", 1, 3),
                                          ("changelog", 1, 2), ("availability", app.producer._partition_of(
                                              b"SKU1@S1", list(range(PARTITIONS)), client, "availability"), 1)])
    assert len(deliveries) == 5
    assert client.open_when_sent == 0   # each goes as soon as the connection is free, no linger
    # each record's own offset, in its partition's order
    assert sorted(delivered) == [(0, 0), (1, 0), (2, 1), (3, 1), (4, 2), (5, 2), (6, 3), (7, 3), (8, 4), (9, 4)]
    assert outbox.records == []


def test_a_record_too_large_for_kafka_is_refused_when_queued():
    outbox = Outbox(max_request_size=1000)
    with pytest.raises(MessageSizeTooLargeError):
        outbox.add("availability", b"K", b"x" * 1000)
    assert outbox.records == []
    assert not streams.is_transient(MessageSizeTooLargeError())   # so the record that made it is rejected alone


def test_the_store_is_written_only_once_the_records_are_with_the_producer():
    class Refusing:
        async def send_in_batches(self, records):
            raise ConnectionError("producer closed")

    stored = []
    outbox = Outbox(max_request_size=1 << 20)
    outbox.add("positions-changelog", b"K", b"v", partition=3)
    outbox.after_queued(lambda: stored.append("K"))
    with pytest.raises(ConnectionError):
        asyncio.run(outbox.send(Refusing()))
    assert stored == []


class PublishingBatch:
    """A stage batch whose records publish two outputs each; a record 'bad' raises after the first."""

    def __init__(self) -> None:
        self.taken = []

    async def take(self, event) -> None:
        from agents.outputs import send_record
        await send_record("availability", event.encode(), b"first")
        if event == "bad":
            raise ValueError("after one output")
        await send_record("postings", event.encode(), b"second")
        self.taken.append(event)

    def finish(self, outbox) -> None:
        pass


def test_a_rejected_record_takes_back_what_it_queued_and_the_rest_is_sent_together():
    sent = []

    async def send(outbox):
        sent.extend((record.topic, record.key) for record in outbox.records)
        return await outbox.send(SimpleNamespace(send_in_batches=lambda records: asyncio.sleep(0, ["one delivery"])))

    rejected, deliveries = asyncio.run(streams.apply_batch(["a", "bad", "b"], PublishingBatch, send))
    assert [(event, type(error)) for event, error in rejected] == [("bad", ValueError)]
    assert sent == [("availability", b"a"), ("postings", b"a"), ("availability", b"b"), ("postings", b"b")]
    assert deliveries == ["one delivery"]


def test_a_batchs_trace_records_go_packed_per_partition_to_the_partition_of_their_keys(monkeypatch):
    client = Client(batch_size=1 << 20)
    producer = our_producer(monkeypatch, client)
    values: dict[tuple[str, int], list[bytes]] = {}
    appended: list[bytes] = []

    class Recording(BatchBuilder):   # what each record batch holds
        def append(self, *, timestamp, key, value, headers=[]):
            appended.append(value)
            return super().append(timestamp=timestamp, key=key, value=value, headers=headers)
    client.create_batch = lambda: Recording(client.batch_size, 0)
    send = client.send_batch

    async def send_batch(builder, topic, *, partition):
        values.setdefault((topic, partition), []).extend(appended)
        appended.clear()
        return await send(builder, topic, partition=partition)
    client.send_batch = send_batch

    traces = [(f"pos:T{n}".encode(), fact_line("pos", f"T{n}", TraceStage.RECEIVED, AT, {}))
              for n in range(60)]

    def partition_of(key: bytes) -> int:
        return producer._partition_of(key, list(range(PARTITIONS)), client, "internal.lineage")

    outbox = Outbox(max_request_size=1 << 20)
    for n, (key, value) in enumerate(traces):
        outbox.add("internal.lineage", key, value)
        if n == 30:   # a record sent to a partition of its own choosing is not packed
            outbox.add("internal.lineage", b"pos:T0", b'{"forget_before":"2026-12-03T00:00:00+00:00"}',
                       partition=partition_of(b"pos:T0"))
    asyncio.run(outbox.send(producer))

    unpacked = {tp: [pair for value in sent for pair in records_of(b"?", value)]
                for tp, sent in values.items()}
    # every pair in its key's partition, in the order queued; the record not packed between two packs
    for (topic, partition), pairs in unpacked.items():
        assert all(partition_of(key) == partition for key, _ in pairs if key != b"?")
        expected = [pair for pair in traces if partition_of(pair[0]) == partition]
        assert [pair for pair in pairs if pair[0] != b"?"] == expected
    assert sum(map(len, unpacked.values())) == 61   # the 60 packed, and the one not (key b"?" above)
    forget_partition = partition_of(b"pos:T0")
    assert len(values[("internal.lineage", forget_partition)]) == 3   # pack, the forget request, pack
    assert all(len(sent) <= 3 for sent in values.values())


# What the packed topics carry: trace keys and JSON lines (internal.lineage), location ids and JSON
# records (internal.finance-ledger); any text.
packable_keys = st.text(min_size=1, max_size=40).map(str.encode)
packable_values = st.one_of(
    st.lists(st.builds(lambda event, stage: fact_line("pos", event, stage, AT, {}), st.text(max_size=60),
                       st.sampled_from(list(TraceStage))), min_size=1, max_size=3).map(b"\n".join),
    st.text(max_size=300).map(str.encode))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(packable_keys, packable_values), max_size=40),
       st.integers(min_value=1, max_value=4000))
def test_packed_records_unpack_to_the_same_pairs_in_order_within_the_limit(pairs, limit):
    sent = packed(pairs, limit)
    assert [pair for key, value in sent for pair in records_of(key, value)] == pairs
    # a pack holds at most `limit` bytes of keys and values; a record larger than that goes as itself
    for key, value in sent:
        if key is None:
            assert sum(len(k) + len(v) for k, v in records_of(None, value)) <= limit
        else:
            assert (key, value) in pairs and len(key) + len(value) > limit
    assert len(sent) <= len(pairs)


def test_a_record_that_is_no_pack_is_its_own_pair():
    fact = fact_line("pos", "TX-1", TraceStage.RECEIVED, AT, {})
    assert records_of(b"pos:TX-1", fact) == [(b"pos:TX-1", fact)]
    assert records_of(b"pos:TX-1", None) == [(b"pos:TX-1", None)]
    forget = b'{"forget_before":"2026-12-03T00:00:00+00:00"}'
    assert records_of(b"pos:TX-1", forget) == [(b"pos:TX-1", forget)]
