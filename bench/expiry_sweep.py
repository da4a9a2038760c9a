"""What one reservation-expiry sweep (agents/expiry.py) costs a worker holding N positions:
`python -m bench.expiry_sweep [--positions N]`.

Builds N positions in 8 bare RocksDB stores (rocksdict, as the positions table keeps one per
partition), each as a store's SKU holds it after a few sales (`bench.workload.position_template`,
as the recovery benchmark writes them), a share of them holding an open reservation that is not yet due (so nothing is
released and the figures are the scan alone, which is what a sweep costs almost every time). Then
it scans them the way the sweep did until 2026-12-05 (every position listed first, then filtered)
and the way it does now (partition by partition, keeping only the positions with a reservation):
CPU, the longest stretch without a pause for the event loop, and the peak of Python memory the scan
allocates (tracemalloc, in a run of its own since tracing slows it).
"""
from __future__ import annotations

import argparse
import tempfile
import time
import tracemalloc
from datetime import UTC, datetime, timedelta

from rocksdict import Rdict

from app.domain.positions import may_hold_reservations, reservation_key
from app.models.canonical import OpenReservation, Position
from app.models.records import json_bytes
from bench.workload import position_template

PARTITIONS = 8


def stores_of(positions: int, holding_share: float) -> list[Rdict]:
    stores = [Rdict(tempfile.mkdtemp()) for _ in range(PARTITIONS)]
    template = position_template()
    later = datetime.now(UTC) + timedelta(days=3)
    every = max(1, round(1 / holding_share)) if holding_share else 0
    for n in range(positions):
        sku, location = f"SKU{n // 50:06d}", f"S{n % 50:03d}"
        value = template.replace("@SKU@", sku).replace("@LOC@", location).encode()
        if every and n % every == 0:
            held = OpenReservation(order_id=f"W{n}", line_id="1", quantity=1, expires_at=later)
            value = json_bytes(Position.model_validate_json(value).model_copy(
                update={"reservations": {reservation_key(f"W{n}", "1"): held}}))
        stores[n % PARTITIONS][f"{sku}@{location}".encode()] = value
    return stores


def scan_whole(stores: list[Rdict]) -> list[float]:
    """Before: `list(positions.table.items())`, then the filter: one stretch for the whole table."""
    start = time.process_time()
    listed = [item for store in stores for item in store.items()]
    holding = [item for item in listed if may_hold_reservations(item[1])]
    del listed, holding
    return [time.process_time() - start]


def scan_by_partition(stores: list[Rdict]) -> list[float]:
    """Now: each partition's positions with a reservation, the loop served between partitions."""
    stretches = []
    for store in stores:
        start = time.process_time()
        holding = [item for item in store.items() if may_hold_reservations(item[1])]
        del holding
        stretches.append(time.process_time() - start)
    return stretches


def peak_mb(scan, stores: list[Rdict]) -> float:
    tracemalloc.start()
    scan(stores)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--positions", type=int, default=1_000_000)
    parser.add_argument("--holding", type=float, default=0.02, help="share of positions with a reservation")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    stores = stores_of(args.positions, args.holding)
    size = sum(len(v) for store in stores for v in store.values()) / args.positions
    print(f"{args.positions:,} positions ({size:,.0f} B each) in {PARTITIONS} stores, "
          f"{args.holding:.0%} holding a reservation")
    for name, scan in (("every position listed, then filtered (before)", scan_whole),
                       ("partition by partition, filtered (now)", scan_by_partition)):
        runs = [scan(stores) for _ in range(args.runs)]
        best = min(runs, key=sum)
        print(f"  {name}: {sum(best) * 1000:,.0f} ms CPU, longest stretch {max(best) * 1000:,.0f} ms, "
              f"peak Python memory {peak_mb(scan, stores):,.1f} MB (best of {args.runs})")


if __name__ == "__main__":
    main()
