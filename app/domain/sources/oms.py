"""OMS reservation events → RELEASE, or RELEASE at the old location plus RESERVE at the new one."""
from __future__ import annotations

from app.domain.sources.common import (
    Mapped, MappingContext, Rejected, build_movement, require_item, require_location,
)
from app.models.canonical import MovementType, Role, SourceSystem
from app.models.raw import OmsReservationEvent, OmsType
from app.models.records import ErrorCode

SOURCE = SourceSystem.OMS


def map_oms(event: OmsReservationEvent, ctx: MappingContext) -> Mapped:
    require_location(ctx.master, event.from_location)
    sku = require_item(ctx.master, event.sku).sku
    common = dict(source=SOURCE, source_event_id=event.event_id, line=event.line_id, sku=sku,
                  quantity=event.quantity, correlation_id=event.order_id, occurred_at=event.occurred_at,
                  order_id=event.order_id, order_line_id=event.line_id)
    if event.type is OmsType.RELEASED:
        return Mapped(SOURCE, event.event_id, movements=[
            build_movement(movement_type=MovementType.RELEASE, location_id=event.from_location, **common)])

    if not event.to_location:
        raise Rejected(ErrorCode.SCHEMA_INVALID, "reservation_reassigned needs to_location")
    require_location(ctx.master, event.to_location)
    # Both legs are emitted at once: if the release races ahead of its RESERVE it is dead-lettered
    # as UNKNOWN_RESERVATION and a replay applies it, while the new reservation already holds stock.
    return Mapped(SOURCE, event.event_id, movements=[
        build_movement(movement_type=MovementType.RELEASE, role=Role.FROM,
                       location_id=event.from_location, **common),
        build_movement(movement_type=MovementType.RESERVE, role=Role.TO, location_id=event.to_location,
                       counterparty_location=event.from_location,
                       expires_at=event.occurred_at + ctx.reservation_ttl, **common),
    ])
