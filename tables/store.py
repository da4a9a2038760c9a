"""One way to keep pydantic records in a Faust table: UTF-8 keys, JSON values, sized RocksDB options."""
from __future__ import annotations

import functools
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Generic, TypeVar

import faust
from faust.types import TP
from pydantic import BaseModel

from app.faust_app import app, settings
from app.outbox import Outbox
from app.models.records import json_bytes
from tables.decoded_cache import DecodedCache
from tables.restore import after_bulk_restore

M = TypeVar("M", bound=BaseModel)


def rocksdb_options() -> dict:
    # Faust's defaults give every partition DB a 2 GiB block cache and 3×64 MiB memtables; on a
    # 2-core box with 8+ partitions per table that is many GiB for nothing.
    return {
        "block_cache_size": settings.rocksdb_cache_mb << 20,
        "block_cache_compressed_size": 0,
        "write_buffer_size": 8 << 20,
        "max_write_buffer_number": 2,
        "max_open_files": 256,
    }


def make_table(name: str, *, global_: bool = False, partitions: int | None = None, **kwargs) -> faust.Table:
    factory = app.GlobalTable if global_ else app.Table
    if global_:
        # Faust assigns every changelog partition of a global table to every worker as an *active*
        # one and buffers its events per `recovery_buffer_size` (1000) after recovery, so another
        # worker's update stays invisible here (faust-streaming#283, #212). Apply each as it comes,
        # as the GlobalTable docstring advises; master data is low-volume.
        kwargs.setdefault("recovery_buffer_size", 1)
    return factory(
        name,
        # bytes key and value types make Faust use the raw codec: the changelog key is the same
        # UTF-8 bytes as the topic key, so routing by key hashes to the same partition.
        key_type=bytes,
        value_type=bytes,
        partitions=partitions or settings.topic_partitions,
        options=rocksdb_options(),
        **kwargs,
    )


class RecordTable(Generic[M]):
    """A Faust table seen as `str key → pydantic record`."""

    def __init__(self, table: faust.Table, model: type[M]) -> None:
        self.table = table
        self.model = model

    def get(self, key: str) -> M | None:
        # The store itself, not `table.get`: Faust's Table.get asks `key in store` and then reads
        # the value, two RocksDB look-ups per get (for a global table each up to one per partition).
        raw = self.table.data.get(key.encode())
        return None if raw is None else self.model.model_validate_json(raw)

    def set(self, key: str, record: M) -> None:
        self.table[key.encode()] = json_bytes(record)

    def delete(self, key: str) -> None:
        self.table.pop(key.encode(), None)

    def items(self):
        for key, raw in self.table.items():
            yield (key.decode() if isinstance(key, bytes) else key), self.model.model_validate_json(raw)

    def raw_items_in_partition(self, partition: int) -> Iterable[tuple[bytes, bytes]]:
        """Every record this worker holds in one partition of the table: a scan of that partition's
        own RocksDB, O(records in it), for rare whole-partition work (a location's master change)."""
        return self.table.data.items_in_partition(partition)


class CachedRecordTable(RecordTable[M]):
    """A global table read on every event (master data): each record parsed once and kept in memory.

    Every change to a global table reaches every worker, the writer included, through its changelog,
    and Faust calls the table's `on_changelog_event` just before it writes the change to RocksDB,
    with no await in between (`make_table` sets `recovery_buffer_size=1` for global tables, so each
    change is written as it arrives). Forgetting the key there, and on a local write, makes the next
    read go to the store and parse the new value: a master fix is seen as soon as it is applied.
    A bulk restore (tables/restore.py) writes with no changelog event: the whole cache is forgotten.
    """

    MAX_RECORDS = 100_000   # beyond this the oldest cached records are dropped (re-read on demand)

    def __init__(self, name: str, model: type[M]) -> None:
        # An OrderedDict: a full dict that drops its first key on every miss scans past the slots
        # the dropped keys left (10-15 µs a drop at 100,000 keys, against 0.3-0.4).
        self._parsed: OrderedDict[bytes, M] = OrderedDict()
        # Counts the changes seen: what was derived from the records under one generation holds
        # until it moves (the position stage's channel sums: app/domain/network.py).
        self.generation = 0
        super().__init__(make_table(name, global_=True, on_changelog_event=self._on_changelog_event), model)
        after_bulk_restore.setdefault(name, []).append(self._forget_all)

    async def _on_changelog_event(self, event) -> None:
        key = event.message.key
        self._forget(key if isinstance(key, bytes) else str(key).encode())

    def _forget(self, raw_key: bytes) -> None:
        self._parsed.pop(raw_key, None)
        self.generation += 1

    def _forget_all(self) -> None:
        self._parsed.clear()
        self.generation += 1

    def get(self, key: str) -> M | None:
        raw_key = key.encode()
        record = self._parsed.get(raw_key)
        if record is None:
            record = super().get(key)
            if record is not None:   # unknown keys are not cached: they are looked up again
                if len(self._parsed) >= self.MAX_RECORDS:
                    self._parsed.popitem(last=False)
                self._parsed[raw_key] = record
        return record

    def set(self, key: str, record: M) -> None:
        self._forget(key.encode())
        super().set(key, record)

    def delete(self, key: str) -> None:
        self._forget(key.encode())
        super().delete(key)


class BatchWrites:
    """One batch's changes to one table: read back within the batch, then written in one go.

    Faust writes a table change by change: each `table[key] = value` sends a changelog record
    through Topic.send's layers and puts the value into RocksDB, in the partition of the event being
    processed. A batch keeps its changes here instead, so a key changed ten times costs one
    changelog record and one put, and `write` does what Kafka Streams does at a task's commit: every
    changelog record handed to the producer at once, one RocksDB WriteBatch per partition, and the
    changelog offset persisted (what recovery reads from) once the broker has acknowledged it. The
    caller commits its input only after those deliveries (agents/streams.py, each_batch).

    Values are kept decoded (`decode`/`encode`: bytes <-> what the stage works with), so a key
    read five times in a batch is parsed once; with a `DecodedCache` (which then decodes), a value
    this worker wrote last is not parsed again by the next batch either. For partitioned tables
    only (a global one's other partitions are written by other workers): a key is read in the
    partition its change belongs to, the one DB look-up it needs.
    """

    def __init__(self, table: faust.Table, decode: Callable[[bytes], Any] = bytes,
                 encode: Callable[[Any], bytes] = bytes, cache: DecodedCache | None = None) -> None:
        self.table, self.store = table, table.data
        self.decode, self.encode, self.cache = decode, encode, cache
        self.changes: dict[int, dict[bytes, Any]] = {}   # partition -> key -> value (None: deleted)
        self._read: dict[bytes, Any] = {}

    def get(self, key: bytes, partition: int) -> Any:
        changes = self.changes.get(partition)
        if changes is not None and key in changes:
            return changes[key]
        if key in self._read:
            return self._read[key]
        raw = self.stored(key, partition)
        if raw is None:
            value = None
        else:
            value = self.cache.decode(key, raw) if self.cache is not None else self.decode(raw)
        self._read[key] = value
        return value

    def stored(self, key: bytes, partition: int) -> bytes | None:
        """The bytes the store holds for `key`, ignoring this batch's changes: the one DB look-up."""
        return self.store.read(partition, key)

    def stored_many(self, keys: list[bytes], partition: int) -> list[bytes | None]:
        """What the store holds for each of `keys`, in one DB call: a busy store day's pages are 60."""
        return self.store.read_many(partition, keys)

    def set(self, key: bytes, value: Any, partition: int) -> None:
        self.changes.setdefault(partition, {})[key] = value

    def changed_in(self, partition: int) -> dict[bytes, Any]:
        return self.changes.get(partition, {})

    def write(self, outbox: Outbox) -> None:
        """Queue every change's changelog record in the stage batch's outbox (app/outbox.py) and
        store the changes once they are with the producer; the last changelog offset of each
        partition is persisted when the broker acknowledges it."""
        topic = self.table.changelog_topic.get_topic_name()
        for partition, changes in self.changes.items():
            encoded = self._encoded(changes)
            if self.cache is not None:
                for key, raw in encoded.items():
                    self.cache.remember(key, raw, changes[key])
            last = len(encoded) - 1
            for index, (key, value) in enumerate(encoded.items()):
                persist = functools.partial(self.store.persist_written, TP(topic, partition)) if index == last else None
                outbox.add(topic, key, value, partition, on_delivered=persist)
            outbox.after_queued(functools.partial(self.store.write_changes, partition, encoded))

    def write_folded(self, outbox: Outbox, last_offsets: Mapping[int, int]) -> None:
        """For a table that is a fold of its stage's input topic (tables/restore.py, FOLDED_FROM):
        no changelog record, the changes stored with the offset of the last input record folded in
        (`last_offsets`, per partition), in one WriteBatch, once the batch's outputs are queued."""
        for partition, offset in last_offsets.items():
            encoded = self._encoded(self.changes.get(partition, {}))
            outbox.after_queued(functools.partial(self.store.write_changes, partition, encoded, offset))

    def _encoded(self, changes: Mapping[bytes, Any]) -> dict[bytes, bytes | None]:
        return {key: None if value is None else self.encode(value) for key, value in changes.items()}
