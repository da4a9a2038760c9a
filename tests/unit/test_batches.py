"""The micro-batch record loop (agents/streams.py) and a batch's table writes (tables/store.py), without Kafka."""
from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from types import SimpleNamespace

import pytest
from aiokafka.errors import KafkaConnectionError

import agents.streams as streams
from app.kafka_transport import FirstOffsets
from app.outbox import OneByOne, Outbox
from tables.decoded_cache import DecodedCache
from tables.store import BatchWrites


class CountingBatch:
    """A stage batch that sums record values per key; `bad` values raise in take, `unwritable` at finish."""

    def __init__(self, stored: dict, written: list, *, bad=(), unwritable=(), transient_finishes: list | None = None):
        self.stored, self.written = stored, written
        self.bad, self.unwritable, self.transient_finishes = bad, unwritable, transient_finishes
        self.pending: dict = {}

    async def take(self, event) -> None:
        if event in self.bad:
            raise ValueError(f"bad record {event}")
        key = event % 2
        self.pending[key] = self.pending.get(key, self.stored.get(key, 0)) + event

    def finish(self, outbox) -> None:
        if self.transient_finishes:
            self.transient_finishes.pop()
            raise KafkaConnectionError("broker away")
        if any(e in self.unwritable for e in self.pending.values()):
            raise OverflowError("value cannot be written")
        outbox.add("sums-changelog", None, str(sorted(self.pending.items())).encode())
        outbox.after_queued(lambda: (self.stored.update(self.pending), self.written.append(dict(self.pending))))


class ListProducer:
    async def send_in_batches(self, records) -> list:
        return [f"delivery of {record.value.decode()}" for record in records]


async def send_now(outbox) -> list:
    return await outbox.send(ListProducer())


def run(coro):
    return asyncio.run(coro)


def apply_batch(events, new_batch):
    return streams.apply_batch(events, new_batch, send_now)


def test_a_record_that_raises_is_rejected_alone_and_the_rest_is_written_once():
    stored, written = {}, []
    rejected, deliveries = run(apply_batch([1, 2, 3, 4], lambda: CountingBatch(stored, written, bad={3})))
    assert [(event, type(error)) for event, error in rejected] == [(3, ValueError)]
    assert stored == {1: 1, 0: 6}
    assert written == [{1: 1, 0: 6}]   # one write for the whole batch
    assert len(deliveries) == 1


def test_records_beyond_a_batchs_size_go_in_further_batches_each_on_the_state_the_last_one_wrote():
    # What a list of packs carries (agents/streams.py, each_batch with unpack): 25 records, 10 a batch.
    stored, written = {}, []
    rejected, deliveries = run(streams.apply_in_batches(list(range(1, 26)), lambda: CountingBatch(
        stored, written, bad={13}), send_now, max_records=10))
    assert [(event, type(error)) for event, error in rejected] == [(13, ValueError)]
    assert [sorted(batch) for batch in written] == [[0, 1], [0, 1], [0, 1]]   # three batches, one write each
    assert stored == {0: sum(range(2, 26, 2)), 1: sum(range(1, 26, 2)) - 13}
    assert len(deliveries) == 3


def test_a_transient_error_retries_the_whole_batch_from_the_stored_state(monkeypatch):
    monkeypatch.setattr(streams, "TRANSIENT_ATTEMPTS", (0.0, 0.0))
    stored, written, failures = {0: 10}, [], ["once"]
    rejected, _ = run(apply_batch([2, 4], lambda: CountingBatch(stored, written, transient_finishes=failures)))
    assert rejected == []
    assert stored == {0: 16}   # not 22: the failed attempt's state was dropped, not applied twice


def test_a_batch_that_cannot_be_written_is_taken_apart_to_find_the_record_at_fault():
    stored, written = {}, []
    # 5 + 7 = 12 on key 1 cannot be written; alone, 5 can, then 5 + 7 still cannot: 7 is the record at fault.
    rejected, deliveries = run(apply_batch([2, 5, 7], lambda: CountingBatch(stored, written, unwritable={12})))
    assert [(event, type(error)) for event, error in rejected] == [(7, OverflowError)]
    assert stored == {0: 2, 1: 5}
    assert written == [{0: 2}, {1: 5}]
    assert len(deliveries) == 2


def test_a_lasting_transient_error_is_a_rejection_of_the_single_record(monkeypatch):
    monkeypatch.setattr(streams, "TRANSIENT_ATTEMPTS", (0.0,))
    stored, written = {}, []
    rejected, _ = run(apply_batch([2], lambda: CountingBatch(stored, written, transient_finishes=["a", "b", "c"])))
    assert [(event, type(error)) for event, error in rejected] == [(2, KafkaConnectionError)]
    assert stored == {}


# --- delivered: records taken from the agent's channel queue ---------------------------------------

class FakeConsumer:
    """What `delivered` and `ack_handled` use of Faust's consumer (app/kafka_transport.py adds the holes)."""

    def __init__(self, committed: dict | None = None) -> None:
        self._unacked_messages: set = set()
        self.stale_holes: dict = {}
        self._committed_offset = dict(committed or {})
        self.first_offsets = FirstOffsets()
        self.app = None   # set by fake_stream
        self.acked: list = []
        self.sought: list = []
        self.log = SimpleNamespace(info=lambda *args: None)

    def committed_offset(self, tp) -> int | None:
        return self._committed_offset.get(tp)

    def track_message(self, message) -> None:
        self._unacked_messages.add(message)

    def ack(self, message) -> bool:
        self._unacked_messages.discard(message)
        self.acked.append(message.offset)
        return True

    def assignment(self) -> set:
        return {("inventory.movements", 0)}

    async def seek_wait(self, offsets: dict) -> None:
        self.sought.append(offsets)


class FakeMessage:
    def __init__(self, offset: int, generation: int = 1, topic: str = "inventory.movements") -> None:
        self.topic, self.offset, self.generation_id = topic, offset, generation
        self.tp = (topic, 0)
        self.tracked, self.acked, self.refcount = False, False, 1

    def __hash__(self) -> int:
        return id(self)


class FakeEvent:
    def __init__(self, message: FakeMessage, consumer: FakeConsumer) -> None:
        self.message, self.consumer = message, consumer

    def ack(self) -> bool:
        if self.message.acked:
            return False
        self.message.acked = True
        return self.consumer.ack(self.message)


def fake_stream(committed: dict | None = None, generation: int = 1):
    consumer = FakeConsumer(committed)
    app = SimpleNamespace(consumer=consumer, consumer_generation_id=generation, should_stop=False,
                          flow_control=SimpleNamespace(is_active=lambda: True),
                          topics=SimpleNamespace(acking_topics={"inventory.movements", "raw.pos.sales"}),
                          sensors=SimpleNamespace(on_message_out=lambda *args: None),
                          monitor=SimpleNamespace(stream_inbound_time={}))
    consumer.app = app
    return SimpleNamespace(app=app, channel=SimpleNamespace(queue=asyncio.Queue()))


@pytest.fixture
def fresh_order(monkeypatch):
    monkeypatch.setattr(streams, "_order", streams.PartitionOrder())
    monkeypatch.setattr(streams.global_tables, "is_current", lambda app: True)


def put(stream, *offsets: int, generation: int = 1) -> list:
    events = [FakeEvent(FakeMessage(offset, generation), stream.app.consumer) for offset in offsets]
    for event in events:
        stream.channel.queue.put_nowait(event)
    return events


async def first_list(stream, max_records: int = 1000, wait: float = 1.0) -> list:
    lists = streams.delivered(stream, max_records)
    try:
        return await asyncio.wait_for(lists.__anext__(), wait)
    finally:
        await lists.aclose()


def offsets_of(events) -> list:
    return [event.message.offset for event in events]


def test_a_list_is_what_the_channel_holds_bounded_and_each_record_is_in_flight_until_handled(fresh_order):
    async def scenario():
        stream = fake_stream(committed={("inventory.movements", 0): 0})
        put(stream, *range(7))
        lists = streams.delivered(stream, 4)
        first, second = await lists.__anext__(), await lists.__anext__()
        await lists.aclose()
        consumer = stream.app.consumer
        assert offsets_of(first) == [0, 1, 2, 3] and offsets_of(second) == [4, 5, 6]
        assert len(consumer._unacked_messages) == 7 and consumer.acked == []   # tracked, not acked
        assert ("inventory.movements", 0) in stream.app.monitor.stream_inbound_time   # Faust's stall check sees it
        for event in first:
            streams.ack_handled(stream.app, event)
        assert consumer.acked == [0, 1, 2, 3] and len(consumer._unacked_messages) == 3

    run(scenario())


def test_an_idle_stage_gets_the_first_record_without_waiting_for_more(fresh_order):
    async def scenario():
        stream = fake_stream(committed={("inventory.movements", 0): 0})
        asyncio.get_running_loop().call_later(0.05, put, stream, 0)
        return offsets_of(await first_list(stream))

    assert run(scenario()) == [0]


def test_a_stage_with_a_linger_takes_what_came_meanwhile_in_the_same_list(fresh_order):
    # The lineage stage's records come one by one between the other stages' batches; it is not on
    # the stock path, so it waits a little after the first for a list worth a batch.
    async def scenario():
        stream = fake_stream(committed={("inventory.movements", 0): 0})
        loop = asyncio.get_running_loop()
        put(stream, 0)
        loop.call_later(0.02, put, stream, 1, 2)
        loop.call_later(0.04, put, stream, 3)
        lists = streams.delivered(stream, 1000, linger=0.1)
        started = loop.time()
        first = await lists.__anext__()
        waited = loop.time() - started
        put(stream, 4)
        second = await asyncio.wait_for(lists.__anext__(), 1.0)
        await lists.aclose()
        return offsets_of(first), waited, offsets_of(second)

    first, waited, second = run(scenario())
    assert first == [0, 1, 2, 3] and 0.09 < waited < 0.5 and second == [4]


def test_a_lingering_stage_takes_a_full_list_without_waiting_the_linger_out(fresh_order):
    async def scenario():
        stream = fake_stream(committed={("inventory.movements", 0): 0})
        loop = asyncio.get_running_loop()
        put(stream, 0)
        loop.call_later(0.02, put, stream, 1, 2, 3)
        lists = streams.delivered(stream, 4, linger=5.0)
        started = loop.time()
        first = await asyncio.wait_for(lists.__anext__(), 3.0)
        waited = loop.time() - started
        await lists.aclose()
        return offsets_of(first), waited

    first, waited = run(scenario())
    assert first == [0, 1, 2, 3] and waited < 2.0   # full after 20 ms; the next look at the queue is at 1 s


def test_a_record_fetched_before_the_rebalance_is_let_go_of_with_a_hole_not_acked(fresh_order):
    async def scenario():
        stream = fake_stream(committed={("inventory.movements", 0): 3}, generation=2)
        put(stream, 3, generation=1)
        put(stream, 3, 4, generation=2)
        handed = await first_list(stream)
        consumer = stream.app.consumer
        assert offsets_of(handed) == [3, 4]
        assert consumer.acked == [] and consumer.stale_holes == {("inventory.movements", 0): 3}

    run(scenario())


def test_a_record_ahead_of_a_missing_one_is_let_go_of_and_the_partition_read_again(fresh_order):
    async def scenario():
        stream = fake_stream(committed={("inventory.movements", 0): 10})
        put(stream, 12, 13)   # 10 and 11 have not come
        put(stream, 10, 11)   # the rewind brings them
        handed = await first_list(stream)
        consumer = stream.app.consumer
        assert offsets_of(handed) == [10, 11]
        assert consumer.sought == [{("inventory.movements", 0): 10}]   # once for the missing offset
        assert consumer._unacked_messages == {event.message for event in handed}   # 12, 13 not in flight

    run(scenario())


def test_before_this_generations_seek_the_first_record_is_taken_for_the_committed_offset(fresh_order):
    # Faust resumes the flow before it seeks the stream partitions after a rebalance, and has forgotten
    # their committed offsets meanwhile: the fetcher reads from the broker's commit (261 here). The
    # partition's first offset, sought when it had no commit yet two generations ago, is stale.
    async def scenario():
        stream = fake_stream(generation=3)
        consumer = stream.app.consumer
        consumer.first_offsets.sought(1, {("inventory.movements", 0): 0})
        put(stream, 261, 262, generation=3)
        handed = await first_list(stream)
        assert offsets_of(handed) == [261, 262] and consumer.sought == []   # not read again from 0
        # Once sought in this generation, a partition never committed starts at its first offset, and
        # one with a commit at its committed offset.
        consumer.first_offsets.sought(3, consumer.first_offsets.offsets)
        assert streams.next_to_process(consumer, ("inventory.movements", 0)) == 0
        committed = fake_stream(committed={("inventory.movements", 0): 263}, generation=3).app.consumer
        committed.first_offsets = consumer.first_offsets
        assert streams.next_to_process(committed, ("inventory.movements", 0)) == 263

    run(scenario())


def test_a_rebalance_beginning_while_a_list_is_in_hand_lets_the_unhandled_rest_go(fresh_order):
    handled = []

    async def scenario():
        stream = fake_stream(committed={("inventory.movements", 0): 0})
        put(stream, 0, 1, 2)
        app = stream.app

        async def handle(event):
            handled.append(event.message.offset)
            app.consumer_generation_id = 2   # the group rebalances while record 0 is handled
            if len(handled) > 1:
                raise AssertionError("a record of the old generation was handled")

        task = asyncio.ensure_future(streams.each_event(stream, "test", handle))
        await asyncio.sleep(0.05)
        task.cancel()
        return app.consumer

    consumer = run(scenario())
    assert handled == [0]
    assert consumer.acked == [0]   # the handled record is acked (the real consumer lets it go: app/kafka_transport.py)
    assert consumer.stale_holes == {("inventory.movements", 0): 1}   # the lowest one let go of is the hole


# --- BatchWrites -----------------------------------------------------------------------------------

class FakeStore:
    def __init__(self, rows: dict[int, dict[bytes, bytes]]) -> None:
        self.rows, self.reads, self.persisted, self.batches = rows, 0, {}, []
        self.source_offsets: dict[int, int] = {}

    def read(self, partition, key):
        self.reads += 1
        return self.rows.get(partition, {}).get(key)

    def read_many(self, partition, keys):
        return [self.read(partition, key) for key in keys]

    def write_changes(self, partition, changes, source_offset=None):
        self.batches.append((partition, dict(changes)))
        for key, value in changes.items():
            if value is None:
                self.rows.get(partition, {}).pop(key, None)
            else:
                self.rows.setdefault(partition, {})[key] = value
        if source_offset is not None:
            self.source_offsets[partition] = source_offset

    def source_offset(self, partition):
        return self.source_offsets.get(partition)

    def items_in_partition(self, partition):
        return list(self.rows.get(partition, {}).items())

    def persist_written(self, tp, offset):
        self.persisted[tp.partition] = offset


class FakeProducer:
    def __init__(self) -> None:
        self.sent, self.offsets = [], {}

    async def send(self, topic, key, value, partition, timestamp=None, headers=None):
        offset = self.offsets.get(partition, 100)
        self.offsets[partition] = offset + 1
        self.sent.append((topic, key, value, partition))
        delivery = asyncio.get_running_loop().create_future()
        delivery.set_result(SimpleNamespace(offset=offset))
        return delivery


async def written(writes: BatchWrites, producer: FakeProducer) -> list:
    """A batch's table writes through an outbox to a producer that sends one record at a time."""
    outbox = Outbox(max_request_size=1 << 20)
    writes.write(outbox)
    return await outbox.send(OneByOne(producer))


def fake_table(store: FakeStore, changelog: str = "app-positions-changelog"):
    topic = SimpleNamespace(get_topic_name=lambda: changelog)
    return SimpleNamespace(data=store, changelog_topic=topic)


def test_batch_writes_read_their_own_changes_and_send_one_record_per_changed_key():
    store = FakeStore({3: {b"A@S1": b"1"}})
    writes = BatchWrites(fake_table(store), decode=int, encode=lambda n: str(n).encode())
    assert writes.get(b"A@S1", 3) == 1
    writes.set(b"A@S1", 2, 3)
    writes.set(b"A@S1", 5, 3)
    assert writes.get(b"A@S1", 3) == 5
    writes.set(b"B@S1", 7, 3)
    writes.set(b"C@S2", None, 4)
    assert writes.get(b"A@S1", 3) == 5 and store.reads == 1   # parsed once, then the batch's own

    async def write():
        producer = FakeProducer()
        deliveries = await written(writes, producer)
        await asyncio.gather(*deliveries)
        await asyncio.sleep(0)   # done-callbacks run
        return producer

    producer = asyncio.run(write())
    assert producer.sent == [("app-positions-changelog", b"A@S1", b"5", 3), ("app-positions-changelog", b"B@S1", b"7", 3),
                             ("app-positions-changelog", b"C@S2", None, 4)]
    assert store.batches == [(3, {b"A@S1": b"5", b"B@S1": b"7"}), (4, {b"C@S2": None})]   # one WriteBatch a partition
    assert store.persisted == {3: 101, 4: 100}   # the last changelog offset of each partition, once acknowledged


def test_the_sale_cost_sweep_forgets_expired_sales_like_a_batch_writes(monkeypatch):
    # The sale-costs table is partitioned like the positions (tables/sale_costs.py): the partition's
    # owner sends the tombstones and deletes locally, and persists the changelog offset once acknowledged.
    import agents.positions as stage
    from app.domain.sale_costs import sale_cost_value

    now, week = 2_000_000_000, 604_800
    store = FakeStore({2: {b"T1|SKU1": sale_cost_value(Decimal("7.00"), now - week - 1),
                           b"T2|SKU1": sale_cost_value(Decimal("8.00"), now - 10)},
                       3: {b"T3|SKU2": sale_cost_value(Decimal("9.00"), now - week - 1)}})
    producer = FakeProducer()
    monkeypatch.setattr(stage, "sale_costs", fake_table(store, "app-sale-costs-changelog"))
    monkeypatch.setattr(stage, "send_outbox", lambda outbox: outbox.send(OneByOne(producer)))

    assert run(stage.forget_expired_sale_costs(2, now, week)) == 1
    assert producer.sent == [("app-sale-costs-changelog", b"T1|SKU1", None, 2)]
    assert list(store.rows[2]) == [b"T2|SKU1"] and list(store.rows[3]) == [b"T3|SKU2"]   # only its partition
    assert store.persisted == {2: 100}
    assert run(stage.forget_expired_sale_costs(2, now, week)) == 0 and len(producer.sent) == 1


def test_a_value_a_batch_wrote_is_read_by_the_next_batch_without_parsing_unless_its_bytes_changed():
    parsed = []

    def decode(raw: bytes) -> dict:
        parsed.append(raw)
        return {"n": int(raw)}

    cache = DecodedCache(decode, max_bytes=1 << 20)
    store = FakeStore({2: {b"US01:S042:2026-11-27": b"1"}})

    def batch() -> BatchWrites:
        return BatchWrites(fake_table(store), decode, lambda v: str(v["n"]).encode(), cache)

    first = batch()
    ledger = first.get(b"US01:S042:2026-11-27", 2)
    first.set(b"US01:S042:2026-11-27", {"n": ledger["n"] + 1}, 2)
    asyncio.run(written(first, FakeProducer()))
    assert parsed == [b"1"]

    second = batch()
    assert second.get(b"US01:S042:2026-11-27", 2) == {"n": 2} and parsed == [b"1"]   # what the first wrote

    store.rows[2][b"US01:S042:2026-11-27"] = b"40"   # restored from the changelog, another owner's write
    assert batch().get(b"US01:S042:2026-11-27", 2) == {"n": 40} and parsed == [b"1", b"40"]

    second.set(b"US01:S042:2026-11-27", None, 2)     # deleted: nothing of it is kept
    asyncio.run(written(second, FakeProducer()))
    assert cache.bytes == 0 and batch().get(b"US01:S042:2026-11-27", 2) is None


def test_a_full_decoded_cache_lets_a_key_in_only_at_the_cost_of_keys_not_read_since_its_read_before():
    cache = DecodedCache(lambda raw: raw.decode(), max_bytes=10)
    for key in (b"a", b"b", b"c"):
        cache.decode(key, b"1234")
    assert cache.held() == [b"a", b"b"] and cache.bytes == 8   # c, read once, would push out a
    cache.decode(b"a", b"1234")      # a read again: b is now the least recently read
    cache.decode(b"c", b"1234")      # c's read before came after b's last read: b goes
    assert cache.held() == [b"a", b"c"]
    cache.decode(b"b", b"1234")      # b's read before came before a's last read: b stays out
    assert cache.held() == [b"a", b"c"]


def test_a_record_the_cache_holds_keeps_its_place_when_written_bigger_at_the_least_recently_reads_cost():
    cache = DecodedCache(lambda raw: raw.decode(), max_bytes=10)
    cache.decode(b"a", b"1234")
    cache.decode(b"b", b"1234")
    cache.remember(b"b", b"1234567", "1234567")
    assert cache.held() == [b"b"] and cache.bytes == 7
    cache.remember(b"e", b"x" * 11, "too big")
    assert b"e" not in cache.held() and cache.bytes == 7


def test_batches_that_read_more_keys_in_turn_than_the_cache_holds_find_the_ones_it_kept():
    parsed = []

    def decode(raw: bytes) -> str:
        parsed.append(raw)
        return raw.decode()

    cache = DecodedCache(decode, max_bytes=40)   # 10 records of 4 bytes
    days = [f"US01:S{store:03}:2026-12-05".encode() for store in range(25)]
    for batch in range(20):
        parsed.clear()
        for day in days:
            assert cache.decode(day, b"1234") == "1234"
        assert len(parsed) == (25 if batch == 0 else 15)   # least recently read first: all 25 every time


def test_the_decoded_cache_remembers_when_a_bounded_number_of_keys_were_read():
    cache = DecodedCache(lambda raw: raw.decode(), max_bytes=40)
    for n in range(5_000):
        cache.decode(str(n).encode(), b"1234")
    assert len(cache.held()) == 10 and cache.reads_remembered() == 1024 + 4 * 10


@pytest.mark.parametrize("failure", [None, RuntimeError("lost")])
def test_the_changelog_offset_is_persisted_only_once_the_broker_has_the_record(failure):
    class Producer(FakeProducer):
        async def send(self, *args):
            delivery = await super().send(*args)
            if failure is not None:
                delivery = asyncio.get_running_loop().create_future()
                delivery.set_exception(failure)
            return delivery

    store = FakeStore({})
    writes = BatchWrites(fake_table(store), decode=bytes, encode=bytes)
    writes.set(b"K", b"v", 1)

    async def write():
        deliveries = await written(writes, Producer())
        results = await asyncio.gather(*deliveries, return_exceptions=True)
        await asyncio.sleep(0)
        return results

    results = asyncio.run(write())
    assert (results[0] is failure) if failure else results[0].offset == 100
    assert store.persisted == ({} if failure else {1: 100})
    assert store.rows == {1: {b"K": b"v"}}   # RocksDB is written at once either way (RELIABILITY.md §1)


def test_the_record_handed_to_a_stage_is_the_one_faust_tables_write_for():
    # Faust's `table[key] = value` takes the partition from faust.current_event(); our loop sets it
    # (app/faust_fixes.py). A Faust upgrade that moves it breaks this test, not the master stage.
    import faust

    from app.faust_fixes import set_current_event
    event = FakeEvent(FakeMessage(0), FakeConsumer())

    async def in_a_stage():
        set_current_event(event)
        return faust.current_event()

    assert run(in_a_stage()) is event


def faust_offsets(committed: int | None, acked: list, topic: str = "internal.finance-ledger", start: int | None = None):
    """Our consumer, with only what Faust's `Consumer._new_offset` and ours read."""
    from collections import defaultdict

    from faust.types import TP
    from intervaltree import IntervalTree

    from app.kafka_transport import Consumer
    tp = TP(topic, 4)
    consumer = object.__new__(Consumer)
    first_offsets = FirstOffsets()
    first_offsets.sought(1, {tp: start} if start is not None else {})
    vars(consumer).update(_acked=defaultdict(list, {tp: list(acked)}), _gap=defaultdict(IntervalTree),
                          _acked_index=defaultdict(set, {tp: set(acked)}), stale_holes={},
                          _committed_offset=defaultdict(lambda: None, {tp: committed} if committed is not None else {}),
                          first_offsets=first_offsets, app=SimpleNamespace(consumer_generation_id=1))
    return consumer, tp


@pytest.mark.parametrize("committed, start", [(101, None), (None, 101)])
def test_a_commit_never_passes_the_next_record_while_it_is_in_flight(committed, start):
    # Batch N holds offset 101 alone and waits for its deliveries; batch N+1 (102, 103) is acked
    # first. Faust's head guard lets one unacked record through (or none is checked at all on a
    # partition never committed); ours commits nothing until 101 is acked, then all three.
    from app.topics import LEDGER
    consumer, tp = faust_offsets(committed, [102, 103], topic=LEDGER, start=start)
    assert consumer._new_offset(tp) is None
    consumer._acked[tp].append(101)
    consumer._acked_index[tp].add(101)
    assert consumer._new_offset(tp) == 104


def test_faust_alone_commits_over_one_unacked_record_at_the_head():
    # The Faust behaviour the guard above is for: a faust-streaming upgrade that fixes it fails this
    # test, and then `_head_acked` can go (app/kafka_transport.py).
    from faust.transport.consumer import Consumer as FaustConsumer
    consumer, tp = faust_offsets(101, [102, 103])
    assert FaustConsumer._new_offset(consumer, tp) == 104


def test_a_resume_while_the_flow_runs_keeps_the_queues_and_one_after_a_suspend_clears_them():
    # Recovery resumes the flow a second time while it runs (app/faust_fixes.py): mode would clear the
    # agents' queues then, dropping records fetched during the seek.
    from mode.utils.queues import FlowControlEvent, FlowControlQueue

    from app.faust_fixes import FlowControl

    async def queued_after(flow_control_class, suspend_first: bool) -> int:
        flow = flow_control_class(initially_suspended=False)
        queue = FlowControlQueue(flow_control=flow, clear_on_resume=True)
        queue.put_nowait("record")
        if suspend_first:
            flow.suspend()
        flow.resume()
        return queue.qsize()

    assert run(queued_after(FlowControl, suspend_first=False)) == 1
    assert run(queued_after(FlowControl, suspend_first=True)) == 0
    assert run(queued_after(FlowControlEvent, suspend_first=False)) == 0   # mode's own: what we avoid


def test_the_app_runs_with_our_flow_control():
    from app.faust_app import app
    from app.faust_fixes import FlowControl
    assert isinstance(app.flow_control, FlowControl)


# --- the position stage's batch: positions and the SKU's channel sums together ---------------------

@dataclass
class PositionStageOnFakes:
    """agents.positions over fake stores, its channel records collected as (channel, available, version)."""
    positions: FakeStore
    networks: FakeStore
    published: list


def position_stage_on_fake_stores(monkeypatch, stage, channels_of) -> PositionStageOnFakes:
    from app.domain.availability import ChannelFolds, PublishedVersions, PublishThrottle
    from app.domain.keys import channel_key
    from tests.factories import make_item, make_location

    fakes = PositionStageOnFakes(FakeStore({}), FakeStore({}), [])

    async def publish_channel(record) -> None:   # as in a stage batch: published once handed over
        fakes.published.append((record.channel, record.available, record.version))
        stage.channel_folds.published.published(channel_key(record.channel, record.sku), record.version)

    monkeypatch.setattr(stage, "positions", SimpleNamespace(table=fake_table(fakes.positions)))
    monkeypatch.setattr(stage, "networks", SimpleNamespace(table=fake_table(fakes.networks)))
    monkeypatch.setattr(stage, "sale_costs", fake_table(FakeStore({})))
    monkeypatch.setattr(stage, "master_data", SimpleNamespace(item=lambda sku: make_item(sku=sku),
                                                              location=lambda loc: make_location(location_id=loc)))
    monkeypatch.setattr(stage, "channel_folds", ChannelFolds(PublishThrottle(0.0), PublishedVersions(10), channels_of,
                                                             master_generation=lambda: 0))
    monkeypatch.setattr(stage, "_publish_channel", publish_channel)
    return fakes


def receipt_record(location: str, quantity: int, offset: int, sku: str = "SKU1"):
    """A RECEIPT of `quantity` of `sku` at `location`, as the record at `offset` of partition 2."""
    from app.models.canonical import MovementType
    from tests.factories import make_movement

    movement = make_movement(movement_type=MovementType.RECEIPT, sku=sku, location_id=location,
                             quantity=quantity, source_event_id=f"ASN-{offset}", unit_price=None,
                             tax=Decimal("0"))
    return SimpleNamespace(value=movement.model_dump_json().encode(), message=SimpleNamespace(
        partition=2, offset=offset, headers=None))


def test_a_position_batch_folds_the_skus_channel_sums_in_order_writes_once_and_a_failed_record_leaves_nothing(
        monkeypatch):
    import agents.positions as stage
    from app.models.canonical import Position, SkuNetwork

    def channels_of(location: str) -> list[str]:
        if location == "BROKEN":
            raise KeyError("no master for BROKEN")   # after the position was applied in memory
        return ["web"]

    fakes = position_stage_on_fake_stores(monkeypatch, stage, channels_of)
    positions, networks, published = fakes.positions, fakes.networks, fakes.published
    receipt = receipt_record
    events = [receipt("S1", 5, 1), receipt("BROKEN", 9, 2), receipt("DC1", 4, 3), receipt("S1", 3, 4)]
    rejected, deliveries = run(apply_batch(events, stage.PositionBatch))
    assert [(event, type(error)) for event, error in rejected] == [(events[1], KeyError)]
    assert published == [("web", 5, 1), ("web", 9, 2), ("web", 12, 3)]   # 5; 5+4; 8+4
    # One WriteBatch per table and partition, one changelog record per changed key.
    assert [p for p, _ in positions.batches] == [2] and [p for p, _ in networks.batches] == [2]
    assert sorted(positions.rows[2]) == [b"SKU1@DC1", b"SKU1@S1"]   # nothing of the rejected record
    assert Position.model_validate_json(positions.rows[2][b"SKU1@S1"]).on_hand == 8
    network = SkuNetwork.model_validate_json(networks.rows[2][b"SKU1"])
    assert network.by_location == {"S1": [8, 2], "DC1": [4, 1]}
    assert network.channel_totals == {"web": 12}


@pytest.mark.parametrize("lost", ["channel records", "channel records and positions"])
def test_a_batch_read_again_after_its_network_was_written_sends_the_channel_records_a_kill_lost(
        monkeypatch, lost):
    # A worker applied a batch and the broker had the network's changelog record (and the positions',
    # or not), but not the channel records: the worker was killed. The next owner reads the batch again.
    import agents.positions as stage
    from app.domain.availability import ChannelFolds, PublishedVersions, PublishThrottle

    fakes = position_stage_on_fake_stores(monkeypatch, stage, lambda location: ["web"])
    events = [receipt_record("S1", 5, 1), receipt_record("DC1", 4, 2)]
    run(apply_batch(events, stage.PositionBatch))
    assert fakes.published == [("web", 5, 1), ("web", 9, 2)]
    fakes.published.clear()
    if lost != "channel records":
        fakes.positions.rows.clear()   # the positions' changelog records went with it: applied again
    next_owner = ChannelFolds(PublishThrottle(0.0), PublishedVersions(10), lambda location: ["web"],
                              master_generation=lambda: 0)
    monkeypatch.setattr(stage, "channel_folds", next_owner)

    run(apply_batch(events, stage.PositionBatch))
    # S1's record: its fold is in the network already, so the channel's current value goes again;
    # DC1's: sent already by this worker, nothing more.
    assert fakes.published == [("web", 9, 2)]


def test_a_channel_record_that_cannot_be_built_does_not_take_the_rest_of_the_flush_with_it(monkeypatch):
    import agents.positions as stage
    from app import metrics
    from app.domain.availability import ChannelFolds, HeldRecord, PublishedVersions, PublishThrottle

    folds = ChannelFolds(PublishThrottle(1.0), PublishedVersions(10), lambda location: ["web"],
                         master_generation=lambda: 0)
    published = []

    async def publish_channel(record) -> None:
        published.append(record)

    def broken():
        raise KeyError("location gone from the master")

    for sku, build in (("SKU1", lambda: "record of SKU1"), ("SKU2", broken), ("SKU3", lambda: "record of SKU3")):
        folds.throttle.keep(f"web:{sku}", HeldRecord(1, build))
    monkeypatch.setattr(stage, "channel_folds", folds)
    monkeypatch.setattr(stage, "_publish_channel", publish_channel)
    failed = metrics.TIMER_ERRORS.labels(timer="flush_coalesced_channels")
    failed_before = failed._value.get()

    assert run(stage.publish_due_channels(now=100.0)) == 2
    assert published == ["record of SKU1", "record of SKU3"]
    assert failed._value.get() == failed_before + 1
    assert folds.throttle.pending == {}   # the failed value lives on in the SKU network's pending, not here


def test_a_channel_record_from_the_flush_counts_as_published_only_once_the_broker_has_it(monkeypatch):
    import agents.positions as stage
    from app.domain.availability import ChannelFolds, PublishedVersions, PublishThrottle
    from app.models.records import ChannelAvailability

    folds = ChannelFolds(PublishThrottle(1.0), PublishedVersions(10), lambda location: ["web"],
                         master_generation=lambda: 0)
    monkeypatch.setattr(stage, "channel_folds", folds)

    async def scenario():
        deliveries = []

        async def publish(topic, key, record):
            deliveries.append(asyncio.get_running_loop().create_future())
            return deliveries[-1]

        monkeypatch.setattr(stage, "publish", publish)
        record = ChannelAvailability(channel="web", sku="SKU1", available=5, by_location={"S1": 5}, version=3,
                                     emitted_at=datetime(2026, 12, 5, tzinfo=UTC))
        await stage._publish_channel(record)
        assert folds.published.get("web:SKU1") is None        # handed over, not acknowledged
        deliveries[0].set_exception(RuntimeError("broker away past the delivery timeout"))
        await asyncio.sleep(0)
        assert folds.published.get("web:SKU1") is None        # never had: the next fold keeps it pending
        await stage._publish_channel(record)
        deliveries[1].set_result(SimpleNamespace(offset=41))   # the record's metadata, as aiokafka gives it
        await asyncio.sleep(0)
        assert folds.published.get("web:SKU1") == 3

        async def in_a_batch(topic, key, record):
            return None   # queued in the batch's outbox: its offsets commit after the outputs are acked

        monkeypatch.setattr(stage, "publish", in_a_batch)
        await stage._publish_channel(record.model_copy(update={"version": 4}))
        assert folds.published.get("web:SKU1") == 4

    run(scenario())


# --- The trace table, a fold of internal.lineage (agents/lineage.py, tables/restore.py) -------------

def lineage_records(at: str = "2026-12-02T10:00:00+00:00") -> list:
    """Offsets 10..14 of one partition: two events' facts (one record of two facts), a forget request."""
    def fact(event: str, stage: str) -> bytes:
        return (b'{"source_system":"pos","source_event_id":"%s","stage":"%s","at":"%s","detail":{}}'
                % (event.encode(), stage.encode(), at.encode()))
    values = [(b"pos:T1", fact("T1", "received") + b"\n" + fact("T1", "movement")),
              (b"pos:T2", fact("T2", "received")),
              (b"pos:T1", fact("T1", "applied")),
              (b"pos:T2", b'{"forget_before":"2026-12-03T00:00:00+00:00"}'),
              (b"pos:T9", b'{"forget_before":"2026-12-03T00:00:00+00:00"}')]
    return [SimpleNamespace(key=key, value=value, message=SimpleNamespace(partition=1, offset=10 + n))
            for n, (key, value) in enumerate(values)]


def test_the_lineage_stage_folds_facts_without_a_changelog_and_skips_what_its_db_already_holds(monkeypatch):
    import agents.lineage as lineage_stage

    store = FakeStore({})
    monkeypatch.setattr(lineage_stage, "lineage", fake_table(store))
    records = lineage_records()
    rejected, deliveries = run(apply_batch(records[:3], lineage_stage.LineageBatch))
    assert rejected == [] and deliveries == []   # nothing sent: no changelog records
    assert store.source_offsets == {1: 12} and store.batches[-1][0] == 1   # entries and offset, one WriteBatch
    t1 = store.rows[1][b"pos:T1"]
    assert [line.count(b'"stage"') for line in t1.split(b"\n")] == [1, 1, 1]

    # Records 10..14 again (a commit lost in a crash): 10..12 are skipped, the forget requests applied.
    run(apply_batch(records, lineage_stage.LineageBatch))
    assert store.rows[1] == {b"pos:T1": t1} and store.source_offsets == {1: 14}


def test_a_restore_folds_the_topic_into_the_same_entries_the_stage_wrote(monkeypatch):
    """What a worker taking the partition over rebuilds from internal.lineage (tables/restore.py)
    is what the stage had written, byte for byte, with the same offset."""
    import agents.lineage as lineage_stage
    from app.domain.lineage import apply_record
    from tables.restore import _Folds

    written_by_stage = FakeStore({})
    monkeypatch.setattr(lineage_stage, "lineage", fake_table(written_by_stage))
    records = lineage_records()
    run(apply_batch(records[:2], lineage_stage.LineageBatch))
    run(apply_batch(records[2:], lineage_stage.LineageBatch))

    restored = FakeStore({})
    restore = _Folds(restored, SimpleNamespace(partition=1), apply_record)
    for record in records[:3]:
        restore.add(record.key, record.value)
    restore.write(12)   # a WriteBatch every WRITE_EVERY records: the partition's restore in two
    restore = _Folds(restored, SimpleNamespace(partition=1), apply_record)
    for record in records[3:]:
        restore.add(record.key, record.value)
    assert restore.write(14) == 2
    assert restored.rows == written_by_stage.rows and restored.source_offsets == written_by_stage.source_offsets


def test_packed_trace_records_fold_into_the_entries_their_pairs_make_one_by_one_in_the_stage_and_a_restore(
        monkeypatch):
    """A stage batch's trace records go packed per partition (app/packs.py): the
    lineage stage and a restore fold a pack's pairs as if each had been a record of its own."""
    import agents.lineage as lineage_stage
    from app.packs import packed, records_of
    from tables.lineage import FOLDED_FROM
    from tables.names import LINEAGE
    from tables.restore import _Folds

    pairs = [(record.key, record.value) for record in lineage_records()]
    as_records = [*packed(pairs[:2]), pairs[2], *packed(pairs[3:])]   # a pack, a record alone, a pack
    packs = [SimpleNamespace(key=key, value=value, message=SimpleNamespace(partition=1, offset=20 + n))
             for n, (key, value) in enumerate(as_records)]
    assert [key for key, _ in as_records] == [None, pairs[2][0], None]

    one_by_one, from_packs, restored = FakeStore({}), FakeStore({}), FakeStore({})
    monkeypatch.setattr(lineage_stage, "lineage", fake_table(one_by_one))
    run(apply_batch(lineage_records(), lineage_stage.LineageBatch))
    monkeypatch.setattr(lineage_stage, "lineage", fake_table(from_packs))
    run(apply_batch(packs[:2], lineage_stage.LineageBatch))
    run(apply_batch(packs, lineage_stage.LineageBatch))   # read again after a lost commit: 20, 21 skipped
    assert from_packs.rows == one_by_one.rows and from_packs.rows[1]
    assert from_packs.source_offsets == {1: 22}

    assert FOLDED_FROM[LINEAGE].records_of is records_of
    restore = _Folds(restored, SimpleNamespace(partition=1), FOLDED_FROM[LINEAGE].fold, records_of)
    for record in packs:
        restore.add(record.key, record.value)
    assert restore.write(22) == 3   # topic records, not pairs
    assert restored.rows == from_packs.rows and restored.source_offsets == from_packs.source_offsets


# --- the finance stage's announcements of due closes ----------------------------------------------

def test_a_due_close_is_announced_once_per_interval_and_old_announcements_are_forgotten(monkeypatch):
    import agents.finance as stage
    from datetime import date
    from app.domain.day_batches import DayLedger
    from app.domain.throttle import RecentKeys

    clock, sent = [100.0], []

    async def publish(topic, key, entry) -> None:
        sent.append((key, entry.close_due.location_id if entry.close_due else None))

    monkeypatch.setattr(stage, "publish", publish)
    monkeypatch.setattr(stage, "time", SimpleNamespace(monotonic=lambda: clock[0]))
    monkeypatch.setattr(stage, "_announced", RecentKeys(stage.ANNOUNCE_AGAIN_AFTER))

    def ledger(location: str) -> DayLedger:
        return DayLedger(legal_entity="US01", location_id=location, business_date=date(2026, 11, 30))

    run(stage._announce("US01|S1|2026-11-30", ledger("S1"), close_due=True))
    clock[0] = 105.0
    run(stage._announce("US01|S1|2026-11-30", ledger("S1"), close_due=True))   # on its way: not again
    run(stage._announce("US01|S2|2026-11-30", ledger("S2"), close_due=True))
    assert sent == [("S1", "S1"), ("S2", "S2")]
    clock[0] = 111.0   # S1's announcement is 11 s old: sent again, and S2's is still held
    run(stage._announce("US01|S1|2026-11-30", ledger("S1"), close_due=True))
    run(stage._announce("US01|S2|2026-11-30", ledger("S2"), close_due=True))
    assert sent[2:] == [("S1", "S1")]
    clock[0] = 200.0   # long after: announcing another day forgets both
    run(stage._announce("US01|S3|2026-11-30", ledger("S3"), close_due=True))
    assert list(stage._announced) == ["US01|S3|2026-11-30"]


def finance_stage_on_fake_stores(monkeypatch, stage) -> tuple[FakeStore, FakeStore]:
    """agents.finance with its day ledgers and statuses in fake stores (returned) and every location
    known to the master."""
    from app.domain.day_batches import DayLedger
    from tests.factories import make_location

    ledgers, statuses = FakeStore({}), FakeStore({})
    for name, store in (("day_ledgers", ledgers), ("day_statuses", statuses)):
        changelog = f"app-{name.replace('_', '-')}-changelog"
        monkeypatch.setattr(stage, name, SimpleNamespace(table=fake_table(store, changelog)))
    monkeypatch.setattr(stage, "parsed_ledgers", DecodedCache(DayLedger.model_validate_json, 1 << 20))
    known = SimpleNamespace(location=lambda loc: make_location(location_id=loc))
    monkeypatch.setattr(stage, "master_data", known)
    return ledgers, statuses


def test_a_finance_batch_keeps_each_days_status_in_line_with_its_ledger_and_a_redelivery_mends_a_lost_one(
        monkeypatch):
    import agents.finance as stage
    from datetime import UTC, datetime
    from app.domain.day_batches import DayLedger, DayStatus
    from app.models.canonical import DayClose
    from app.models.finance_ledger import LedgerEntry

    ledgers, statuses = finance_stage_on_fake_stores(monkeypatch, stage)

    today = datetime.now(UTC)   # a day older than DEDUPE_RETENTION would reopen closed (reopen_day)
    close = LedgerEntry(day_close=DayClose(location_id="S1", business_date=today.date(), transaction_id="Z-1",
                                           occurred_at=today))
    event = SimpleNamespace(value=close.to_json(), message=SimpleNamespace(partition=3, offset=7, headers=None))

    def stored() -> tuple[DayLedger, DayStatus | None]:
        [(key, raw)] = ledgers.rows[3].items()
        status = statuses.rows[3].get(key)
        return DayLedger.model_validate_json(raw), status and DayStatus.model_validate_json(status)

    rejected, deliveries = run(apply_batch([event], stage.FinanceBatch))
    assert rejected == [] and len(deliveries) == 2   # the ledger's changelog record and the status's
    ledger, status = stored()
    assert ledger.close_requested_at is not None and status.close_requested_at == ledger.close_requested_at
    assert (status.location_id, status.business_date, status.closed) == ("S1", today.date(), False)

    statuses.rows[3].clear()   # the status's changelog record was lost with the worker, the ledger's was not
    _rejected, deliveries = run(apply_batch([event], stage.FinanceBatch))   # the re-delivered record
    assert len(deliveries) == 1 and stored() == (ledger, status)   # changes no ledger, and mends the status
    _rejected, deliveries = run(apply_batch([event], stage.FinanceBatch))
    assert deliveries == [] and len(statuses.batches) == 2   # a status already in line is not written again


def test_a_pack_of_ledger_entries_is_taken_entry_by_entry_and_a_bad_entry_is_one_dead_letter_of_its_own(
        monkeypatch):
    """The finance stage reads internal.finance-ledger packed per partition (app/packs.py): each
    entry of a pack is a record of its own for the batch, so a bad one is rejected alone, with its
    own key and value in its dead letter; a pack that does not read at all is one dead letter."""
    import agents.finance as stage
    from app.models.canonical import DayClose
    from app.models.finance_ledger import LedgerEntry
    from app.packs import packed, records_of

    ledgers, _statuses = finance_stage_on_fake_stores(monkeypatch, stage)
    today = datetime.now(UTC)

    def close(location: str) -> bytes:
        return LedgerEntry(day_close=DayClose(location_id=location, business_date=today.date(),
                                              transaction_id=f"Z-{location}", occurred_at=today)).to_json()

    def record(key, value, offset):
        message = SimpleNamespace(topic="internal.finance-ledger", partition=3, offset=offset,
                                  tp=("internal.finance-ledger", 3), key=key, headers=None)
        return SimpleNamespace(key=key, value=value, message=message)
    bad = b'{"applied": 5}'
    [(_, pack)] = packed([(b"S1", close("S1")), (b"S2", bad), (b"S3", close("S3"))])
    alone = record(b"S4", close("S4"), 8)
    unreadable_pack = record(None, b'{"pack": [["S5"', 9)
    records, unreadable = streams.unpacked([record(None, pack, 7), alone, unreadable_pack], records_of)
    assert [(r.key, r.message.offset) for r in records] == [(b"S1", 7), (b"S2", 7), (b"S3", 7), (b"S4", 8)]
    assert records[3] is alone   # a record that is no pack is handed over as it came
    assert [(event, type(error).__name__) for event, error in unreadable] == [
        (unreadable_pack, "JSONDecodeError")]

    rejected, deliveries = run(apply_batch(records, stage.FinanceBatch))
    assert [(event.key, type(error).__name__) for event, error in rejected] == [(b"S2", "ValidationError")]
    assert sorted(key.split(b":")[1] for key in ledgers.rows[3]) == [b"S1", b"S3", b"S4"]

    letters = []

    async def dead_letter(message, topic, raw_value, rejection, **kwargs):
        letters.append((topic, message.offset, kwargs["key"], raw_value, rejection.error_code.value))
    monkeypatch.setattr(streams, "dead_letter", dead_letter)
    for event, error in rejected + unreadable:
        stopping = SimpleNamespace(should_stop=False)
        assert run(streams._dead_letter_until_written(stopping, event, "finance", error))
    assert letters == [("internal.finance-ledger", 7, b"S2", bad, "PROCESSING_ERROR"),
                       ("internal.finance-ledger", 9, None, b'{"pack": [["S5"', "PROCESSING_ERROR")]


def test_a_day_batch_is_with_the_broker_before_its_day_is_written_closed_and_goes_again_if_the_close_was_lost(
        monkeypatch):
    import agents.finance as stage
    from datetime import UTC, datetime
    from app.domain.day_batches import DayLedger
    from app.models.finance_ledger import CloseDue, LedgerEntry

    ledgers, _statuses = finance_stage_on_fake_stores(monkeypatch, stage)
    sent = []

    async def publish_acknowledged(topic, key, batch) -> None:
        # What the store says of the day while the batch goes out: nothing yet, or still open.
        stored = ledgers.rows.get(3, {})
        sent.append((batch.batch_id, [DayLedger.model_validate_json(raw).closed for raw in stored.values()]))

    monkeypatch.setattr(stage, "publish_acknowledged", publish_acknowledged)
    today = datetime.now(UTC).date()
    due = LedgerEntry(close_due=CloseDue(location_id="S1", business_date=today))
    event = SimpleNamespace(value=due.to_json(), message=SimpleNamespace(partition=3, offset=9, headers=None))

    rejected, _deliveries = run(apply_batch([event], stage.FinanceBatch))
    [(key, raw)] = ledgers.rows[3].items()
    assert rejected == [] and DayLedger.model_validate_json(raw).closed
    assert sent == [(f"{key.decode()}#0", [])]   # out before the day was written at all

    # Killed after the batch went out and before the ledger's changelog record did: the entry is read
    # again over the day as it was, and the same batch goes again (a duplicate by its id, not a loss).
    ledgers.rows[3].clear()
    run(apply_batch([event], stage.FinanceBatch))
    assert sent[1:] == [(f"{key.decode()}#0", [])]
    # Written closed: the entry read again sends nothing more.
    run(apply_batch([event], stage.FinanceBatch))
    assert len(sent) == 2


def test_a_busy_day_is_written_as_its_head_and_the_pages_that_filled_and_read_back_whole():
    # tables/day_ledgers.py: a store day with 5,000 postings is ~100 KB whole; a batch of 14 more
    # writes its head alone, the pages go ahead of it in the same partition, and a worker without
    # the parsed ledger (another owner, a restart) reads the same ledger back from head and pages.
    from datetime import date
    from app.domain.day_batches import DayLedger, add_posting, open_day
    from app.models.records import json_bytes
    from app.domain.keys import is_day_page_key
    from app.domain.marks import MARK_CHARS
    from tables.day_ledgers import DayLedgerWrites, whole_size
    from tests.property.test_day_pages import posting

    store = FakeStore({})
    table = fake_table(store, "app-day-ledgers-changelog")
    key, day = b"US01:S1:2026-11-27", open_day("US01", "S1", date(2026, 11, 27))
    for n in range(5_000):
        day = add_posting(day, posting(n))

    def batch(change, cache=None):
        writes = DayLedgerWrites(table, cache or DecodedCache(DayLedger.model_validate_json, 1 << 24, size=whole_size))
        ledger = writes.get(key, 3)
        writes.set(key, change(ledger), 3)
        producer = FakeProducer()
        run(written(writes, producer))
        return ledger, producer.sent

    read, sent = batch(lambda _: day)
    assert read is None and [k for _, k, _, _ in sent][-1] == key and all(p == 3 for *_, p in sent)
    assert len(sent) == 1 + 40 + 20   # the head after 40 pages of marks and 20 of listed ids
    assert len(store.rows[3][key]) < 2_000 < 90_000 < len(json_bytes(day))

    more = day
    for n in range(5_000, 5_014):
        more = add_posting(more, posting(n))
    read, sent = batch(lambda ledger: more)
    assert read == day and [k for _, k, _, _ in sent] == [key]   # read whole from head and pages; one record
    lost = key + b"\x1fpostings.45"   # a page lost with a changelog cut short: the rest still reads
    kept_page = store.rows[3].pop(lost)
    read = DayLedgerWrites(table, DecodedCache(DayLedger.model_validate_json, 1 << 24, size=whole_size)).get(key, 3)

    def marks(text: str) -> set[str]:
        return {text[at:at + MARK_CHARS] for at in range(0, len(text), MARK_CHARS)}
    lost_marks = marks(kept_page.decode())
    assert marks(read.counted_postings) >= marks(more.counted_postings) - lost_marks
    assert not marks(read.counted_postings) & lost_marks and read.posting_ids == more.posting_ids
    store.rows[3][lost] = kept_page
    read, sent = batch(lambda ledger: None)   # the day forgotten: its head and every page go
    assert read == more and len(sent) == 61 and all(value is None for _, _, value, _ in sent)
    assert not any(is_day_page_key(k) for k in store.rows[3]) and key not in store.rows[3]


def test_batches_over_more_busy_days_than_the_cache_holds_parse_only_the_days_it_does_not_keep():
    # A day is let into the parsed-ledger cache whole, with its pages read in, or not at all: let in by
    # its head alone, it then kept its place when written whole, at a held day's cost, every batch.
    from datetime import date
    from app.domain.day_batches import DayLedger, add_posting, open_day
    from tables.day_ledgers import DayLedgerWrites, stored_head, whole_size
    from tests.property.test_day_pages import posting

    store = FakeStore({})
    table = fake_table(store, "app-day-ledgers-changelog")
    keys = [f"US01:S{store_no}:2026-11-27".encode() for store_no in range(6)]
    days = {}
    for store_no, key in enumerate(keys):
        day = open_day("US01", "S1", date(2026, 11, 27))   # the same store's day under six keys
        for n in range(300):
            day = add_posting(day, posting(store_no * 1_000 + n))
        days[key] = day
    parsed = []

    def decode(raw: bytes) -> DayLedger:
        parsed.append(raw)
        return DayLedger.model_validate_json(raw)

    one_day = whole_size(stored_head(days[keys[0]]), days[keys[0]])
    cache = DecodedCache(decode, max_bytes=int(3.5 * one_day), size=whole_size)   # three busy days
    for batch in range(5):
        parsed.clear()
        writes = DayLedgerWrites(table, cache)
        for store_no, key in enumerate(keys):
            ledger = writes.get(key, 3)
            assert ledger is None if batch == 0 else ledger == days[key]
            days[key] = add_posting(days[key], posting(store_no * 1_000 + 300 + batch))
            writes.set(key, days[key], 3)
        run(written(writes, FakeProducer()))
        assert len(parsed) == (0 if batch == 0 else 3)   # the three days it keeps are not parsed


def test_a_days_pages_are_read_from_rocksdb_in_one_call_in_the_order_asked(tmp_path):
    # The real store's MultiGet (tables/restore.py, read_many), as DayLedgerWrites reads a day's pages.
    from rocksdict import Options, Rdict
    from tables.restore import BulkRestoringStore

    db = Rdict(str(tmp_path / "p3"), Options(raw_mode=True))
    try:
        db[b"US01:S1:2026-11-27\x1fpostings.1"], db[b"US01:S1:2026-11-27\x1fpostings.3"] = b"one", b"three"
        store = SimpleNamespace(_db_for_partition={3: db}.__getitem__)
        keys = [b"US01:S1:2026-11-27\x1fpostings.%d" % n for n in (3, 2, 1)]
        assert BulkRestoringStore.read_many(store, 3, keys) == [b"three", None, b"one"]
    finally:
        db.close()


def test_a_day_ledger_stored_before_pages_existed_reads_whole_and_is_written_in_pages():
    from datetime import date
    from app.domain.day_batches import DayLedger, add_posting, open_day
    from app.domain.keys import is_day_page_key
    from tables.day_ledgers import DayLedgerWrites
    from tests.property.test_day_pages import posting

    key, day = b"US01:S1:2026-11-27", open_day("US01", "S1", date(2026, 11, 27))
    for n in range(300):
        day = add_posting(day, posting(n))
    older = day.model_dump_json(exclude={"postings_marked", "pos_transactions_marked", "paged"}).encode()
    store = FakeStore({3: {key: older}})
    writes = DayLedgerWrites(fake_table(store, "app-day-ledgers-changelog"),
                             DecodedCache(DayLedger.model_validate_json, 1 << 20))
    assert writes.get(key, 3) == day
    writes.set(key, add_posting(day, posting(300)), 3)
    run(written(writes, FakeProducer()))
    assert sorted(k for k in store.rows[3] if is_day_page_key(k)) == sorted(
        key + f"\x1f{name}".encode() for name in ["postings.0", "postings.1", "postings.2"]
        + [f"ids.0.{n}" for n in range(6)])


def test_the_close_sweeps_announce_what_is_due_from_the_days_statuses(monkeypatch):
    import agents.finance as stage
    from datetime import UTC, date, datetime, timedelta
    from app.domain.day_batches import DayStatus
    from app.domain.throttle import RecentKeys
    from app.models.records import json_bytes
    from app.models.raw import LocationType
    from tests.factories import make_location

    now, sent = datetime(2026, 12, 5, 3, tzinfo=UTC), []

    async def publish(topic, key, entry) -> None:
        sent.append((key, "close" if entry.close_due else "forget"))

    monkeypatch.setattr(stage, "publish", publish)
    monkeypatch.setattr(stage, "_announced", RecentKeys(stage.ANNOUNCE_AGAIN_AFTER))
    monkeypatch.setattr(stage, "settings", SimpleNamespace(day_close_grace=5.0, late_batch_after=60.0,
                                                           dedupe_retention=604800, day_close_after=7200.0))
    monkeypatch.setattr(stage, "master_data", SimpleNamespace(location=lambda loc: make_location(
        location_id=loc, type=LocationType.DC if loc.startswith("DC") else LocationType.STORE)))

    def day(location: str, **fields) -> tuple[bytes, bytes]:
        status = DayStatus(location_id=location, business_date=date(2026, 12, 4), **fields)
        return f"US01:{location}:2026-12-04".encode(), json_bytes(status)

    ago = lambda seconds: now - timedelta(seconds=seconds)   # noqa: E731
    statuses = [day("S1", close_requested_at=ago(6)),                          # grace over: close
                day("S2", close_requested_at=ago(2)),                          # within its grace
                day("S3"),                                                     # no DAY_CLOSE yet
                day("S4", closed=True, closed_at=ago(600), close_requested_at=ago(606), late_since=ago(61)),
                day("S5", closed=True, closed_at=ago(600), late_since=ago(30)),
                day("S6", closed=True, closed_at=ago(604800)),                 # a week closed: forget
                (b"US01:S7:2026-12-04", b'{"location_id":"S7","close_requested_at":"not a time"}'),
                day("DC1")]                                                    # its day ended 3 h ago
    # S7's status cannot be read: it is logged and counted (agents/timers.py), the others still go.
    run(stage.announce_closes_after_grace(statuses, now))
    assert sent == [("S1", "close"), ("S4", "close")]
    sent.clear()
    run(stage.announce_closes_by_the_clock(statuses, now))
    assert sent == [("S6", "forget"), ("DC1", "close")]


def test_days_written_before_their_statuses_existed_are_touched_once_per_worker(monkeypatch):
    import agents.finance as stage
    from datetime import date
    from app.domain.day_batches import open_day
    from app.domain.throttle import RecentKeys
    from app.models.records import json_bytes

    sent = []

    async def publish(topic, key, entry) -> None:
        sent.append((key, entry.forget_day.location_id if entry.forget_day else None))

    old, new = b"US01:S1:2026-12-04", b"US01:S2:2026-12-04"
    monkeypatch.setattr(stage, "publish", publish)
    monkeypatch.setattr(stage, "_announced", RecentKeys(stage.ANNOUNCE_AGAIN_AFTER))
    monkeypatch.setattr(stage, "_looked_for_days_without_status", False)
    monkeypatch.setattr(stage, "day_ledgers", SimpleNamespace(table={
        old: json_bytes(open_day("US01", "S1", date(2026, 12, 4))),
        new: json_bytes(open_day("US01", "S2", date(2026, 12, 4)))}))
    monkeypatch.setattr(stage, "day_statuses", SimpleNamespace(table={new: b"{}"}))
    run(stage._touch_days_without_status())
    run(stage._touch_days_without_status())
    assert sent == [("S1", "S1")]   # a forget request: the agent reads the ledger, which writes its status
