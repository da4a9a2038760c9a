"""Small builders of domain values for tests: sensible defaults, override what the test is about."""
from __future__ import annotations

from datetime import date, datetime, timezone
from decimal import Decimal
from typing import Any

from app.domain.sources.common import movement_id
from app.models.canonical import Applied, Channel, Movement, MovementType, Role, SourceSystem
from app.models.raw import Item, Location, LocationType

BUSINESS_DATE = date(2026, 11, 27)
OCCURRED_AT = datetime(2026, 11, 27, 10, 15, 3, tzinfo=timezone.utc)

# The on_hand direction of each type, for an Applied whose test does not care about the position.
_ON_HAND_SIGN = {
    MovementType.SALE: -1, MovementType.FULFIL: -1, MovementType.RETURN: 1, MovementType.RECEIPT: 1,
    MovementType.TRANSFER_IN: 1,
}
_REASON_SIGN = {"SHRINK": -1, "RECON_LOSS": -1, "FOUND": 1, "RECON_GAIN": 1, "SCRAP": -1}


def make_movement(**overrides: Any) -> Movement:
    """A store sale of 2 x SKU-1001 at S042 for 19.99 each with 3.20 tax, unless told otherwise."""
    fields: dict[str, Any] = {
        "movement_type": MovementType.SALE,
        "role": Role.LINE,
        "sku": "SKU-1001",
        "location_id": "S042",
        "quantity": 2,
        "source_system": SourceSystem.POS,
        "source_event_id": "S042-R3-000123",
        "source_line": "1",
        "correlation_id": "S042-R3-000123",
        "occurred_at": OCCURRED_AT,
        "business_date": BUSINESS_DATE,
        "currency": "USD",
        "channel": Channel.STORE,
        "unit_price": Decimal("19.99"),
        "tax": Decimal("3.20"),
    }
    fields.update(overrides)
    if "movement_id" not in fields:
        fields["movement_id"] = movement_id(SourceSystem(fields["source_system"]), fields["source_event_id"],
                                            fields["source_line"], Role(fields["role"]))
    return Movement(**fields)


def make_applied(movement: Movement, **overrides: Any) -> Applied:
    """The movement applied at unit cost 7.10 to a position that had enough stock and no later count."""
    fields: dict[str, Any] = {
        "movement": movement,
        "legal_entity": "US01",
        "version": 1,
        "on_hand_delta": _default_on_hand_delta(movement),
        "unit_cost": Decimal("7.10"),
        "avg_cost_after": Decimal("7.10"),
        "on_hand_after": 10,
    }
    fields.update(overrides)
    return Applied(**fields)


def make_location(**overrides: Any) -> Location:
    fields: dict[str, Any] = {
        "location_id": "S042",
        "type": LocationType.STORE,
        "legal_entity": "US01",
        "currency": "USD",
        "channels": ["store", "web"],
        "safety_stock": 0,
    }
    fields.update(overrides)
    return Location(**fields)


def make_item(**overrides: Any) -> Item:
    """SKU-1001 in cases of 12 at standard cost 7.00, with a UPC and an Amazon alias."""
    fields: dict[str, Any] = {
        "sku": "SKU-1001",
        "description": "Test item",
        "upcs": ["012345678905"],
        "marketplace_aliases": {"AMAZON": "AMZ-1001"},
        "case_pack": 12,
        "standard_cost": Decimal("7.00"),
        "active": True,
    }
    fields.update(overrides)
    return Item(**fields)


def _default_on_hand_delta(m: Movement) -> int:
    if m.movement_type in (MovementType.ADJUST, MovementType.DISPOSITION):
        return _REASON_SIGN.get(m.reason or "", 0) * m.quantity
    if m.movement_type is MovementType.TRANSFER_OUT and m.role is not Role.DESTINATION:
        return -m.quantity
    return _ON_HAND_SIGN.get(m.movement_type, 0) * m.quantity
