"""Master data stage: item and location masters into the global tables every worker reads."""
from __future__ import annotations


from agents.outputs import dead_letter
from agents.streams import each_event, fetch_stalled_partitions_again
from app import topics
from app.domain.master import aliases_of
from app.faust_app import app, master_items_topic, master_locations_topic
from app.models.raw import Item, Location
from app.domain.parsing import parse_record
from app.models.records import Rejection
from tables.catch_up import global_tables
from tables.definitions import item_aliases, items, locations


def _load_item(item: Item) -> None:
    items.set(item.sku, item)
    for alias in aliases_of(item):
        item_aliases[alias.encode()] = item.sku.encode()


def _load_location(location: Location) -> None:
    locations.set(location.location_id, location)


async def _load_master(stream, model, topic: str, load) -> None:
    async def load_record(event) -> None:
        if event.value is None:
            return  # a compaction tombstone
        record = parse_record(model, event.value)
        if isinstance(record, Rejection):
            await dead_letter(event.message, topic, event.value, record, stage="master")
            return
        load(record)

    await each_event(stream, "master", load_record)


@app.agent(master_items_topic)
async def item_master(stream):
    await _load_master(stream, Item, topics.MASTER_ITEMS, _load_item)


@app.agent(master_locations_topic)
async def location_master(stream):
    await _load_master(stream, Location, topics.MASTER_LOCATIONS, _load_location)


@app.timer(1.0)
async def global_tables_catch_up() -> None:
    # Agents start the catch-up with their first record after a rebalance; this starts it on a
    # worker with nothing to read too, so /readyz reports it (app/web/health.py).
    if app.tables.recovery.completed.is_set() and not app.rebalancing:
        await global_tables.wait(app)


@app.timer(5.0)
async def stalled_partitions_watch() -> None:
    # Here because every worker runs the master stage, whatever STAGES it runs (app/worker.py).
    await fetch_stalled_partitions_again(app)
