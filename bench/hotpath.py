"""Broker-free CPU cost of the position stage's own work per movement: `python -m bench.hotpath`.

Times (process CPU time, so a busy box inflates it less than wall time) each step agents/positions.py
does for one movement, without Faust or Kafka: decode the movement, decode the stored position,
apply the rule, encode the position, build and encode the availability record, fold it into the
SKU's channel sums, build and encode the ledger record. Then the finance stage's own work for each
of those ledger records (agents/finance.py): decode it, the posting rules, count the postings into
their day ledgers, encode the postings and the movement's trace record. Use it for before/after
figures of hot-path changes; the end-to-end runs show how much of a worker's time this is.
"""
from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal

from app.domain.accounts import parse_chart_overrides
from app.domain.availability import availability_record
from app.domain.day_batches import DayLedger, add_posting, open_day
from app.domain.keys import day_batch_key, position_key
from app.domain.positions import PositionContext, apply, new_position
from app.domain.network import channel_shares, fold_location
from app.domain.postings import postings_for
from app.models.canonical import Movement, Position, SkuNetwork, working_copy
from app.models.finance_ledger import AppliedTrace, LedgerEntry
from app.models.raw import Location, LocationType
from app.models.records import TraceFact, TraceStage
from bench import workload


MASTER_GENERATION = 0   # the location master does not change during the measurement


def stopwatch() -> tuple[dict[str, float], Callable[[str, float], float]]:
    """CPU seconds spent per named step, and `step(name, started)`: adds the time since `started`
    to `name` and returns now, the start of the next step."""
    spent: dict[str, float] = {}

    def step(name: str, started: float) -> float:
        now = time.process_time()
        spent[name] = spent.get(name, 0.0) + now - started
        return now
    return spent, step


def measure(movements: list[bytes], ledger_entries: list[bytes] | None = None) -> dict[str, float]:
    ctx = PositionContext(now_epoch=int(time.time()), dedupe_retention=604800, safety_stock=1,
                          standard_cost=Decimal("7.25"), legal_entity="US01")
    store: dict[str, bytes] = {}
    networks: dict[str, SkuNetwork] = {}

    def channels_of(location_id: str) -> list[str]:
        return ["store", "web"] if location_id.startswith("S") else ["web"]
    spent, step = stopwatch()
    clock = time.process_time
    begin = clock()
    for value in movements:
        t = clock()
        m = Movement.model_validate_json(value)
        t = step("decode movement", t)
        key = position_key(m.sku, m.location_id)
        raw = store.get(key)
        position = Position.model_validate_json(raw) if raw else new_position(m.sku, m.location_id)
        t = step("decode position", t)
        outcome = apply(position, m, ctx)
        t = step("apply rule", t)
        if outcome.duplicate or outcome.rejection:
            continue
        store[key] = outcome.position.model_dump_json().encode()
        t = step("encode position", t)
        now = datetime.now(UTC)
        record = availability_record(outcome.position, outcome.previous_available, m, now)
        record.model_dump_json().encode()
        t = step("availability record", t)
        # As the stage does: the network kept parsed (with its channel sums), folded into a working
        # copy, encoded for its changelog record (once per SKU and batch; here once per movement).
        kept = networks.get(m.sku)
        network = SkuNetwork(sku=m.sku) if kept is None else working_copy(kept)
        for channel in fold_location(network, m.location_id, record.available, record.version, channels_of,
                                     MASTER_GENERATION):
            channel_shares(network, channel, channels_of, MASTER_GENERATION)
        network.model_dump_json().encode()
        networks[m.sku] = network
        t = step("channel sums (the SKU's network copied, folded, encoded)", t)
        entry = LedgerEntry(applied=outcome.applied, applied_trace=AppliedTrace(
            key=key, version=record.version, available=record.available, on_hand=record.on_hand,
            previous_available=record.previous_available, at=now)).model_dump_json().encode()
        step("ledger record (it carries the applied trace fact)", t)
        if ledger_entries is not None:
            ledger_entries.append(entry)
    total = clock() - begin
    return {"movements": len(movements), "total_us": total / len(movements) * 1e6,
            **{k: v / len(movements) * 1e6 for k, v in spent.items()}}


def measure_finance(entries: list[bytes]) -> dict[str, float]:
    """The finance stage's own work per ledger record, as FinanceBatch._post does it, day ledgers
    kept parsed in a dict (the stage's cache) and encoded once per 500 records (its batches)."""
    location = Location(location_id="S1", type=LocationType.STORE, legal_entity="US01", currency="USD")
    charts = parse_chart_overrides("")
    ledgers: dict[str, DayLedger] = {}
    spent, step = stopwatch()
    clock = time.process_time
    begin = clock()
    for n, value in enumerate(entries, 1):
        t = clock()
        entry = LedgerEntry.model_validate_json(value)
        t = step("decode ledger record", t)
        now = datetime.now(UTC)
        result = postings_for(entry.applied, location, charts, now)
        t = step("posting rules", t)
        for posting in result.postings:
            key = day_batch_key(posting.legal_entity, posting.location_id, posting.business_date)
            ledger = ledgers.get(key) or open_day(posting.legal_entity, posting.location_id, posting.business_date)
            ledgers[key] = add_posting(ledger, posting)
        if n % 500 == 0:
            for ledger in ledgers.values():
                ledger.model_dump_json()
        t = step("count into day ledgers (encoded once per 500 records)", t)
        for posting in result.postings:
            posting.model_dump_json().encode()
        t = step("encode postings", t)
        movement, done = entry.applied.movement, entry.applied_trace
        lines = [TraceFact(source_system=movement.source_system.value, source_event_id=movement.source_event_id,
                           stage=TraceStage.APPLIED, at=done.at, detail={"key": done.key, "version": done.version})
                 .model_dump_json().encode()]
        lines += [TraceFact(source_system=movement.source_system.value, source_event_id=movement.source_event_id,
                            stage=TraceStage.POSTING, at=now, detail={"posting_id": p.posting_id, "kind": p.kind.value})
                  .model_dump_json().encode() for p in result.postings]
        b"\n".join(lines)
        step("trace record", t)
    total = clock() - begin
    return {"records": len(entries), "total_us": total / len(entries) * 1e6,
            **{k: v / len(entries) * 1e6 for k, v in spent.items()}}


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.hotpath", description=__doc__)
    parser.add_argument("--skus", type=int, default=2_000)
    parser.add_argument("--locations", type=int, default=10)
    parser.add_argument("--events", type=int, default=12_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--deep-copy", action="store_true",
                        help="apply with the former model_copy(deep=True) working copy (the 'before' figure)")
    args = parser.parse_args()
    if args.deep_copy:
        import app.domain.positions as rules
        rules.working_copy = lambda position: position.model_copy(deep=True)
    data = workload.build(args.skus, args.locations, args.events)
    values = [v for _, _, v in data.movements]
    entries: list[bytes] = []
    runs = [measure(values, entries if not entries else None) for _ in range(args.repeat)]
    best = min(runs, key=lambda r: r["total_us"])
    print(f"{best['movements']} movements over {args.skus} SKUs x {args.locations} locations; best of {args.repeat}, "
          f"CPU µs per movement:")
    for name, value in best.items():
        if name != "movements":
            print(f"  {name:22s} {value:8.1f}")
    best = min((measure_finance(entries) for _ in range(args.repeat)), key=lambda r: r["total_us"])
    print(f"finance stage, {best['records']} ledger records; best of {args.repeat}, CPU µs per record:")
    for name, value in best.items():
        if name != "records":
            print(f"  {name:22s} {value:8.1f}")


if __name__ == "__main__":
    main()
