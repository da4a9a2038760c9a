"""CPU of one run of each finance close sweep (agents/finance.py) over a worker's store-days:
`python -m bench.close_sweeps [--days N]`.

Builds N days in two bare RocksDB stores (rocksdict, as the tables use): their day ledgers as a busy
store's look (the last 4,000 posting marks, 1,000 listed posting ids: ~50 KB) and their statuses
(`day-statuses`, ~150 B). Six days in seven are closed and wait to be forgotten, as with a week's
DEDUPE_RETENTION. Then it runs the stage's own sweeps over each store: over the ledgers is what the
timers read before `day-statuses` existed, over the statuses what they read now. No day is due, so
the figures are the scan alone, which is what a sweep costs almost every time it runs.
"""
from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta

from rocksdict import Rdict

from app.domain.day_batches import COUNTED_KEEP, close_day, open_day, status_of
from app.domain.marks import mark_of, with_mark
from app.models.records import json_bytes


def stores_of(days: int) -> tuple[Rdict, Rdict]:
    marks = ""
    for n in range(COUNTED_KEEP):
        marks = with_mark(marks, mark_of(f"POSTING-{n}"), COUNTED_KEEP)
    now = datetime.now(UTC)
    ledgers, statuses = Rdict(tempfile.mkdtemp()), Rdict(tempfile.mkdtemp())
    for n in range(days):
        day = open_day("US01", f"S{n:05d}", now.date() - timedelta(days=n % 7)).model_copy(update={
            "counted_postings": marks, "posting_ids": [f"POSTING-{i:06d}" for i in range(1000)]})
        if n % 7:
            day, _batch = close_day(day, now)
        key = f"US01:S{n:05d}:{day.business_date}".encode()
        ledgers[key], statuses[key] = json_bytes(day), json_bytes(status_of(day))
    return ledgers, statuses


def cpu_ms(sweep, store: Rdict, runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        start = time.process_time()
        asyncio.run(sweep(list(store.items()), datetime.now(UTC)))
        times.append((time.process_time() - start) * 1000)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=16_000, help="store-days the worker holds")
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    from agents.finance import announce_closes_after_grace, announce_closes_by_the_clock
    from tables.master import master_data

    master_data.location = lambda location_id: None   # no worker here: every open day is a store's
    ledgers, statuses = stores_of(args.days)
    for name, store in (("ledgers", ledgers), ("statuses", statuses)):
        size = sum(len(value) for value in store.values()) / args.days
        for sweep, every in ((announce_closes_after_grace, "second"), (announce_closes_by_the_clock, "minute")):
            times = cpu_ms(sweep, store, args.runs)
            print(f"{args.days} days' {name} ({size:,.0f} B each), the sweep of every {every}: "
                  f"median {statistics.median(times):.1f} ms CPU (min {min(times):.1f}, {args.runs} runs)")


if __name__ == "__main__":
    main()
