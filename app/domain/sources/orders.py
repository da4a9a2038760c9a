"""Ecommerce and marketplace orders → RESERVE on creation, RELEASE on cancel, FULFIL on shipment."""
from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from app.domain.master import marketplace_alias
from app.domain.sources.common import (
    Mapped, MappingContext, Rejected, build_movement, distinct_lines, require_item, require_location,
)
from app.models.canonical import Channel, Movement, MovementType, SourceSystem
from app.models.raw import EcomEvent, EcomOrder, MarketplaceOrder, MarketplaceStatus
from app.models.records import ErrorCode

_ECOM_MOVEMENT = {
    EcomEvent.ORDER_CREATED: MovementType.RESERVE,
    EcomEvent.ORDER_CANCELLED: MovementType.RELEASE,
    EcomEvent.ORDER_FULFILLED: MovementType.FULFIL,
}
_MARKETPLACE_MOVEMENT = {
    MarketplaceStatus.ACCEPTED: MovementType.RESERVE,
    MarketplaceStatus.CANCELLED: MovementType.RELEASE,
    MarketplaceStatus.SHIPPED: MovementType.FULFIL,
}


def _order_line_movement(
    ctx: MappingContext, *, source: SourceSystem, event_id: str, movement_type: MovementType,
    order_id: str, line_id: str, sku: str, location_id: str, quantity: int, occurred_at: datetime,
    currency: str, channel: Channel, unit_price: Decimal, tax: Decimal,
) -> Movement:
    commercial: dict = {}
    if movement_type is MovementType.FULFIL:
        commercial = {"unit_price": unit_price, "tax": tax}
    elif movement_type is MovementType.RESERVE:
        commercial = {"expires_at": occurred_at + ctx.reservation_ttl}
    return build_movement(
        source=source, source_event_id=event_id, line=line_id, movement_type=movement_type,
        sku=sku, location_id=location_id, quantity=quantity, correlation_id=order_id,
        occurred_at=occurred_at, currency=currency, channel=channel,
        order_id=order_id, order_line_id=line_id, **commercial,
    )


def map_ecom(order: EcomOrder, ctx: MappingContext) -> Mapped:
    require_location(ctx.master, order.fulfillment_location)
    movement_type = _ECOM_MOVEMENT[order.event]
    movements = [
        _order_line_movement(
            ctx, source=SourceSystem.ECOM, event_id=order.event_id, movement_type=movement_type,
            order_id=order.order_id, line_id=line_key, sku=require_item(ctx.master, line.sku).sku,
            location_id=order.fulfillment_location, quantity=line.quantity, occurred_at=order.occurred_at,
            currency=order.currency, channel=Channel.WEB, unit_price=line.unit_price, tax=line.tax,
        )
        # A repeated line id is a line of its own for its reservation too (see distinct_lines).
        for line, line_key in zip(order.lines, distinct_lines(line.line_id for line in order.lines))
    ]
    return Mapped(SourceSystem.ECOM, order.event_id, movements=movements)


def map_marketplace(order: MarketplaceOrder, ctx: MappingContext) -> Mapped:
    require_location(ctx.master, order.ship_node)
    movement_type = _MARKETPLACE_MOVEMENT[order.status]
    movements = []
    for item, line_key in zip(order.items, distinct_lines(item.order_item_id for item in order.items)):
        sku = ctx.master.sku_for_alias(marketplace_alias(order.marketplace, item.seller_sku))
        if sku is None:
            raise Rejected(ErrorCode.UNKNOWN_ITEM,
                           f"{order.marketplace} seller_sku {item.seller_sku!r} is no item's marketplace alias")
        movements.append(_order_line_movement(
            ctx, source=SourceSystem.MARKETPLACE, event_id=order.message_id, movement_type=movement_type,
            order_id=order.order_id, line_id=line_key, sku=sku, location_id=order.ship_node,
            quantity=item.qty, occurred_at=order.occurred_at, currency=order.currency,
            channel=Channel.MARKETPLACE, unit_price=item.item_price, tax=item.item_tax,
        ))
    return Mapped(SourceSystem.MARKETPLACE, order.message_id, movements=movements)
