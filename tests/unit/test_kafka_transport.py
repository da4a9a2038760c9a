"""The app's Kafka transport (app/kafka_transport.py): our consumer, built as Faust builds it but for the fetch wait and
size, and run in the app's event loop instead of a thread."""
from __future__ import annotations

import asyncio
import dataclasses
import threading
from collections import defaultdict

import pytest
from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread

import agents.positions  # noqa: F401  (registers the tables: Faust's assignor then maps changelogs)
from app import faust_app
from app.faust_app import app, settings
from app.kafka_transport import (
    SCHEME, Consumer, ConsumerInAppLoop, FirstOffsets, next_to_process, partitions_to_pause,
)
from app.settings import Settings


def consumers_built_by_us_and_by_faust():
    async def build():
        thread = app.consumer._thread
        built = (thread._create_worker_consumer(thread.transport),
                 AIOKafkaConsumerThread._create_worker_consumer(thread, thread.transport))
        for consumer in built:
            await consumer.stop()
        return built
    return asyncio.run(build())


def settings_of(obj) -> dict:
    """An aiokafka object's settings: its plain values (objects it owns by their type)."""
    plain = (str, int, float, bool, type(None))
    return {name: value if isinstance(value, plain) or (isinstance(value, (list, tuple)) and all(
                isinstance(v, (*plain, type)) for v in value)) else type(value)
            for name, value in vars(obj).items()}


def test_the_app_consumes_through_our_transport():
    assert all(url.scheme == SCHEME for url in app.conf.broker_consumer)
    assert type(app.consumer) is Consumer and isinstance(app.consumer._thread, ConsumerInAppLoop)


def test_our_consumer_is_fausts_but_for_the_fetch_wait_and_size():
    # A Faust upgrade that changes how it builds its consumer breaks this test, not a worker.
    ours, fausts = consumers_built_by_us_and_by_faust()
    our_settings, faust_settings = settings_of(ours), settings_of(fausts)
    assert our_settings.pop("_fetch_max_wait_ms") == settings.fetch_max_wait_ms < faust_settings.pop("_fetch_max_wait_ms")
    assert our_settings.pop("_fetch_min_bytes") == settings.fetch_min_bytes
    faust_settings.pop("_fetch_min_bytes")
    assert our_settings == faust_settings
    assert settings_of(ours._client) == settings_of(fausts._client)
    assert ours._partition_assignment_strategy == [app.assignor]


class Record:
    def __init__(self, topic: str, offset: int) -> None:
        from faust.types import TP
        self.tp, self.topic, self.offset = TP(topic, 0), topic, offset
        self.generation_id = app.consumer_generation_id   # as Faust stamps a fetched record


def drain(monkeypatch, fetches: list[list[Record]], on_record=None) -> tuple[list, list]:
    """Run our consumer's drainer over `fetches` (one getmany each); (offsets handed over per topic, gaps)."""
    from mode.utils.locks import Event

    consumer = app.consumer
    handed, gaps = [], []

    async def run() -> None:
        fetcher = type("Fetcher", (), {"_stopped": asyncio.Event()})()
        monkeypatch.setattr(consumer, "suspend_flow", Event())
        monkeypatch.setattr(consumer, "_stopped", asyncio.Event())
        monkeypatch.setattr(consumer, "_crashed", asyncio.Event())
        monkeypatch.setattr(consumer, "loop", asyncio.get_running_loop())
        monkeypatch.setattr(consumer, "_commit_every", None)
        monkeypatch.setattr(consumer.app.topics, "acks_enabled_for", lambda topic: True)
        remaining = list(fetches)

        async def getmany(timeout: float):
            if not remaining:
                fetcher._stopped.set()
                return
            for record in remaining.pop(0):
                yield record.tp, record

        async def callback(record) -> None:
            handed.append((record.topic, record.offset))
            if on_record is not None:
                await on_record(consumer, record)

        async def add_gap(tp, start: int, end: int) -> None:
            gaps.append((tp.topic, start, end))

        monkeypatch.setattr(consumer, "getmany", getmany)
        monkeypatch.setattr(consumer, "callback", callback)
        monkeypatch.setattr(consumer, "_add_gap", add_gap)
        await asyncio.wait_for(consumer._drain_messages(fetcher), 5)
    asyncio.run(run())
    return handed, gaps


def test_the_drainer_hands_each_fetch_over_in_order_dropping_and_gapping_as_fausts_does(monkeypatch):
    from faust.types import TP

    from app.topics import MOVEMENTS
    # Faust's drops and gaps (RELIABILITY.md §5 row 3) on a compacted topic; none on a topic whose
    # order our agents keep, where they would lose the record an agent waits for.
    monkeypatch.setattr(app.consumer, "_read_offset", defaultdict(lambda: None))
    app.consumer._read_offset[TP("master.items", 0)] = 41
    app.consumer._read_offset[TP(MOVEMENTS, 0)] = 41
    handed, gaps = drain(monkeypatch, [
        [Record("master.items", 40), Record("master.items", 41), Record(MOVEMENTS, 7)],
        [Record("master.items", 45), Record(MOVEMENTS, 3), Record(MOVEMENTS, 60)],
    ])
    assert handed == [("master.items", 41), (MOVEMENTS, 7), ("master.items", 45), (MOVEMENTS, 3), (MOVEMENTS, 60)]
    assert gaps == [("master.items", 42, 45)]
    assert app.consumer._read_offset[TP("master.items", 0)] == 45


def test_the_drainer_hands_a_fetchs_master_data_over_first_each_partition_in_order(monkeypatch):
    # A receipt fetched together with its store's master record must find the store loaded.
    from app.topics import MASTER_ITEMS, MASTER_LOCATIONS, WMS
    monkeypatch.setattr(app.consumer, "_read_offset", defaultdict(lambda: None))
    handed, _ = drain(monkeypatch, [
        [Record(WMS, 5), Record(WMS, 6), Record(MASTER_LOCATIONS, 2), Record(WMS, 7), Record(MASTER_ITEMS, 8),
         Record(MASTER_LOCATIONS, 3)],
        [Record(WMS, 8)],
    ])
    assert handed == [(MASTER_LOCATIONS, 2), (MASTER_ITEMS, 8), (MASTER_LOCATIONS, 3),
                      (WMS, 5), (WMS, 6), (WMS, 7), (WMS, 8)]


def test_master_records_left_buffered_by_a_fetch_are_taken_with_it_and_go_first(monkeypatch):
    # aiokafka stops at max_records: a receipt may be returned while its store's master record,
    # buffered from the same response, is left for the next call.
    from faust.types import TP

    from app.topics import MASTER_ITEMS, MASTER_LOCATIONS, WMS
    wms, items, locations = TP(WMS, 3), TP(MASTER_ITEMS, 1), TP(MASTER_LOCATIONS, 3)
    calls = []

    async def buffered(self, consumer, partitions, timeout=None, max_records=None):
        calls.append((sorted(partitions), timeout, max_records))
        if len(calls) == 1:   # the normal call: cut at max_records after part of the items partition
            return {wms: ["receipt"], items: ["item 7"]}
        return {items: ["item 8"], locations: ["store"]}

    monkeypatch.setattr(AIOKafkaConsumerThread, "_fetch_records", buffered)
    consumer = AssignedConsumer({wms, items, locations}, _max_poll_records=2)
    thread = app.consumer._thread
    monkeypatch.setattr(thread, "_ensure_consumer", lambda: consumer)
    # Through Faust's `getmany`, which must still fetch by `_fetch_records` for ours to run.
    records = asyncio.run(thread.getmany({wms, items, locations}, timeout=1.0))
    assert calls == [(sorted([wms, items, locations]), 1.0, 2), (sorted([items, locations]), 0, None)]
    assert list(records) == [items, locations, wms]
    assert records[items] == ["item 7", "item 8"] and records[locations] == ["store"] and records[wms] == ["receipt"]


def test_an_error_taking_the_buffered_master_records_loses_nothing_of_the_fetch(monkeypatch):
    from faust.types import TP

    from app.topics import MASTER_ITEMS, WMS
    wms, items = TP(WMS, 0), TP(MASTER_ITEMS, 0)

    async def buffered(self, consumer, partitions, timeout=None, max_records=None):
        if timeout:
            return {wms: ["receipt"]}
        raise RuntimeError("a master partition's fetch error")

    monkeypatch.setattr(AIOKafkaConsumerThread, "_fetch_records", buffered)
    consumer = AssignedConsumer({wms, items})
    # max_records=1: the fetch was full, so it may have been cut before the master records.
    records = asyncio.run(app.consumer._thread._fetch_records(consumer, {wms, items}, timeout=1.0, max_records=1))
    assert records == {wms: ["receipt"]}


def test_a_fetch_that_was_not_full_left_nothing_buffered_and_is_not_read_again(monkeypatch):
    from faust.types import TP

    from app.topics import MASTER_ITEMS, WMS
    wms, items = TP(WMS, 0), TP(MASTER_ITEMS, 0)
    calls = []

    async def buffered(self, consumer, partitions, timeout=None, max_records=None):
        calls.append(sorted(partitions))
        return {wms: ["receipt"], items: ["item"]}

    monkeypatch.setattr(AIOKafkaConsumerThread, "_fetch_records", buffered)
    consumer = AssignedConsumer({wms, items})
    records = asyncio.run(app.consumer._thread._fetch_records(consumer, {wms, items}, timeout=1.0, max_records=500))
    assert calls == [sorted([wms, items])]
    assert records == {wms: ["receipt"], items: ["item"]}


class AssignedConsumer:
    """The part of an aiokafka consumer `_fetch_records` uses: its assignment and what is paused."""

    def __init__(self, assigned, **attributes) -> None:
        from aiokafka import TopicPartition
        self.assigned = {TopicPartition(tp.topic, tp.partition) for tp in assigned}
        self.paused_partitions: set = set()
        self.__dict__.update(attributes)

    def assignment(self) -> set:
        return set(self.assigned)

    def paused(self) -> set:
        return set(self.paused_partitions)

    def pause(self, *partitions) -> None:
        self._check(partitions)
        self.paused_partitions.update(partitions)

    def resume(self, *partitions) -> None:
        self._check(partitions)
        self.paused_partitions.difference_update(partitions)

    def _check(self, partitions) -> None:
        from aiokafka import TopicPartition
        # aiokafka refuses anything but its own TopicPartition, and partitions it was not assigned.
        assert all(type(tp) is TopicPartition and tp in self.assigned for tp in partitions), partitions


async def nothing_buffered(self, consumer, partitions, timeout=None, max_records=None):
    return {}


def test_aiokafka_fetches_only_the_partitions_faust_asks_records_of(monkeypatch):
    # Faust pauses an active table's changelog after its recovery only by leaving it out of
    # `getmany`; aiokafka went on fetching it, and a fetched result nobody takes holds the
    # broker's next fetch back (agents' records fetched ~10 times a second instead of ~80).
    from faust.types import TP

    from app.topics import MOVEMENTS
    movements, changelog, master = TP(MOVEMENTS, 0), TP("app-positions-changelog", 0), TP("master.items", 0)

    monkeypatch.setattr(AIOKafkaConsumerThread, "_fetch_records", nothing_buffered)
    consumer = AssignedConsumer({movements, changelog, master})
    fetch = app.consumer._thread._fetch_records
    asyncio.run(fetch(consumer, {movements, master}, timeout=1.0, max_records=10))
    assert consumer.paused() == {("app-positions-changelog", 0)}
    # The changelog asked for again (a recovery after a rebalance): fetched again; and a flow-
    # controlled partition (an agent's full queue) is left alone until it is asked for again.
    asyncio.run(fetch(consumer, {changelog, master}, timeout=1.0, max_records=10))
    assert consumer.paused() == {(MOVEMENTS, 0)}
    asyncio.run(fetch(consumer, {movements, changelog, master}, timeout=1.0, max_records=10))
    assert consumer.paused() == set()


def test_a_client_only_fetch_pauses_nothing(monkeypatch):
    from faust.types import TP

    monkeypatch.setattr(AIOKafkaConsumerThread, "_fetch_records", nothing_buffered)
    consumer = AssignedConsumer({TP("a", 0), TP("b", 1)})
    asyncio.run(app.consumer._thread._fetch_records(consumer, None, timeout=1.0, max_records=10))
    assert consumer.paused() == set()


def test_partitions_to_pause_compares_fausts_partitions_with_aiokafkas():
    from aiokafka import TopicPartition
    from faust.types import TP

    assigned = {TopicPartition("a", 0), TopicPartition("a", 1), TopicPartition("b", 0)}
    to_pause, to_resume = partitions_to_pause(assigned, {TP("a", 0), TP("b", 0)}, {TopicPartition("b", 0)})
    assert to_pause == [TopicPartition("a", 1)] and to_resume == [TopicPartition("b", 0)]
    assert all(type(tp) is TopicPartition for tp in to_pause + to_resume)
    # Already paused and still not wanted: nothing to do.
    assert partitions_to_pause(assigned, {TP("a", 0), TP("b", 0)}, {TopicPartition("a", 1)}) == ([], [])


def test_a_stop_interrupts_the_hand_over_of_a_fetch_and_the_drainer_goes_on(monkeypatch):
    # The hand-over of a record blocks (an agent's queue is full) and a stop suspends the flow
    # (`Consumer.stop_flow`): the rest of that fetch is not handed over; the next fetch is.
    from app.topics import MOVEMENTS

    async def on_record(consumer, record) -> None:
        if record.offset == 2:
            consumer.suspend_flow.set()
            await asyncio.Event().wait()   # blocked until the race is lost

    monkeypatch.setattr(app.consumer, "_read_offset", defaultdict(lambda: None))
    handed, _ = drain(monkeypatch, [[Record(MOVEMENTS, n) for n in range(1, 5)], [Record(MOVEMENTS, 9)]],
                      on_record)
    assert handed == [(MOVEMENTS, 1), (MOVEMENTS, 2), (MOVEMENTS, 9)]


def test_a_fetch_handed_over_across_a_rebalance_leaves_the_read_offset_where_the_seek_put_it(monkeypatch):
    # A record's hand-over waits out a rebalance (Faust's flow control) and then goes on. Faust's
    # seek has meanwhile set the read offset to where the partition is read again (never committed:
    # none). The rest of the old fetch must not move it, or the records read again below would be
    # dropped as read: a compacted master partition was never fully loaded (RELIABILITY.md §5, 3b).
    from faust.types import TP

    tp = TP("master.items", 0)
    monkeypatch.setattr(app.consumer, "_read_offset", defaultdict(lambda: None))
    monkeypatch.setattr(app, "consumer_generation_id", 1)

    async def on_record(consumer, record) -> None:
        if record.offset == 381:   # the rebalance comes while this record waits for the flow
            consumer.app.consumer_generation_id = 2
            consumer._read_offset.pop(tp, None)   # Faust's seek to the committed offset (none)

    old_fetch = [Record("master.items", n) for n in range(380, 384)]
    read_again = [Record("master.items", n) for n in range(0, 3)]
    for record in read_again:
        record.generation_id = 2
    handed, gaps = drain(monkeypatch, [old_fetch, read_again], on_record)
    assert handed == [("master.items", 380), ("master.items", 381),
                      ("master.items", 0), ("master.items", 1), ("master.items", 2)]
    assert gaps == []
    assert app.consumer._read_offset[tp] == 2


def seek_across(monkeypatch, rebalance_during: str | None) -> tuple[list, object]:
    """Our consumer's seek over a partition of MOVEMENTS newly assigned, holding a commit the seek
    has not read (Faust's part of it ran over the old assignment), with a rebalance to generation
    2 coming during Faust's part, during the look-up of first offsets, or not at all. (What it
    sought to first offsets, the partition.)"""
    from faust.transport.drivers import aiokafka as faust_aiokafka
    from faust.types import TP

    from app.topics import MOVEMENTS
    tp = TP(MOVEMENTS, 3)
    consumer = app.consumer
    sought: list = []

    def rebalance(at: str) -> None:
        if rebalance_during == at:
            consumer.app.consumer_generation_id = 2

    async def fausts_seek(self) -> None:
        rebalance("fausts seek")

    async def earliest_offsets(*partitions):
        rebalance("first offsets")
        return {p: 0 for p in partitions}

    async def seek_wait(offsets) -> None:
        sought.append(dict(offsets))

    monkeypatch.setattr(app, "consumer_generation_id", 1)
    monkeypatch.setattr(faust_aiokafka.Consumer, "perform_seek", fausts_seek)
    monkeypatch.setattr(consumer, "assignment", lambda: {tp})
    monkeypatch.setattr(consumer, "_committed_offset", {})
    monkeypatch.setattr(consumer, "earliest_offsets", earliest_offsets)
    monkeypatch.setattr(consumer, "seek_wait", seek_wait)
    monkeypatch.setattr(consumer, "first_offsets", FirstOffsets())
    asyncio.run(consumer.perform_seek())
    return sought, tp


@pytest.mark.parametrize("rebalance_during", ["fausts seek", "first offsets"])
def test_a_seek_overtaken_by_a_rebalance_seeks_nothing_and_says_nothing_of_the_new_generation(
        monkeypatch, rebalance_during):
    # Faust seeks from its fetcher while a rebalance has the flow stopped. Such a seek ending
    # after the next assignment took a newly assigned partition for never committed, because its
    # commit was not read: the partition went back to offset 0, and 0 stood as the next offset in
    # the new generation, though the broker held a commit (RELIABILITY.md §5 row 4f).
    sought, tp = seek_across(monkeypatch, rebalance_during)
    assert sought == []
    assert next_to_process(app.consumer, tp) is None   # not known until the new generation's seek


def test_a_seek_no_rebalance_overtakes_seeks_never_committed_partitions_to_their_first_offset(monkeypatch):
    sought, tp = seek_across(monkeypatch, None)
    assert sought == [{tp: 0}]
    assert next_to_process(app.consumer, tp) == 0


def test_the_fetch_size_and_wait_come_from_the_environment(monkeypatch):
    configured = Settings.from_env({"FETCH_MIN_BYTES": "65536", "FETCH_MAX_WAIT_MS": "200"})
    assert (configured.fetch_min_bytes, configured.fetch_max_wait_ms) == (65536, 200)
    monkeypatch.setattr(faust_app, "settings", dataclasses.replace(
        settings, fetch_min_bytes=configured.fetch_min_bytes, fetch_max_wait_ms=configured.fetch_max_wait_ms))
    ours, _ = consumers_built_by_us_and_by_faust()
    assert (ours._fetch_min_bytes, ours._fetch_max_wait_ms) == (65536, 200)


class ConsumerServiceWithoutBroker(ConsumerInAppLoop):
    """Our consumer service with Faust's start and stop of the aiokafka consumer noted instead of done."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.noted: list[str] = []

    async def on_start(self) -> None:
        self.noted.append("aiokafka consumer started")

    async def on_thread_stop(self) -> None:
        self.noted.append("aiokafka consumer stopped")


def test_the_consumer_service_starts_calls_and_stops_in_the_apps_loop_without_a_thread():
    # A mode or Faust upgrade that changes how a service thread starts, stops or is called breaks this test.
    async def run_service():
        loop = asyncio.get_running_loop()
        service = ConsumerServiceWithoutBroker(app.consumer, loop=loop, beacon=app.consumer.beacon)
        threads_before = threading.active_count()
        await service.maybe_start()
        started = (service.thread_loop is loop, threading.active_count() == threads_before, list(service.noted))

        async def where_called(value):
            return threading.get_ident(), asyncio.current_task(), value

        tasks = list(service._futures)   # its keepalive timer
        called = await service.call_thread(where_called, 42)
        in_place = called == (threading.get_ident(), asyncio.current_task(), 42)
        in_place &= await service.call_thread(lambda value: value + 1, 42) == 43   # Faust calls plain functions too
        await asyncio.wait_for(service.stop(), 5)
        keepalive_cancelled = bool(tasks) and all(task.done() for task in tasks)
        return started, in_place, service.noted, service.should_stop, keepalive_cancelled

    started, in_place, noted, stopped, keepalive_cancelled = asyncio.run(run_service())
    assert started == (True, True, ["aiokafka consumer started"])
    assert in_place
    assert noted == ["aiokafka consumer started", "aiokafka consumer stopped"] and stopped and keepalive_cancelled


def test_a_consumer_that_does_not_stop_holds_the_worker_no_longer_than_fausts_thread_did():
    # aiokafka's stop waits for its group coordination, which a stuck rebalance never ends; Faust's
    # thread was waited for at most `shutdown_timeout`, and so is our consumer.
    class ConsumerThatHangsOnStop(ConsumerServiceWithoutBroker):
        shutdown_timeout = 0.2

        async def on_thread_stop(self) -> None:
            await super().on_thread_stop()
            await asyncio.Event().wait()

    async def run_service():
        service = ConsumerThatHangsOnStop(app.consumer, loop=asyncio.get_running_loop(), beacon=app.consumer.beacon)
        await service.maybe_start()
        await asyncio.wait_for(service.stop(), 5)
        return service.noted, service.should_stop

    assert asyncio.run(run_service()) == (["aiokafka consumer started", "aiokafka consumer stopped"], True)
