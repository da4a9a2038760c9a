"""WMS and back-office events → RECEIPT, TRANSFER_OUT, TRANSFER_IN, COUNT and ADJUST movements."""
from __future__ import annotations

from app.domain.sources.common import (
    Mapped, MappingContext, Rejected, build_movement, require_item, require_location, to_eaches,
)
from app.models.canonical import MovementType, Role, SourceSystem
from app.models.raw import WmsEvent, WmsType
from app.models.records import ErrorCode

SOURCE = SourceSystem.WMS
ADJUSTMENT_REASONS = {"DAMAGED", "SHRINK", "FOUND", "WRITE_OFF", "REPAIRED"}

_MOVEMENT = {
    WmsType.RECEIPT: MovementType.RECEIPT,
    WmsType.TRANSFER_OUT: MovementType.TRANSFER_OUT,
    WmsType.TRANSFER_IN: MovementType.TRANSFER_IN,
    WmsType.CYCLE_COUNT: MovementType.COUNT,
    WmsType.ADJUSTMENT: MovementType.ADJUST,
    WmsType.TRANSFER_CLOSE: MovementType.TRANSFER_CLOSE,
}
_TRANSFER_TYPES = (WmsType.TRANSFER_OUT, WmsType.TRANSFER_IN, WmsType.TRANSFER_CLOSE)


def map_wms(event: WmsEvent, ctx: MappingContext) -> Mapped:
    require_location(ctx.master, event.location_id)
    movement_type = _MOVEMENT[event.type]
    role = Role.LINE
    extra: dict = {}
    if event.type in _TRANSFER_TYPES:
        # Both legs of a transfer meet on the transfer id; a WMS that sends none uses its reference.
        extra["transfer_id"] = event.transfer_id or event.reference or event.event_id
    if event.type is WmsType.TRANSFER_OUT:
        if not event.destination_id:
            raise Rejected(ErrorCode.SCHEMA_INVALID, "TRANSFER_OUT needs destination_id")
        require_location(ctx.master, event.destination_id)
        role = Role.ORIGIN
        extra["counterparty_location"] = event.destination_id

    movements = []
    for index, line in enumerate(event.lines, start=1):
        if event.type is WmsType.TRANSFER_CLOSE:
            # The close names the transfer's SKUs; what is lost is what the position still has in
            # transit, so a quantity, when given, is informational only.
            item = require_item(ctx.master, line.sku)
            movements.append(build_movement(
                source=SOURCE, source_event_id=event.event_id, line=str(index), role=role,
                movement_type=movement_type, sku=item.sku, location_id=event.location_id,
                quantity=line.quantity, correlation_id=extra["transfer_id"], occurred_at=event.occurred_at,
                **extra))
            continue
        item = require_item(ctx.master, line.sku)
        eaches_per_unit = to_eaches(item, 1, line.uom)
        quantity = line.quantity * eaches_per_unit
        line_extra = dict(extra)
        if event.type is WmsType.CYCLE_COUNT:
            if line.counted_quantity is None:
                raise Rejected(ErrorCode.SCHEMA_INVALID, f"CYCLE_COUNT line {index} has no counted_quantity")
            quantity = line.counted_quantity * eaches_per_unit
        elif quantity <= 0:
            raise Rejected(ErrorCode.SCHEMA_INVALID, f"line {index} has no quantity")
        if event.type is WmsType.ADJUSTMENT:
            if line.reason not in ADJUSTMENT_REASONS:
                raise Rejected(ErrorCode.SCHEMA_INVALID,
                               f"ADJUSTMENT line {index} reason must be one of {sorted(ADJUSTMENT_REASONS)}")
            line_extra["reason"] = line.reason
        if line.unit_cost is not None:
            # unit_cost is per unit of the line's uom (a case's cost for CASE lines): bring it to eaches.
            line_extra["unit_cost"] = line.unit_cost / eaches_per_unit
        movements.append(build_movement(
            source=SOURCE, source_event_id=event.event_id, line=str(index), role=role,
            movement_type=movement_type, sku=item.sku, location_id=event.location_id, quantity=quantity,
            correlation_id=extra.get("transfer_id") or event.reference or event.event_id,
            occurred_at=event.occurred_at, **line_extra,
        ))
    return Mapped(SOURCE, event.event_id, movements=movements)
