"""How often a raw event sent right behind its own master data is applied: `python -m bench.master_race`.

Each pair is a new item and a new store (master.items, master.locations), then at once a receipt of
that item at that store (wms.events), as a retailer onboarding a store or launching an item might
send them. Master data reaches the ingest stage by another path than the receipt (the master stage
loads it into the global tables), and Kafka orders nothing across topics, so the receipt may be
mapped before its store or item is known: it is then dead-lettered as UNKNOWN_LOCATION or
UNKNOWN_ITEM (SPEC §4; replayable, but an operator has to). This counts, for `--pairs` pairs sent a
quarter of a second apart, how many receipts made an availability record, with the worker idle or
(`--load`) busy with a stream of POS sales of other SKUs at the same time.

One broker and one worker of this checkout, started here (like the e2e suite's); the worker reads
FETCH_MIN_BYTES and FETCH_MAX_WAIT_MS from the environment.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import threading
import time
from collections import Counter

from app import topics as t
from app.broker import LocalBroker
from app.domain.keys import position_key
from app.kafka_io import create_topics
from app.settings import REPO_ROOT
from tests.e2e.harness import WorkerProcess, free_ports, group_caught_up, read, send, wait_for_master
from tests.e2e.scenario import Scenario

HOME = REPO_ROOT / ".run" / "bench" / "master-race"
BACKGROUND_SKUS = 20


def sales_load(bootstrap: str, background: Scenario, stop: threading.Event) -> None:
    """POS sales of the background SKUs, 50 transactions a send, as fast as one producer sends them."""
    store, n = background.loc("S1"), 0
    while not stop.is_set():
        send(bootstrap, [background.pos(store, "SALE", [{"sku": background.sku(j % BACKGROUND_SKUS + 1), "quantity": 1,
                                                          "unit_price": "1.00"} for j in range(3)], at=n)
                         for _ in range(50)])
        n += 1


def run_pairs(bootstrap: str, worker: WorkerProcess, pairs: int, load: bool) -> tuple[int, Counter]:
    """Receipts applied (an availability record for their SKU at their store) out of `pairs`, and the
    dead letters of the others by code, counted once the worker has read everything sent."""
    run = f"r{os.getpid()}{int(time.time()) % 100000}{'L' if load else 'I'}"
    background = Scenario(f"{run}bg")
    send(bootstrap, [background.item(i) for i in range(1, BACKGROUND_SKUS + 1)] + [background.location("S1")])
    wait_for_master(worker, skus=[background.sku(i) for i in range(1, BACKGROUND_SKUS + 1)],
                    locations=[background.loc("S1")])
    stop = threading.Event()
    loader = threading.Thread(target=sales_load, args=(bootstrap, background, stop), daemon=True)
    if load:
        loader.start()
    keys, receipt_ids = [], set()
    try:
        for i in range(pairs):
            s = Scenario(f"{run}x{i}")
            store, sku = s.loc("S1"), s.sku(1)
            receipt = s.receipt(store, [(sku, 10, "7.00")], at=0)
            send(bootstrap, [s.item(1), s.location("S1")])
            send(bootstrap, [receipt])
            keys.append(position_key(sku, store))
            receipt_ids.add(receipt[2]["event_id"])
            time.sleep(0.25)
    finally:
        stop.set()
        if load:
            loader.join()
    # A busy worker is still working through the sales: count once it has committed all it was sent.
    group_caught_up(bootstrap, worker.app_id, [*t.RAW_TOPICS, t.MOVEMENTS], timeout=600)
    wanted = set(keys)
    applied = {r.key for r in read(bootstrap, t.AVAILABILITY, where=lambda r: r.key in wanted, expect=pairs,
                                   timeout=10)}
    letters = read(bootstrap, t.DLQ, where=lambda r: r.value.get("source_event_id") in receipt_ids,
                   expect=pairs - len(applied), timeout=10)
    return len(applied), Counter(r.value["error_code"] for r in letters)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.master_race", description=__doc__)
    parser.add_argument("--pairs", type=int, default=40)
    parser.add_argument("--load", action="store_true", help="POS sales of other SKUs sent meanwhile")
    parser.add_argument("--runs", type=int, default=1)
    args = parser.parse_args()
    shutil.rmtree(HOME, ignore_errors=True)
    port, controller_port, web_port = free_ports(3)
    broker = LocalBroker(home=HOME / "kafka", port=port, controller_port=controller_port)
    bootstrap = broker.start()
    worker = None
    try:
        asyncio.run(create_topics(bootstrap, 8))
        worker = WorkerProcess(bootstrap, HOME / "worker", web_port=web_port, app_id="master-race").start()
        fetch = (os.environ.get("FETCH_MIN_BYTES", "default"), os.environ.get("FETCH_MAX_WAIT_MS", "default"))
        for _ in range(args.runs):
            applied, letters = run_pairs(bootstrap, worker, args.pairs, args.load)
            print(f"{'busy' if args.load else 'idle'} worker, fetch min bytes / max wait {fetch[0]} / {fetch[1]}: "
                  f"{applied} of {args.pairs} receipts applied, dead letters {dict(letters)}", flush=True)
    finally:
        if worker is not None:
            worker.stop()
        broker.stop()


if __name__ == "__main__":
    main()
