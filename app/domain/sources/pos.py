"""Store POS transactions → SALE / FULFIL (click-and-collect pickup) / RETURN movements, day close."""
from __future__ import annotations

from decimal import Decimal

from app.domain.postings import check_tenders
from app.domain.sources.common import (
    Mapped, MappingContext, build_movement, distinct_lines, require_item, require_location,
)
from app.models.canonical import Channel, DayClose, MovementType, PosTotals, SourceSystem
from app.models.raw import PosTransaction, PosType

SOURCE = SourceSystem.POS


def map_pos(txn: PosTransaction, ctx: MappingContext) -> Mapped:
    require_location(ctx.master, txn.store_id)
    if txn.type is PosType.DAY_CLOSE:
        close = DayClose(location_id=txn.store_id, business_date=txn.business_date,
                         transaction_id=txn.transaction_id, occurred_at=txn.occurred_at)
        return Mapped(SOURCE, txn.transaction_id, day_close=close)

    tender_problem = check_tenders(txn)
    is_return = txn.type is PosType.RETURN
    if is_return:
        movement_type = MovementType.RETURN
    else:
        # A sale that names an order is a click-and-collect pickup: it consumes that order's reservation.
        movement_type = MovementType.FULFIL if txn.order_id else MovementType.SALE

    movements = []
    for line, line_key in zip(txn.lines, distinct_lines(str(line.line_no) for line in txn.lines)):
        item = require_item(ctx.master, line.sku, line.upc)
        movements.append(build_movement(
            source=SOURCE,
            source_event_id=txn.transaction_id,
            line=line_key,
            movement_type=movement_type,
            sku=item.sku,
            location_id=txn.store_id,
            quantity=line.quantity,
            correlation_id=line.original_transaction_id or txn.order_id or txn.transaction_id,
            occurred_at=txn.occurred_at,
            business_date=txn.business_date,
            currency=txn.currency,
            channel=Channel.STORE,
            unit_price=line.unit_price,
            discount=line.discount,
            tax=line.tax,
            order_id=txn.order_id,
            inspection_required=line.inspection_required,
            original_transaction_id=line.original_transaction_id,
            revenue_on_hold=tender_problem is not None,
        ))

    totals = None
    if not is_return:
        totals = PosTotals(
            location_id=txn.store_id, business_date=txn.business_date, transaction_id=txn.transaction_id,
            units_sold=sum(line.quantity for line in txn.lines),
            gross=sum((line.unit_price * line.quantity - line.discount + line.tax for line in txn.lines),
                      Decimal("0")),
        )
    return Mapped(SOURCE, txn.transaction_id, movements=movements, pos_totals=totals,
                  finance_exceptions=[tender_problem] if tender_problem else [])
