"""Reservation expiry: a timer finds reservations past RESERVATION_TTL and sends RELEASE movements.

Timers cannot write tables, so the release travels through inventory.movements like any other
movement and the position stage applies it (idempotently: its id is fixed by order and line).
"""
from __future__ import annotations

from agents.outputs import publish, utcnow
from agents.timers import each_apart, each_owned_partition, timer
from app.domain.keys import position_key
from app.domain.positions import expiry_movements, may_hold_reservations
from app.faust_app import movements_topic, settings
from app.models.canonical import Position
from tables.definitions import positions


@timer(settings.expiry_sweep_interval)
async def expire_reservations():
    """Scan each partition of the positions this worker owns, one after the other, keeping from the
    scan only the positions that hold a reservation (`may_hold_reservations`, without parsing).

    It used to list every position of the worker first (`list(table.items())`): at a million
    positions that held all their bytes at once, each sweep, and kept the event loop for the whole
    scan. A partition's scan is still synchronous (nothing may close its store under the iterator),
    but the agents run between partitions, and what it keeps is the positions with reservations."""
    now = utcnow()

    async def release_expired(item: tuple[bytes, bytes]) -> None:
        for release in expiry_movements(Position.model_validate_json(item[1]), now):
            await publish(movements_topic, position_key(release.sku, release.location_id), release)

    async def sweep(partition: int) -> None:
        holding = [(key, raw) for key, raw in positions.raw_items_in_partition(partition)
                   if may_hold_reservations(raw)]
        await each_apart(holding, release_expired, timer="expire_reservations",
                         what=lambda item: f"position {item[0]!r}")
    await each_owned_partition(movements_topic, sweep, timer="expire_reservations")
