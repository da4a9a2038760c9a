"""The micro-batch record loop (agents/streams.py) and a batch's table writes (tables/store.py), without Kafka."""
from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest
from aiokafka.errors import KafkaConnectionError

import agents.streams as streams
from agents.streams import apply_batch
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

    async def finish(self) -> list:
        if self.transient_finishes:
            self.transient_finishes.pop()
            raise KafkaConnectionError("broker away")
        if any(e in self.unwritable for e in self.pending.values()):
            raise OverflowError("value cannot be written")
        self.stored.update(self.pending)
        self.written.append(dict(self.pending))
        return [f"delivery of {sorted(self.pending.items())}"]


def run(coro):
    return asyncio.run(coro)


def test_a_record_that_raises_is_rejected_alone_and_the_rest_is_written_once():
    stored, written = {}, []
    rejected, deliveries = run(apply_batch([1, 2, 3, 4], lambda: CountingBatch(stored, written, bad={3})))
    assert [(event, type(error)) for event, error in rejected] == [(3, ValueError)]
    assert stored == {1: 1, 0: 6}
    assert written == [{1: 1, 0: 6}]   # one write for the whole batch
    assert len(deliveries) == 1


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


def test_a_batch_is_what_arrived_meanwhile_in_order_and_bounded(monkeypatch):
    async def arriving(_acking):
        for event in range(7):
            yield event
        await asyncio.sleep(0.05)   # a pause: what came before it is one batch
        for event in range(7, 10):
            yield event

    monkeypatch.setattr(streams, "_in_order", arriving)

    async def collect():
        seen = []
        async for batch in streams._batches(None, max_records=4):
            seen.append(batch)
            await asyncio.sleep(0.01)   # the stage at work: more records arrive meanwhile
            if sum(len(b) for b in seen) == 10:
                break
        return seen

    batches = run(collect())
    assert [e for batch in batches for e in batch] == list(range(10))
    assert all(1 <= len(batch) <= 4 for batch in batches)
    assert len(batches) < 10   # records that arrived during a batch went together


def test_a_record_reaching_an_idle_stage_is_handed_over_without_waiting_for_more(monkeypatch):
    async def one_then_quiet(_acking):
        yield "sale"
        await asyncio.sleep(30)
        yield "never in time"

    monkeypatch.setattr(streams, "_in_order", one_then_quiet)

    async def first_batch():
        batches = streams._batches(None, max_records=1000)
        try:
            return await asyncio.wait_for(batches.__anext__(), 1.0)
        finally:
            await batches.aclose()

    assert run(first_batch()) == ["sale"]


# --- BatchWrites -----------------------------------------------------------------------------------

class FakeStore:
    def __init__(self, rows: dict[int, dict[bytes, bytes]]) -> None:
        self.rows, self.reads, self.persisted, self.batches = rows, 0, {}, []

    def read(self, partition, key):
        self.reads += 1
        return self.rows.get(partition, {}).get(key)

    def get(self, key):
        self.reads += 1
        return next((rows[key] for rows in self.rows.values() if key in rows), None)

    def write_changes(self, partition, changes):
        self.batches.append((partition, dict(changes)))
        for key, value in changes.items():
            if value is None:
                self.rows.get(partition, {}).pop(key, None)
            else:
                self.rows.setdefault(partition, {})[key] = value

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


def fake_table(store: FakeStore, *, is_global: bool = False):
    topic = SimpleNamespace(get_topic_name=lambda: "app-positions-changelog")
    return SimpleNamespace(data=store, is_global=is_global, changelog_topic=topic)


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
        deliveries = await writes.write(producer.send)
        await asyncio.gather(*deliveries)
        await asyncio.sleep(0)   # done-callbacks run
        return producer

    producer = asyncio.run(write())
    assert producer.sent == [("app-positions-changelog", b"A@S1", b"5", 3), ("app-positions-changelog", b"B@S1", b"7", 3),
                             ("app-positions-changelog", b"C@S2", None, 4)]
    assert store.batches == [(3, {b"A@S1": b"5", b"B@S1": b"7"}), (4, {b"C@S2": None})]   # one WriteBatch a partition
    assert store.persisted == {3: 101, 4: 100}   # the last changelog offset of each partition, once acknowledged


def test_a_global_table_is_read_anywhere_and_its_offsets_are_not_persisted():
    store = FakeStore({0: {b"T1|SKU": b"cost"}})
    writes = BatchWrites(fake_table(store, is_global=True))
    assert writes.get(b"T1|SKU") == b"cost"
    writes.set(b"T2|SKU", b"other", 5)
    assert writes.get(b"T2|SKU") == b"other"   # a return in the same batch as its sale sees the sale

    async def write():
        deliveries = await writes.write(FakeProducer().send)
        await asyncio.gather(*deliveries)
        await asyncio.sleep(0)

    asyncio.run(write())
    assert store.rows[5] == {b"T2|SKU": b"other"} and store.persisted == {}


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
        deliveries = await writes.write(Producer().send)
        results = await asyncio.gather(*deliveries, return_exceptions=True)
        await asyncio.sleep(0)
        return results

    results = asyncio.run(write())
    assert (results[0] is failure) if failure else results[0].offset == 100
    assert store.persisted == ({} if failure else {1: 100})
    assert store.rows == {1: {b"K": b"v"}}   # RocksDB is written at once either way (RELIABILITY.md §1)
