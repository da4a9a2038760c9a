"""Pydantic models of each producer's native payload (SPEC §2.1), parsed once at the edge."""
from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator

from app.models.limits import Identifier, InRangeDate, Lines, Mapping, Money, Quantity, Text, in_range


def _assume_utc(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=timezone.utc)


# Times are UTC (SPEC §2): a producer that leaves the offset off means UTC. Never let a naive time in,
# it cannot be compared with the aware times already held in positions.
UtcDatetime = Annotated[datetime, AfterValidator(_assume_utc), AfterValidator(in_range)]
# Every field is bounded (SPEC §4 limits, app/models/limits.py): ids and codes by length, lists by
# count, numbers by magnitude and digits, dates by range.
Code = Annotated[Identifier, Field(max_length=64)]   # currencies, units, reasons, tender types


class RawModel(BaseModel):
    # Producers add fields over time; unknown fields are tolerated, missing or mistyped ones are not.
    model_config = ConfigDict(extra="ignore", frozen=True)


# --- POS -----------------------------------------------------------------------------------------

class PosType(StrEnum):
    SALE = "SALE"
    RETURN = "RETURN"
    DAY_CLOSE = "DAY_CLOSE"


class PosLine(RawModel):
    line_no: Quantity = Field(ge=0)
    sku: Identifier | None = None
    upc: Identifier | None = None
    quantity: Quantity = Field(gt=0)
    unit_price: Money = Field(ge=0)
    discount: Money = Decimal("0.00")
    tax: Money = Decimal("0.00")
    original_transaction_id: Identifier | None = None
    inspection_required: bool = False


class Tender(RawModel):
    type: Code
    amount: Money


class PosTransaction(RawModel):
    transaction_id: Identifier = Field(min_length=1)
    store_id: Identifier = Field(min_length=1)
    register_id: Identifier | None = None
    type: PosType
    business_date: InRangeDate
    occurred_at: UtcDatetime
    currency: Code = "USD"
    order_id: Identifier | None = None
    lines: Annotated[list[PosLine], Lines] = []
    tenders: Annotated[list[Tender], Lines] = []


# --- Ecommerce -----------------------------------------------------------------------------------

class EcomEvent(StrEnum):
    ORDER_CREATED = "order_created"
    ORDER_CANCELLED = "order_cancelled"
    ORDER_FULFILLED = "order_fulfilled"


class EcomLine(RawModel):
    line_id: Identifier
    sku: Identifier
    quantity: Quantity = Field(gt=0)
    unit_price: Money = Field(default=Decimal("0.00"), ge=0)
    tax: Money = Decimal("0.00")


class EcomOrder(RawModel):
    event_id: Identifier = Field(min_length=1)
    event: EcomEvent
    order_id: Identifier = Field(min_length=1)
    occurred_at: UtcDatetime
    currency: Code = "USD"
    fulfillment_location: Identifier = Field(min_length=1)
    lines: Annotated[list[EcomLine], Lines] = Field(min_length=1)


# --- Marketplace ---------------------------------------------------------------------------------

class MarketplaceStatus(StrEnum):
    ACCEPTED = "ACCEPTED"
    CANCELLED = "CANCELLED"
    SHIPPED = "SHIPPED"


class MarketplaceItem(RawModel):
    order_item_id: Identifier
    seller_sku: Identifier
    qty: Quantity = Field(gt=0)
    item_price: Money = Field(default=Decimal("0.00"), ge=0)
    item_tax: Money = Decimal("0.00")


class MarketplaceOrder(RawModel):
    message_id: Identifier = Field(min_length=1)
    marketplace: Identifier = Field(min_length=1)
    status: MarketplaceStatus
    order_id: Identifier = Field(min_length=1)
    occurred_at: UtcDatetime
    ship_node: Identifier = Field(min_length=1)
    currency: Code = "USD"
    items: Annotated[list[MarketplaceItem], Lines] = Field(min_length=1)


# --- OMS -----------------------------------------------------------------------------------------

class OmsType(StrEnum):
    REASSIGNED = "reservation_reassigned"
    RELEASED = "reservation_released"


class OmsReservationEvent(RawModel):
    event_id: Identifier = Field(min_length=1)
    type: OmsType
    order_id: Identifier
    line_id: Identifier
    sku: Identifier
    quantity: Quantity = Field(gt=0)
    from_location: Identifier
    to_location: Identifier | None = None
    occurred_at: UtcDatetime


# --- WMS -----------------------------------------------------------------------------------------

class WmsType(StrEnum):
    RECEIPT = "RECEIPT"
    TRANSFER_OUT = "TRANSFER_OUT"
    TRANSFER_IN = "TRANSFER_IN"
    CYCLE_COUNT = "CYCLE_COUNT"
    ADJUSTMENT = "ADJUSTMENT"
    TRANSFER_CLOSE = "TRANSFER_CLOSE"  # at the destination: the transfer is over (lines name its SKUs)


class WmsLine(RawModel):
    sku: Identifier
    quantity: Quantity = Field(default=0, ge=0)
    uom: Literal["CASE", "EACH"] | Code = "EACH"
    unit_cost: Money | None = Field(default=None, ge=0)
    counted_quantity: Quantity | None = Field(default=None, ge=0)
    reason: Code | None = None


class WmsEvent(RawModel):
    event_id: Identifier = Field(min_length=1)
    location_id: Identifier = Field(min_length=1)
    type: WmsType
    occurred_at: UtcDatetime
    reference: Identifier | None = None
    transfer_id: Identifier | None = None
    destination_id: Identifier | None = None
    lines: Annotated[list[WmsLine], Lines] = Field(min_length=1)


# --- Returns inspection --------------------------------------------------------------------------

class Disposition(StrEnum):
    RESTOCK = "RESTOCK"
    DAMAGED = "DAMAGED"
    SCRAP = "SCRAP"


class InspectionLine(RawModel):
    sku: Identifier
    quantity: Quantity = Field(gt=0)
    disposition: Disposition


class ReturnInspection(RawModel):
    inspection_id: Identifier = Field(min_length=1)
    location_id: Identifier = Field(min_length=1)
    occurred_at: UtcDatetime
    lines: Annotated[list[InspectionLine], Lines] = Field(min_length=1)


# --- Master data and ERP -------------------------------------------------------------------------

class Item(RawModel):
    sku: Identifier = Field(min_length=1)
    description: Text = ""
    upcs: Annotated[list[Identifier], Lines] = []
    marketplace_aliases: Annotated[dict[Identifier, Identifier], Mapping] = {}
    case_pack: Quantity | None = Field(default=None, gt=0)
    standard_cost: Money | None = Field(default=None, ge=0)
    active: bool = True


class LocationType(StrEnum):
    STORE = "STORE"
    DC = "DC"


class Location(RawModel):
    location_id: Identifier = Field(min_length=1)
    type: LocationType
    legal_entity: Identifier = Field(min_length=1)
    currency: Code = "USD"
    channels: Annotated[list[Identifier], Lines] = []
    safety_stock: Quantity = Field(default=0, ge=0)
    # IANA time zone of the location: a location without a POS (a DC) closes each business date by
    # the clock, DAY_CLOSE_AFTER after that date ends here (SPEC §5.3).
    timezone: Code = "UTC"

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown IANA time zone {value!r}") from None
        return value


class SnapshotBalance(RawModel):
    sku: Identifier
    on_hand: Quantity


class StockSnapshot(RawModel):
    snapshot_id: Identifier = Field(min_length=1)
    location_id: Identifier = Field(min_length=1)
    as_of: UtcDatetime
    balances: list[SnapshotBalance]
