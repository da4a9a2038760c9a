"""Returns inspections → DISPOSITION movements (RESTOCK, DAMAGED or SCRAP of units held in QC)."""
from __future__ import annotations

from app.domain.sources.common import Mapped, MappingContext, build_movement, require_item, require_location
from app.models.canonical import MovementType, SourceSystem
from app.models.raw import ReturnInspection

SOURCE = SourceSystem.INSPECTIONS


def map_inspection(inspection: ReturnInspection, ctx: MappingContext) -> Mapped:
    require_location(ctx.master, inspection.location_id)
    movements = [
        build_movement(
            source=SOURCE, source_event_id=inspection.inspection_id, line=str(index),
            movement_type=MovementType.DISPOSITION, sku=require_item(ctx.master, line.sku).sku,
            location_id=inspection.location_id, quantity=line.quantity,
            correlation_id=inspection.inspection_id, occurred_at=inspection.occurred_at,
            reason=line.disposition.value,
        )
        for index, line in enumerate(inspection.lines, start=1)
    ]
    return Mapped(SOURCE, inspection.inspection_id, movements=movements)
