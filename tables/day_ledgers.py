"""The `day-ledgers` table: "LEGAL_ENTITY:LOCATION:DATE" → the head of a DayLedger, a store day's
batch while it fills, and beside it that ledger's pages (app/domain/day_pages.py); and
`day-statuses`, same keys → DayStatus, where that day stands in its close.

Written only by the finance stage (agents/finance.py). internal.finance-ledger is keyed by location,
so a day's ledger, its pages and its status live in the partition of the entries that change them.
The close timers read the statuses every second; the ledgers are read only by the agent.
"""
from __future__ import annotations

import logging

import faust

from app.domain.day_batches import DayLedger, DayStatus
from app.domain.day_pages import head_of, page_changes, whole
from app.domain.keys import day_page_key
from app.faust_app import settings
from app.models.records import json_bytes
from app.outbox import Outbox
from tables import names
from tables.decoded_cache import DecodedCache
from tables.store import BatchWrites, RecordTable, make_table

log = logging.getLogger(__name__)

day_ledgers = RecordTable(make_table(names.DAY_LEDGERS), DayLedger)
day_statuses = RecordTable(make_table(names.DAY_STATUSES), DayStatus)


# The day ledgers this worker read or wrote last, whole, each checked against its head's bytes and
# weighed as its whole JSON would be (~100 KB once a store's day is busy, ~155 KB as Python
# objects): FINANCE_LEDGER_CACHE_MB of it, 96 MB by default, about 1,000 busy store days. A batch
# touches each of its days once: a worker with more busy days than the cache holds keeps the days it
# has and reads and parses the others again at every batch (tables/decoded_cache.py).
LEDGERS_KEPT_PARSED_BYTES = settings.finance_ledger_cache_mb << 20


def whole_size(head: bytes, ledger: DayLedger) -> int:
    """About what a ledger weighs whole: its head, and the marks and ids its pages hold."""
    return (len(head) + len(ledger.counted_postings) + len(ledger.counted_pos_transactions)
            + 48 * len(ledger.posting_ids))


parsed_ledgers = DecodedCache(DayLedger.model_validate_json, LEDGERS_KEPT_PARSED_BYTES, size=whole_size)

def stored_head(ledger: DayLedger) -> bytes:
    return json_bytes(head_of(ledger))


class DayLedgerWrites:
    """One finance batch's day ledgers: each read whole (its head, then its pages, unless this
    worker wrote it last and still holds it parsed), changed in memory, and written at the end as
    its head and the pages that filled or emptied since it was read. The pages are queued before the
    heads: one changelog partition holds a day's head and pages, in that order, so a head read back
    after a crash never names a page that was lost with it."""

    def __init__(self, table: faust.Table, cache: DecodedCache) -> None:
        self.cache = cache
        self.heads = BatchWrites(table, encode=stored_head, cache=cache)
        self.pages = BatchWrites(table, encode=str.encode)
        # key -> (the ledger as the batch read it, whether its pages are stored: not for a record
        # written before pages existed)
        self.read: dict[bytes, tuple[DayLedger | None, bool]] = {}

    def get(self, key: bytes, partition: int) -> DayLedger | None:
        changes = self.heads.changed_in(partition)
        if key in changes:
            return changes[key]
        if key not in self.read:
            self.read[key] = self._read(key, partition)
        return self.read[key][0]

    def set(self, key: bytes, ledger: DayLedger | None, partition: int) -> None:
        self.heads.set(key, ledger, partition)

    def write(self, outbox: Outbox) -> None:
        for partition, changes in self.heads.changes.items():
            for key, after in changes.items():
                before, stored = self.read.get(key) or self._read(key, partition)
                for name, text in page_changes(before, after, before_stored=stored).items():
                    self.pages.set(day_page_key(key, name), text, partition)
        self.pages.write(outbox)
        self.heads.write(outbox)

    def _read(self, key: bytes, partition: int) -> tuple[DayLedger | None, bool]:
        raw = self.heads.stored(key, partition)
        if raw is None:
            return None, True
        ledger = self.cache.decode(key, raw, finish=lambda head: self._whole(key, head, partition))
        return ledger, b'"paged":' in raw

    def _whole(self, key: bytes, head: DayLedger, partition: int) -> DayLedger:
        if not head.paged:
            return head
        ledger, missing = whole(head, lambda names: self._page_texts(key, names, partition))
        if missing:
            log.error("day ledger %r: pages %s are not in the store; the day counts on without what they "
                      "held", key, missing)
        return ledger

    def _page_texts(self, day_key: bytes, names: list[str], partition: int) -> list[str | None]:
        stored = self.pages.stored_many([day_page_key(day_key, name) for name in names], partition)
        return [None if raw is None else raw.decode() for raw in stored]
