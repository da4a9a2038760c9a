"""Master data stage: item and location masters into the global tables every worker reads."""
from __future__ import annotations

from datetime import UTC, datetime

from agents.outputs import dead_letter, publish, utcnow
from agents.streams import each_event, fetch_stalled_partitions_again
from agents.timers import timer
from app import topics
from app.domain.keys import position_key
from app.domain.master import aliases_of, location_changes
from app.faust_app import app, master_items_topic, master_locations_topic, movements_topic, settings
from app.models.raw import Item, Location
from app.domain.parsing import parse_record
from app.models.records import Rejection
from tables.catch_up import global_tables
from tables.definitions import item_aliases, items, locations


async def _load_item(event, item: Item) -> None:
    items.set(item.sku, item)
    for alias in aliases_of(item):
        item_aliases[alias.encode()] = item.sku.encode()


async def _load_location(event, location: Location) -> None:
    """Load the location, after telling the position stage when its safety stock or channels changed.

    The control records go first and the table after: a worker stopped in between reads the record
    again, still finds the old master, and sends the same control records again (same ids, which the
    positions remember), where the other order could lose them. Kafka Streams' way, since positions are
    partitioned by SKU@LOCATION and owned by other workers: this stage writes none of them, it sends
    one record to every partition of the position stage's input, whose owner re-emits its own.
    """
    message = event.message
    occurred_at = datetime.fromtimestamp(message.timestamp, UTC) if message.timestamp else utcnow()
    changes = location_changes(locations.get(location.location_id), location, partitions=settings.topic_partitions,
                               record_partition=message.partition, record_offset=message.offset,
                               occurred_at=occurred_at)
    for change in changes:
        await publish(movements_topic, position_key("*", change.location_id), change, partition=change.partition,
                      headers=[(topics.CONTROL_HEADER, topics.LOCATION_CHANGE)])
    locations.set(location.location_id, location)


async def _load_master(stream, model, topic: str, load) -> None:
    async def load_record(event) -> None:
        if event.value is None:
            return  # a compaction tombstone
        record = parse_record(model, event.value)
        if isinstance(record, Rejection):
            await dead_letter(event.message, topic, event.value, record, stage="master")
            return
        await load(event, record)

    await each_event(stream, "master", load_record)


@app.agent(master_items_topic)
async def item_master(stream):
    await _load_master(stream, Item, topics.MASTER_ITEMS, _load_item)


@app.agent(master_locations_topic)
async def location_master(stream):
    await _load_master(stream, Location, topics.MASTER_LOCATIONS, _load_location)


@timer(1.0)
async def global_tables_catch_up() -> None:
    # Agents start the catch-up with their first record after a rebalance; this starts it on a
    # worker with nothing to read too, so /readyz reports it (app/web/health.py).
    if app.tables.recovery.completed.is_set() and not app.rebalancing:
        await global_tables.wait(app)


@timer(5.0)
async def stalled_partitions_watch() -> None:
    # Here because every worker runs the master stage, whatever STAGES it runs (app/worker.py).
    await fetch_stalled_partitions_again(app)
