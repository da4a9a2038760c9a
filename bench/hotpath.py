"""Broker-free CPU cost of the position stage's own work per movement: `python -m bench.hotpath`.

Times (process CPU time, so a busy box inflates it less than wall time) each step agents/positions.py
does for one movement, without Faust or Kafka: decode the movement, decode the stored position,
apply the rule, encode the position, build the availability and ledger records (`outputs_of`, as
the stage does) and encode the first, fold it into the SKU's channel sums, encode the ledger
record. Then the finance stage's own work for each of those ledger records (agents/finance.py):
decode it, the posting rules, count the postings into their day ledgers, encode the postings and
the movement's trace record. Before both, the ingest
stage's (agents/ingest.py: map the raw record, its trace record, stamp and encode its movements and
ledger records), and after them the lineage stage's (agents/lineage.py: fold each trace record into
its key's entry). Use it for before/after figures of hot-path changes; its last lines give what the
four stages' own work costs per raw event, and the end-to-end runs how much of a worker's time
that is. `--pydantic-share` runs each stage once more under cProfile and says how much of its time
is pydantic: models built, copied and validated, and records encoded and decoded (BENCHMARKS.md,
thirty-fourth session: what the stages would cost if all of it were free).
"""
from __future__ import annotations

import argparse
import cProfile
import pstats
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from functools import partial

from app.domain.accounts import parse_chart_overrides
from app.domain.day_batches import DayLedger, add_pos_totals, add_posting, open_day
from app.domain.keys import day_batch_key, position_key
from app.domain.lineage import apply_record, fact_line, trace_key
from app.domain.positions import PositionContext, apply, new_position, outputs_of
from app.domain.network import channel_shares, fold_location
from app.domain.postings import postings_for
from app.domain.sources import SOURCES, Mapped, MappingContext, map_raw
from app.models.canonical import Movement, Position, SkuNetwork, working_copy
from app.models.finance_ledger import LedgerEntry
from app.models.raw import Location, LocationType
from app.models.records import TraceStage, compact_json, json_bytes
from bench import workload


RESERVATION_TTL = timedelta(days=3)   # the pipeline's default (settings.reservation_ttl)
MASTER_GENERATION = 0   # the location master does not change during the measurement
TraceRecord = tuple[str, bytes]   # (lineage key, the record's JSON lines), as the stages send them


def fact(system: str, event_id: str, stage: TraceStage, at: datetime, **detail: object) -> bytes:
    """One trace fact as agents/outputs.Trace encodes it."""
    return fact_line(system, event_id, stage, at, detail)


def per_record(unit: str, count: int, total: float, spent: dict[str, float]) -> dict[str, float]:
    """CPU µs per record, in all (`total_us`) and per step, from CPU seconds over `count` records."""
    return {unit: count, "total_us": total / count * 1e6, **{k: v / count * 1e6 for k, v in spent.items()}}


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
        store[key] = compact_json(outcome.position)
        t = step("encode position", t)
        now = datetime.now(UTC)
        out = outputs_of(outcome, m, ctx, now)   # the availability record and the ledger entry, as the stage builds them
        record = out.record
        json_bytes(record)
        t = step("availability record and ledger entry built, the record encoded", t)
        # As the stage does: the network kept parsed (with its channel sums), folded into a working
        # copy, encoded for its changelog record (once per SKU and batch; here once per movement).
        kept = networks.get(m.sku)
        network = SkuNetwork(sku=m.sku) if kept is None else working_copy(kept)
        for channel in fold_location(network, m.location_id, record.available, record.version, channels_of,
                                     MASTER_GENERATION):
            channel_shares(network, channel, channels_of, MASTER_GENERATION)
        json_bytes(network)
        networks[m.sku] = network
        t = step("channel sums (the SKU's network copied, folded, encoded)", t)
        entry = out.entry.to_json()
        step("ledger record encoded (it carries the applied trace fact)", t)
        if ledger_entries is not None:
            ledger_entries.append(entry)
    total = clock() - begin
    return per_record("movements", len(movements), total, spent)


def measure_finance(entries: list[bytes], trace_records: list[TraceRecord] | None = None) -> dict[str, float]:
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
        if entry.applied is None:   # what a POS transaction sold, counted into its day's control totals
            facts = entry.pos_totals
            if facts is not None:
                key = day_batch_key(location.legal_entity, facts.location_id, facts.business_date)
                ledger = ledgers.get(key) or open_day(location.legal_entity, facts.location_id, facts.business_date)
                ledgers[key] = add_pos_totals(ledger, facts.units_sold, facts.gross, facts.transaction_id)
            step("count into day ledgers (encoded once per 500 records)", t)
            continue
        now = datetime.now(UTC)
        result = postings_for(entry.applied, location, charts, now)
        t = step("posting rules", t)
        for posting in result.postings:
            key = day_batch_key(posting.legal_entity, posting.location_id, posting.business_date)
            ledger = ledgers.get(key) or open_day(posting.legal_entity, posting.location_id, posting.business_date)
            ledgers[key] = add_posting(ledger, posting)
        if n % 500 == 0:
            for ledger in ledgers.values():
                json_bytes(ledger)
        t = step("count into day ledgers (encoded once per 500 records)", t)
        for posting in result.postings:
            json_bytes(posting)
        t = step("encode postings", t)
        movement, done = entry.applied.movement, entry.applied_trace
        system, event_id = movement.source_system.value, movement.source_event_id
        lines = [fact(system, event_id, TraceStage.APPLIED, done.at, movement_id=movement.movement_id,
                           key=done.key, version=done.version, available=done.available, on_hand=done.on_hand,
                           previous_available=done.previous_available, replay=done.replay)]
        lines += [fact(system, event_id, TraceStage.POSTING, now, posting_id=p.posting_id, kind=p.kind.value,
                            movement_id=p.movement_id) for p in result.postings]
        record = b"\n".join(lines)
        step("trace record", t)
        if trace_records is not None:
            trace_records.append((trace_key(system, event_id), record))
    total = clock() - begin
    return per_record("records", len(entries), total, spent)


def measure_ingest(raw: list[workload.Record], master, trace_records: list[TraceRecord] | None = None,
                   ledger_entries: list[bytes] | None = None) -> dict[str, float]:
    """The ingest stage's own work per raw record, as agents/ingest.py does it: map it, build its
    trace record (received, one fact per movement), stamp and encode its movements and the ledger
    records of a POS transaction or a day close."""
    spent, step = stopwatch()
    clock = time.process_time
    begin = clock()
    for topic, _, value in raw:
        t = clock()
        now = datetime.now(UTC)
        mapped = map_raw(SOURCES[topic], value, MappingContext(master, RESERVATION_TTL, now))
        t = step("map the raw record", t)
        if not isinstance(mapped, Mapped):
            continue
        system, event_id = mapped.source_system.value, mapped.source_event_id
        lines = [fact(system, event_id, TraceStage.RECEIVED, now, movements=len(mapped.movements))]
        lines += [fact(system, event_id, TraceStage.MOVEMENT, now, movement_id=m.movement_id,
                            movement_type=m.movement_type.value, key=position_key(m.sku, m.location_id),
                            quantity=m.quantity) for m in mapped.movements]
        record = b"\n".join(lines)
        t = step("trace record", t)
        for movement in mapped.movements:
            json_bytes(movement.model_copy(update={"received_at": now}))
        entries = [LedgerEntry(pos_totals=mapped.pos_totals).to_json()] if mapped.pos_totals else []
        if mapped.day_close:
            entries.append(LedgerEntry(day_close=mapped.day_close).to_json())
        step("stamp and encode movements and ledger records", t)
        if trace_records is not None:
            trace_records.append((trace_key(system, event_id), record))
        if ledger_entries is not None:
            ledger_entries += entries
    total = clock() - begin
    return per_record("records", len(raw), total, spent)


def measure_lineage(trace_records: list[TraceRecord]) -> dict[str, float]:
    """The lineage stage's own work per trace record: fold it into its key's entry (kept in a dict)."""
    entries: dict[str, bytes | None] = {}
    clock = time.process_time
    begin = clock()
    for key, record in trace_records:
        entries[key] = apply_record(entries.get(key), record)
    total = clock() - begin
    return per_record("records", len(trace_records), total, {})


def best_run(repeat: int, measurement: Callable[[bool], dict[str, float]]) -> dict[str, float]:
    """The fastest of `repeat` runs of `measurement(first)`; `first` is true for the first run only,
    the one that keeps the records it makes for the stages after it."""
    return min((measurement(n == 0) for n in range(repeat)), key=lambda r: r["total_us"])


def pydantic_share(measurement: Callable[[], object]) -> dict[str, float]:
    """Shares of `measurement`'s own-function time (cProfile's tottime, the stopwatch's calls left
    out) spent in pydantic: building, copying and validating models, and encoding and decoding
    records (pydantic-core's `to_json`, `validate_json`; orjson's calls counted with them). cProfile
    weighs Python-level calls more than native ones, so the shares are rough."""
    profile = cProfile.Profile()
    profile.runcall(measurement)
    spent = {"models": 0.0, "codecs": 0.0, "other": 0.0}
    for (path, _, name), (_, _, own, _, _) in pstats.Stats(profile).stats.items():
        if "process_time" in name or (path == __file__ and name == "step"):
            continue
        if "to_json" in name or "validate_json" in name or "orjson" in name:
            spent["codecs"] += own
        elif "pydantic" in path or "pydantic_core" in name:
            spent["models"] += own
        else:
            spent["other"] += own
    total = sum(spent.values())
    return {part: seconds / total for part, seconds in spent.items()}


def report(title: str, result: dict[str, float]) -> None:
    print(title)
    for name, value in result.items():
        if name not in ("movements", "records"):
            print(f"  {name:22s} {value:8.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.hotpath", description=__doc__)
    parser.add_argument("--skus", type=int, default=2_000)
    parser.add_argument("--locations", type=int, default=10)
    parser.add_argument("--events", type=int, default=12_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--deep-copy", action="store_true",
                        help="apply with the former model_copy(deep=True) working copy (the 'before' figure)")
    parser.add_argument("--pydantic-share", action="store_true",
                        help="also run each stage once under cProfile: how much of its time is pydantic")
    args = parser.parse_args()
    if args.deep_copy:
        import app.domain.positions as rules
        rules.working_copy = lambda position: position.model_copy(deep=True)
    catalogue = workload.catalogue_for(args.skus, args.locations)
    data = workload.build(args.skus, args.locations, args.events)
    master = workload.master_data(catalogue)
    trace_records: list[TraceRecord] = []
    totals: list[bytes] = []   # the ledger records ingest makes of POS transactions, for the finance stage
    values = [v for _, _, v in data.movements]
    entries: list[bytes] = []   # the position stage's ledger records, then ingest's, for the finance stage
    # Each stage's measurement; a `first` run keeps the records it makes for the stages after it.
    runs: dict[str, Callable[[bool], dict[str, float]]] = {
        "ingest": lambda first: measure_ingest(data.raw, master, trace_records if first else None,
                                               totals if first else None),
        "positions": lambda first: measure(values, entries if first else None),
        "finance": lambda first: measure_finance(entries, trace_records if first else None),
        "lineage": lambda first: measure_lineage(trace_records),
    }
    ingest = best_run(args.repeat, runs["ingest"])
    positions = best_run(args.repeat, runs["positions"])
    entries += totals
    finance = best_run(args.repeat, runs["finance"])
    lineage = best_run(args.repeat, runs["lineage"])
    best = f"best of {args.repeat}"
    report(f"ingest stage, {ingest['records']} raw records; {best}, CPU µs per raw record:", ingest)
    report(f"position stage, {positions['movements']} movements over {args.skus} SKUs x {args.locations} "
           f"locations; {best}, CPU µs per movement:", positions)
    report(f"finance stage, {finance['records']} ledger records; {best}, CPU µs per record:", finance)
    report(f"lineage stage, {lineage['records']} trace records (ingest's and finance's); {best}, "
           f"CPU µs per record:", lineage)
    raw_events = len(data.raw)
    shares = {"ingest": ingest["total_us"] * ingest["records"],
              "positions": positions["total_us"] * positions["movements"],
              "finance": finance["total_us"] * finance["records"],
              "lineage": lineage["total_us"] * lineage["records"]}
    print(f"per raw event ({positions['movements'] / raw_events:.2f} movements, {finance['records'] / raw_events:.2f} "
          f"ledger records, {lineage['records'] / raw_events:.2f} trace records), CPU µs:")
    for stage, us in shares.items():
        print(f"  {stage:22s} {us / raw_events:8.1f}")
    print(f"  {'all four stages':22s} {sum(shares.values()) / raw_events:8.1f}")
    if args.pydantic_share:
        print("share of each stage's time under cProfile: pydantic models (built, copied, validated), "
              "records encoded and decoded, the rest")
        for stage, run in runs.items():
            share = pydantic_share(partial(run, False))
            print(f"  {stage:22s} models {share['models']:5.0%}  codecs {share['codecs']:5.0%}  "
                  f"rest {share['other']:5.0%}")


if __name__ == "__main__":
    main()
