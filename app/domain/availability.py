"""Availability records (SPEC §3) and per-channel network availability, from positions."""
from __future__ import annotations

from datetime import datetime

from app.models.canonical import Movement, Position
from app.models.records import AvailabilityRecord, Cause


def cause_of(movement: Movement) -> Cause:
    return Cause(
        movement_id=movement.movement_id, movement_type=movement.movement_type.value,
        source_system=movement.source_system.value, source_event_id=movement.source_event_id,
        correlation_id=movement.correlation_id,
    )


def availability_record(position: Position, previous_available: int, movement: Movement,
                        emitted_at: datetime, unmatched_quantity: int = 0) -> AvailabilityRecord:
    return AvailabilityRecord(
        sku=position.sku, location_id=position.location_id, on_hand=position.on_hand,
        reserved=position.reserved, quality_control=position.quality_control, damaged=position.damaged,
        in_transit=position.in_transit, safety_stock=position.safety_stock, available=position.available,
        previous_available=previous_available, version=position.version, negative=position.negative,
        unmatched_quantity=unmatched_quantity, cause=cause_of(movement), occurred_at=movement.occurred_at,
        emitted_at=emitted_at,
    )


class PublishThrottle:
    """Coalesces channel updates: at most one publish per key per interval, the latest value always last.

    Pure bookkeeping over a monotonic clock supplied by the caller, so it is tested without sleeping.
    """

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self.last_published: dict[str, float] = {}
        self.pending: dict[str, object] = {}

    def offer(self, key: str, value: object, now: float) -> object | None:
        """Return the value to publish right now, or None if it must wait (it is then kept pending)."""
        last = self.last_published.get(key)
        if last is None or now - last >= self.interval:
            self.last_published[key] = now
            self.pending.pop(key, None)
            return value
        self.pending[key] = value
        return None

    def keep(self, key: str, value: object) -> None:
        """Hold a value found pending in the worker's state (another worker coalesced it): it is due
        at once unless this worker published the key within the interval."""
        self.pending[key] = value

    def due(self, now: float) -> list[tuple[str, object]]:
        """Pending values whose interval has passed: publish them (the final state is never dropped)."""
        ready = [(k, v) for k, v in self.pending.items() if now - self.last_published.get(k, 0.0) >= self.interval]
        for key, _ in ready:
            del self.pending[key]
            self.last_published[key] = now
        return ready
