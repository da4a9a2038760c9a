"""What a finance batch writes per posting once store days are busy: `python -m bench.day_pages`.

The finance stage keeps one day ledger per store and business date (app/domain/day_batches.py). A
busy day's ledger holds the marks of its last 4,000 postings and lists 1,000 posting ids, ~100 KB of
JSON; the benchmark drains are too short for any day to get there. Here every store's day is filled
first (5,000 postings, not timed), then batches come in that count `--per-store` postings into each
of `--stores` days, as the stage does (agents/finance.py): each ledger read, the postings added, the
changes written through the outbox into bare RocksDB stores. Two ways of storing a ledger:

- whole: the ledger's JSON under its key, written for every batch that touches it (before);
- head and pages: tables/day_ledgers.py, DayLedgerWrites (now).

Prints the CPU per posting (the stage's own work for it: read, count, encode, WriteBatch) and the
changelog bytes queued per posting. No Kafka.
"""
from __future__ import annotations

import argparse
import asyncio
import hashlib
import shutil
import tempfile
import time
from datetime import UTC, date, datetime
from decimal import Decimal
from types import SimpleNamespace

from rocksdict import Options, Rdict, WriteBatch

from app.domain.day_batches import DayLedger, add_posting, open_day
from app.models.records import Posting, PostingKind, PostingLine, json_bytes
from app.outbox import Outbox
from tables.day_ledgers import LEDGERS_KEPT_PARSED_BYTES, DayLedgerWrites, whole_size
from tables.decoded_cache import DecodedCache
from tables.store import BatchWrites

DAY = date(2026, 12, 5)
FILLED = 5_000


class RocksStore:
    """The part of a table's store a batch's writes use, over one bare RocksDB."""

    def __init__(self, path: str) -> None:
        self.db = Rdict(path, Options(raw_mode=True))

    def read(self, partition: int, key: bytes) -> bytes | None:
        return self.db.get(key)

    def read_many(self, partition: int, keys: list[bytes]) -> list[bytes | None]:
        return self.db.get(keys)

    def write_changes(self, partition: int, changes, source_offset=None) -> None:
        batch = WriteBatch(raw_mode=True)
        for key, value in changes.items():
            if value is None:
                batch.delete(key)
            else:
                batch.put(key, value)
        self.db.write(batch)

    def persist_written(self, tp, offset: int) -> None:
        pass


class Queued:
    """A producer that takes every record batch at once (nothing is sent: the bytes are counted)."""

    def __init__(self) -> None:
        self.bytes = 0

    async def send_in_batches(self, records) -> list:
        self.bytes += sum(len(r.key or b"") + len(r.value or b"") for r in records)
        return []


def posting(store: int, n: int) -> Posting:
    digest = hashlib.sha256(f"{store}/{n}".encode()).hexdigest()[:32]
    return Posting(posting_id=f"SALE_REVENUE-{digest}", kind=PostingKind.SALE_REVENUE, legal_entity="US01",
                   location_id=f"S{store}", business_date=DAY, currency="USD", source_system="POS",
                   source_event_id=f"E{store}-{n}", correlation_id=f"E{store}-{n}", movement_id=f"M{store}-{n}",
                   lines=[PostingLine(account="1100", debit=Decimal("21.59"), credit=Decimal("0")),
                          PostingLine(account="4000", debit=Decimal("0"), credit=Decimal("19.99")),
                          PostingLine(account="2200", debit=Decimal("0"), credit=Decimal("1.60"))],
                   created_at=datetime.now(UTC))


def run(layout: str, stores: int, per_store: int, batches: int, cache_mb: int) -> tuple[float, float]:
    path = tempfile.mkdtemp(prefix=f"day-pages-{layout}-")
    try:
        table = SimpleNamespace(data=RocksStore(path),
                                changelog_topic=SimpleNamespace(get_topic_name=lambda: "day-ledgers-changelog"))
        if layout == "whole":
            cache = DecodedCache(DayLedger.model_validate_json, cache_mb << 20)
            new_writes = lambda: BatchWrites(table, encode=json_bytes, cache=cache)   # noqa: E731
        else:
            cache = DecodedCache(DayLedger.model_validate_json, cache_mb << 20, size=whole_size)
            new_writes = lambda: DayLedgerWrites(table, cache)   # noqa: E731
        keys = [f"US01:S{s}:{DAY.isoformat()}".encode() for s in range(stores)]

        def batch(postings_of) -> int:
            writes = new_writes()
            for s, key in enumerate(keys):
                ledger = writes.get(key, 0) or open_day("US01", f"S{s}", DAY)
                for p in postings_of(s):
                    ledger = add_posting(ledger, p)
                writes.set(key, ledger, 0)
            producer, outbox = Queued(), Outbox(1 << 30)
            writes.write(outbox)
            asyncio.run(outbox.send(producer))
            return producer.bytes

        for start in range(0, FILLED, 1_000):   # fill every day, not timed
            batch(lambda s: [posting(s, n) for n in range(start, start + 1_000)])
        work = [[[posting(s, FILLED + b * per_store + i) for i in range(per_store)] for s in range(stores)]
                for b in range(batches)]
        written, spent = 0, 0.0
        for postings in work:
            began = time.process_time()
            written += batch(lambda s: postings[s])
            spent += time.process_time() - began
        count = stores * per_store * batches
        return spent / count * 1e6, written / count
    finally:
        shutil.rmtree(path, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.day_pages", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stores", type=int, nargs="+", default=[50, 500])
    parser.add_argument("--postings", type=int, default=700, help="postings per finance batch, spread over the stores")
    parser.add_argument("--batches", type=int, default=20)
    parser.add_argument("--cache-mb", type=int, default=LEDGERS_KEPT_PARSED_BYTES >> 20,
                        help="the parsed ledgers kept between batches (FINANCE_LEDGER_CACHE_MB; default: the stage's)")
    args = parser.parse_args()
    print(f"store days filled with {FILLED:,} postings each; batches of {args.postings} postings; "
          f"CPU µs and changelog bytes per posting; {args.cache_mb} MB of parsed ledgers kept")
    print(f"{'stores':>7} {'per store':>9}  {'layout':<16} {'CPU µs':>8} {'bytes':>9}")
    for stores in args.stores:
        per_store = max(1, args.postings // stores)
        for layout in ("whole", "head and pages"):
            cpu, written = run(layout, stores, per_store, args.batches, args.cache_mb)
            print(f"{stores:>7} {per_store:>9}  {layout:<16} {cpu:8.1f} {written:9,.0f}")


if __name__ == "__main__":
    main()
