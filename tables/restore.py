"""Bulk restore: a table's changelog partitions into RocksDB in WriteBatches, before Faust's recovery.

Faust restores a changelog record by record through its consumer, stream buffers and recovery
bookkeeping (~7,000 positions/s on this box: 137.7 s for a million, BENCHMARKS.md). This store
does the same work the way Kafka Streams and Quix do: at a rebalance, before Faust's recovery looks
at the persisted offsets, it reads each newly assigned changelog partition (every partition, for a
global table) from its persisted offset to the end with a consumer of its own, writes the records
into the partition's RocksDB in WriteBatches and moves the persisted offset with each batch. Faust's
recovery then finds nothing (or the few records written since) left to read, for actives and
standbys alike, so no agent waits on a partition that nobody fetches.

A table that is a fold of one of the pipeline's topics (`FOLDED_FROM`: the trace table, built from
`internal.lineage`) has no changelog: the topic already holds everything the table is made of, so
writing each change to a changelog as well only doubled its records, as Kafka Streams' source-topic
changelogs avoid. Its partition's DB keeps, in the same WriteBatch as the entries, the offset of the
last topic record folded in (`SOURCE_OFFSET`); a worker that takes the partition over folds the
topic's records after that offset, and the stage skips those it meets again.

The seam is Faust's own plugin point for stores (the `faust.stores` entry point, `pyproject.toml`),
used through `store="bulk-rocksdb://"`: this class is Faust's RocksDB store plus `on_rebalance`.
"""
from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, TopicPartition
from faust.stores.rocksdb import Store as RocksDBStore

from app.logging_setup import exit_now
from app.partitions import misplaced_keys

log = logging.getLogger(__name__)

WRITE_EVERY = 20_000       # records per WriteBatch (and per persisted-offset update)
IDLE_GIVE_UP = 30.0        # seconds without a record while short of the end: the broker is away


SOURCE_OFFSET = b"__source\0offset__"   # a folded table's last topic offset, per partition DB


def one_record(key: bytes | None, value: bytes | None) -> tuple[tuple[bytes | None, bytes | None]]:
    """What a topic record carries: itself."""
    return ((key, value),)


@dataclass(frozen=True)
class SourceFold:
    """A table made of a topic's records: entry = fold(entry or None, record value), per key, in
    offset order (partition p of the table is partition p of the topic)."""

    topic: str
    fold: Callable[[bytes | None, bytes], bytes | None]
    # The (key, record) pairs one topic record carries, folded in their order (a pack of several keys').
    records_of: Callable[[bytes | None, bytes | None],
                         Iterable[tuple[bytes | None, bytes | None]]] = one_record


# Table name -> the topic it is a fold of (declared where the table is defined).
FOLDED_FROM: dict[str, SourceFold] = {}

# Table name -> the topic whose partitioner places its keys (declared where the table is defined).
# After a restore, the keys of each partition it restored are checked against that rule: a data dir
# or a changelog written under another layout (a version before `inventory.movements` was
# partitioned by SKU) would read as empty for most keys, and the stage would apply movements to
# positions that start from nothing. The worker stops instead.
LAID_OUT_LIKE: dict[str, str] = {}
LAYOUT_SAMPLE = 100          # keys read per partition for the check
EXIT_WRONG_LAYOUT = 71


@dataclass(frozen=True)
class RestorePlan:
    """From where to where one changelog partition must be read: [start, end)."""

    start: int
    end: int


def plan_restore(persisted: Mapping, earliest: Mapping, ends: Mapping) -> dict:
    """Per partition, the range still to read: after the persisted offset (the last one applied),
    never before the log's first offset (compacted or deleted away), up to the end. Partitions with
    nothing left are left out. Pure, so tested without a broker."""
    plans = {}
    for tp, end in ends.items():
        last = persisted.get(tp)
        start = max(earliest.get(tp, 0), 0 if last is None else last + 1)
        if start < end:
            plans[tp] = RestorePlan(start, end)
    return plans


class ChangelogReader:
    """One consumer per worker for every bulk restore (tables restore one after another)."""

    def __init__(self) -> None:
        self._consumer: AIOKafkaConsumer | None = None
        self._lock = asyncio.Lock()

    async def _started(self, app) -> AIOKafkaConsumer:
        """Under the lock (stores stop while others may still restore)."""
        if self._consumer is None:
            from app.connection import client_kwargs
            from app.faust_app import settings
            consumer = AIOKafkaConsumer(
                **client_kwargs(settings.kafka), group_id=None, enable_auto_commit=False,
                auto_offset_reset="earliest", fetch_max_bytes=64 << 20, max_partition_fetch_bytes=16 << 20, fetch_max_wait_ms=50,
                isolation_level="read_committed" if app.in_transaction else "read_uncommitted")
            await consumer.start()
            self._consumer = consumer
        return self._consumer

    async def stop(self) -> None:
        async with self._lock:
            if self._consumer is not None:
                consumer, self._consumer = self._consumer, None
                await consumer.stop()

    async def plan(self, store: BulkRestoringStore, partitions: Iterable[int]) -> dict:
        """What each partition still needs, from the offsets the store really holds."""
        async with self._lock:
            consumer = await self._started(store.app)
            topic = store.restored_from()
            tps = [TopicPartition(topic, p) for p in partitions]
            ends = await consumer.end_offsets(tps)
            earliest = await consumer.beginning_offsets(tps)
            return plan_restore({tp: store.stored_offset(tp) for tp in tps}, earliest, ends)

    async def copy(self, store: BulkRestoringStore, plans: dict) -> int:
        if not plans:
            return 0
        async with self._lock:
            consumer = await self._started(store.app)
            consumer.assign(list(plans))
            for tp, plan in plans.items():
                consumer.seek(tp, plan.start)
            return await _copy(consumer, store, plans)


def put_or_delete(batch, key: bytes, value: bytes | None) -> None:
    """One change into a WriteBatch, as a changelog record means it (None: the key is deleted)."""
    if value is None:
        batch.delete(key)
    else:
        batch.put(key, value)


class _Puts:
    """Changelog records into one partition's DB as they are: one WriteBatch of puts and deletes."""

    def __init__(self, store: BulkRestoringStore, tp) -> None:
        self.store, self.tp = store, tp
        self.batch, self.count = store.new_write_batch(), 0

    def add(self, key: bytes, value: bytes | None) -> None:
        put_or_delete(self.batch, key, value)
        self.count += 1

    def write(self, last_offset: int | None) -> int:
        return self.store.write_restored(self.tp, self.batch, self.count, last_offset)


class _Folds:
    """A topic's records folded into the entries of one partition's DB (`SourceFold`): each entry
    read once, written once per WriteBatch, with the offset of the last record folded in."""

    def __init__(self, store: BulkRestoringStore, tp, fold, records_of=one_record) -> None:
        self.store, self.tp, self.fold, self.records_of = store, tp, fold, records_of
        self.entries: dict[bytes, bytes | None] = {}
        self.count = 0

    def add(self, key: bytes | None, value: bytes | None) -> None:
        for key, record in self.records_of(key, value):
            if key is not None and record is not None:
                entry = self.entries[key] if key in self.entries else self.store.read(self.tp.partition, key)
                self.entries[key] = self.fold(entry, record)
        self.count += 1

    def write(self, last_offset: int | None) -> int:
        if last_offset is not None:
            self.store.write_changes(self.tp.partition, self.entries, source_offset=last_offset)
        return self.count


async def _copy(consumer: AIOKafkaConsumer, store: BulkRestoringStore, plans: dict) -> int:
    remaining = dict(plans)
    copied = 0
    pending: dict = {}     # tp -> [_Puts or _Folds, last offset added to it]
    idle_since = time.monotonic()
    while remaining:
        fetched = await consumer.getmany(*remaining, timeout_ms=100, max_records=WRITE_EVERY)
        if not any(fetched.values()):
            if time.monotonic() - idle_since > IDLE_GIVE_UP:
                log.warning("bulk restore of %s: no records for %.0f s with %d partitions short of their end; "
                            "Faust's recovery reads the rest", store.table.name, IDLE_GIVE_UP, len(remaining))
                break
        else:
            idle_since = time.monotonic()
        for tp, messages in fetched.items():
            end = remaining[tp].end
            entry = pending.setdefault(tp, [store.new_restore(tp), None])
            for message in messages:
                if message.offset >= end:
                    break
                entry[0].add(message.key, message.value)
                entry[1] = message.offset
        for tp in list(remaining):
            # The position, not the last record: compaction and transaction markers leave gaps.
            done = await consumer.position(tp) >= remaining[tp].end
            entry = pending.get(tp)
            if done:   # everything before the end is applied, markers and compacted gaps included
                entry = pending.setdefault(tp, [store.new_restore(tp), None])
                entry[1] = remaining[tp].end - 1
            if entry is not None and (done or entry[0].count >= WRITE_EVERY):
                copied += entry[0].write(entry[1])
                del pending[tp]
            if done:
                del remaining[tp]
        await asyncio.sleep(0)   # let heartbeats and the web server run between batches
    for restore, last_offset in pending.values():
        copied += restore.write(last_offset)
    return copied


changelog_reader = ChangelogReader()

# Table name -> what to call after a bulk restore wrote into it: records written behind the table's
# back, with no changelog event for a cache to hear of (tables/store.py, CachedRecordTable).
after_bulk_restore: dict[str, list[Callable[[], None]]] = {}


class BulkRestoringStore(RocksDBStore):
    """Faust's RocksDB store that bulk-restores its changelog partitions at every rebalance, inside
    the rebalance callback, before Faust's recovery builds its offsets from the persisted ones.

    The callback must return within the session timeout: aiokafka sends no heartbeat while it runs,
    and a member that stays silent longer is dropped and the group rebalances again (seen once with a
    million positions, ~10 s of restore: BENCHMARKS.md). Restoring large tables in the background
    instead was tried (22.3 s to ready against 26.6 s) and reverted on a routing-test failure that
    turned out to be the test's own (BENCHMARKS.md, "Recovery with bulk restore").
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._written: dict = {}   # changelog partition -> last offset of this worker's writes persisted

    async def on_rebalance(self, assigned, revoked, newly_assigned, generation_id: int = 0) -> None:
        await super().on_rebalance(assigned, revoked, newly_assigned, generation_id)
        # A global table holds every partition on every worker; a partitioned one restores what it
        # newly owns (what it kept, it wrote itself); a folded one, the topic partitions its stage
        # newly reads (a standby of it has nothing to keep warm: its changelog stays empty).
        topic = self.restored_from()
        source = assigned if self.table.is_global else newly_assigned
        partitions = sorted({tp.partition for tp in source if tp.topic == topic})
        await self.bulk_restore(partitions)
        laid_out_like = LAID_OUT_LIKE.get(self.table.name)
        if laid_out_like is not None and partitions:
            # The topic's partition count as the consumer's metadata has it (what our producer
            # routes by), else the one the table was declared with (make_table always sets it).
            count = self.app.consumer.topic_partitions(laid_out_like) or self.table.partitions
            self.check_layout(partitions, count)

    @property
    def folded_from(self) -> SourceFold | None:
        """The topic this table is a fold of (None: it has a changelog)."""
        return FOLDED_FROM.get(self.table.name)

    def restored_from(self) -> str:
        """The topic this table is restored from: its changelog, or the topic it is a fold of."""
        fold = self.folded_from
        return fold.topic if fold is not None else self.table.changelog_topic.get_topic_name()

    def new_restore(self, tp) -> _Puts | _Folds:
        fold = self.folded_from
        return _Puts(self, tp) if fold is None else _Folds(self, tp, fold.fold, fold.records_of)

    def stored_offset(self, tp) -> int | None:
        return self.persisted_offset(tp) if self.folded_from is None else self.source_offset(tp.partition)

    def source_offset(self, partition: int) -> int | None:
        """A folded table's last topic offset folded into this partition's DB."""
        raw = self._db_for_partition(partition).get(SOURCE_OFFSET)
        return None if raw is None else int(raw)

    async def bulk_restore(self, partitions: list[int]) -> int:
        """Read these changelog partitions up to their end into RocksDB, now; never raises (Faust's
        own recovery still reads whatever is left)."""
        if not partitions:
            return 0
        started = time.monotonic()
        try:
            copied = await changelog_reader.copy(self, await changelog_reader.plan(self, partitions))
        except Exception as exc:
            log.warning("bulk restore of %s failed (%r): Faust's recovery reads the changelog instead",
                        self.table.name, exc)
            return 0
        self._report(copied, len(partitions), started)
        return copied

    def check_layout(self, partitions: list[int], count: int, exit_=exit_now) -> None:
        """Stop the worker if most keys of the partitions just restored sit where the table's topic
        would not put them (see LAID_OUT_LIKE); with the right layout none does."""
        topic = LAID_OUT_LIKE[self.table.name]
        sampled, misplaced = 0, []
        for partition in partitions:
            db = self._db_for_partition(partition)   # opened as the stage would: an old data dir is read too
            keys = list(itertools.islice((key for key, _ in self._visible_items(db)), LAYOUT_SAMPLE))
            sampled += len(keys)
            misplaced += misplaced_keys(topic, keys, partition, count)
        if misplaced and 2 * len(misplaced) > sampled:
            log.critical(
                "%s: %d of %d keys read back from %s sit in partitions that %s's partitioner does not give "
                "them (e.g. %r): this data dir or changelog was written under another layout (a version "
                "before inventory.movements was partitioned by SKU; %d partitions). "
                "The worker stops (exit %d) rather than apply movements to positions it cannot find. Start "
                "with a new APP_ID and an empty DATA_DIR, then re-seed with counts or replay %s (README, "
                "Decisions).", self.table.name, len(misplaced), sampled, self.restored_from(), topic,
                misplaced[0][:80], count, EXIT_WRONG_LAYOUT, topic)
            exit_(EXIT_WRONG_LAYOUT)
        elif misplaced:
            log.warning("%s: %d of %d keys sampled sit outside their partition (e.g. %r)", self.table.name,
                        len(misplaced), sampled, misplaced[0][:80])

    def _report(self, copied: int, partitions: int, started: float) -> None:
        if copied:
            for forget in after_bulk_restore.get(self.table.name, ()):
                forget()
            took = time.monotonic() - started
            source = "changelog records" if self.folded_from is None else f"records of {self.restored_from()} folded"
            log.info("bulk restore of %s: %d %s into %d partitions in %.1f s (%.0f/s)",
                     self.table.name, copied, source, partitions, took, copied / max(took, 1e-6))

    def items_in_partition(self, partition: int):
        """(key, value) of one partition's DB, if open here (every partition is, for a global table),
        without the store's own bookkeeping: Faust hides its offset key, this hides a folded table's
        SOURCE_OFFSET too (a scan of a table with a changelog pays no filter)."""
        db = self._dbs.get(partition)
        if db is None:
            return ()
        items = self._visible_items(db)
        return items if self.folded_from is None else (item for item in items if item[0] != SOURCE_OFFSET)

    def new_write_batch(self):
        from rocksdict import WriteBatch
        return WriteBatch(raw_mode=True)

    def write_restored(self, tp, batch, count: int, last_offset: int | None) -> int:
        """One WriteBatch into the partition's DB, then its stored offset: a crash in between only
        makes the next restore read those records again (puts and deletes are idempotent)."""
        if count:
            self._db_for_partition(tp.partition).write(batch)
        if last_offset is not None:
            self.set_persisted_offset(tp, last_offset)
        return count

    # --- The write path of a batch (tables/store.py, BatchWrites) -----------------------------------

    def read(self, partition: int, key: bytes) -> bytes | None:
        """One key from one partition's DB: the one look-up a partitioned table needs. The DB is
        opened if it is not yet (a partition of the event being handled is this worker's)."""
        return self._db_for_partition(partition).get(key)

    def read_many(self, partition: int, keys: list[bytes]) -> list[bytes | None]:
        """Keys of one partition's DB in one RocksDB MultiGet, None for a key not there."""
        return self._db_for_partition(partition).get(keys)

    def write_changes(self, partition: int, changes: Mapping[bytes, bytes | None],
                      source_offset: int | None = None) -> None:
        """A batch's changes of one partition in one WriteBatch (None: the key is deleted), with, for
        a folded table, the offset of the last topic record they include."""
        batch = self.new_write_batch()
        for key, value in changes.items():
            put_or_delete(batch, key, value)
        if source_offset is not None:
            batch.put(SOURCE_OFFSET, str(source_offset).encode())
        self._db_for_partition(partition).write(batch)

    def persist_written(self, tp, offset: int) -> None:
        """The changelog offset of this worker's own write, once the broker has it: what recovery
        reads from after a restart. Only forward, and only into a partition still held here."""
        if tp.partition in self._dbs and offset > self._written.get(tp, -1):
            self._written[tp] = offset
            self.set_persisted_offset(tp, offset)

    async def stop(self) -> None:
        await changelog_reader.stop()
        await super().stop()
