"""Reservation expiry: a timer finds reservations past RESERVATION_TTL and sends RELEASE movements.

Timers cannot write tables, so the release travels through inventory.movements like any other
movement and the position stage applies it (idempotently: its id is fixed by order and line).
"""
from __future__ import annotations

from agents.outputs import publish, utcnow
from agents.timers import each_apart, timer
from app.domain.keys import position_key
from app.domain.positions import expiry_movements, may_hold_reservations
from app.faust_app import movements_topic, settings
from app.models.canonical import Position
from tables.definitions import positions


@timer(settings.expiry_sweep_interval)
async def expire_reservations():
    now = utcnow()

    async def release_expired(item: tuple[bytes, bytes]) -> None:
        _, raw = item
        if may_hold_reservations(raw):
            for release in expiry_movements(Position.model_validate_json(raw), now):
                await publish(movements_topic, position_key(release.sku, release.location_id), release)
    await each_apart(list(positions.table.items()), release_expired, timer="expire_reservations",
                     what=lambda item: f"position {item[0]!r}")
