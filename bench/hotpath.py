"""Broker-free CPU cost of the position stage's own work per movement: `python -m bench.hotpath`.

Times (process CPU time, so a busy box inflates it less than wall time) each step agents/positions.py
does for one movement, without Faust or Kafka: decode the movement, decode the stored position,
apply the rule, encode the position, build and encode the availability record, fold it into the
SKU's channel sums, build and encode the ledger record. Use it for before/after figures of hot-path
changes; the end-to-end runs show how much of a worker's time this is.
"""
from __future__ import annotations

import argparse
import time
from datetime import UTC, datetime
from decimal import Decimal

from app.domain.availability import availability_record
from app.domain.keys import position_key
from app.domain.positions import PositionContext, apply, new_position
from app.domain.network import channel_shares, fold_location
from app.models.canonical import Movement, Position, SkuNetwork, working_copy
from app.models.finance_ledger import AppliedTrace, LedgerEntry
from bench import workload


MASTER_GENERATION = 0   # the location master does not change during the measurement


def measure(movements: list[bytes]) -> dict[str, float]:
    ctx = PositionContext(now_epoch=int(time.time()), dedupe_retention=604800, safety_stock=1,
                          standard_cost=Decimal("7.25"), legal_entity="US01")
    store: dict[str, bytes] = {}
    networks: dict[str, SkuNetwork] = {}

    def channels_of(location_id: str) -> list[str]:
        return ["store", "web"] if location_id.startswith("S") else ["web"]
    spent: dict[str, float] = {}
    clock = time.process_time

    def step(name: str, started: float) -> float:
        now = clock()
        spent[name] = spent.get(name, 0.0) + now - started
        return now

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
        LedgerEntry(applied=outcome.applied, applied_trace=AppliedTrace(
            key=key, version=record.version, available=record.available, on_hand=record.on_hand,
            previous_available=record.previous_available, at=now)).model_dump_json().encode()
        step("ledger record (it carries the applied trace fact)", t)
    total = clock() - begin
    return {"movements": len(movements), "total_us": total / len(movements) * 1e6,
            **{k: v / len(movements) * 1e6 for k, v in spent.items()}}


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
    runs = [measure(values) for _ in range(args.repeat)]
    best = min(runs, key=lambda r: r["total_us"])
    print(f"{best['movements']} movements over {args.skus} SKUs x {args.locations} locations; best of {args.repeat}, "
          f"CPU µs per movement:")
    for name, value in best.items():
        if name != "movements":
            print(f"  {name:22s} {value:8.1f}")


if __name__ == "__main__":
    main()
