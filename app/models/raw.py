"""Pydantic models of each producer's native payload (SPEC §2.1), parsed once at the edge."""
from __future__ import annotations

from datetime import date, datetime, timezone
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, NonNegativeInt, field_validator


def _assume_utc(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=timezone.utc)


# Times are UTC (SPEC §2): a producer that leaves the offset off means UTC. Never let a naive time in,
# it cannot be compared with the aware times already held in positions.
UtcDatetime = Annotated[datetime, AfterValidator(_assume_utc)]


class RawModel(BaseModel):
    # Producers add fields over time; unknown fields are tolerated, missing or mistyped ones are not.
    model_config = ConfigDict(extra="ignore", frozen=True)


# --- POS -----------------------------------------------------------------------------------------

class PosType(StrEnum):
    SALE = "SALE"
    RETURN = "RETURN"
    DAY_CLOSE = "DAY_CLOSE"


class PosLine(RawModel):
    line_no: int
    sku: str | None = None
    upc: str | None = None
    quantity: int = Field(gt=0)
    unit_price: Decimal = Field(ge=0)
    discount: Decimal = Decimal("0.00")
    tax: Decimal = Decimal("0.00")
    original_transaction_id: str | None = None
    inspection_required: bool = False


class Tender(RawModel):
    type: str
    amount: Decimal


class PosTransaction(RawModel):
    transaction_id: str = Field(min_length=1)
    store_id: str = Field(min_length=1)
    register_id: str | None = None
    type: PosType
    business_date: date
    occurred_at: UtcDatetime
    currency: str = "USD"
    order_id: str | None = None
    lines: list[PosLine] = []
    tenders: list[Tender] = []


# --- Ecommerce -----------------------------------------------------------------------------------

class EcomEvent(StrEnum):
    ORDER_CREATED = "order_created"
    ORDER_CANCELLED = "order_cancelled"
    ORDER_FULFILLED = "order_fulfilled"


class EcomLine(RawModel):
    line_id: str
    sku: str
    quantity: int = Field(gt=0)
    unit_price: Decimal = Field(default=Decimal("0.00"), ge=0)
    tax: Decimal = Decimal("0.00")


class EcomOrder(RawModel):
    event_id: str = Field(min_length=1)
    event: EcomEvent
    order_id: str = Field(min_length=1)
    occurred_at: UtcDatetime
    currency: str = "USD"
    fulfillment_location: str = Field(min_length=1)
    lines: list[EcomLine] = Field(min_length=1)


# --- Marketplace ---------------------------------------------------------------------------------

class MarketplaceStatus(StrEnum):
    ACCEPTED = "ACCEPTED"
    CANCELLED = "CANCELLED"
    SHIPPED = "SHIPPED"


class MarketplaceItem(RawModel):
    order_item_id: str
    seller_sku: str
    qty: int = Field(gt=0)
    item_price: Decimal = Field(default=Decimal("0.00"), ge=0)
    item_tax: Decimal = Decimal("0.00")


class MarketplaceOrder(RawModel):
    message_id: str = Field(min_length=1)
    marketplace: str = Field(min_length=1)
    status: MarketplaceStatus
    order_id: str = Field(min_length=1)
    occurred_at: UtcDatetime
    ship_node: str = Field(min_length=1)
    currency: str = "USD"
    items: list[MarketplaceItem] = Field(min_length=1)


# --- OMS -----------------------------------------------------------------------------------------

class OmsType(StrEnum):
    REASSIGNED = "reservation_reassigned"
    RELEASED = "reservation_released"


class OmsReservationEvent(RawModel):
    event_id: str = Field(min_length=1)
    type: OmsType
    order_id: str
    line_id: str
    sku: str
    quantity: int = Field(gt=0)
    from_location: str
    to_location: str | None = None
    occurred_at: UtcDatetime


# --- WMS -----------------------------------------------------------------------------------------

class WmsType(StrEnum):
    RECEIPT = "RECEIPT"
    TRANSFER_OUT = "TRANSFER_OUT"
    TRANSFER_IN = "TRANSFER_IN"
    CYCLE_COUNT = "CYCLE_COUNT"
    ADJUSTMENT = "ADJUSTMENT"


class WmsLine(RawModel):
    sku: str
    quantity: NonNegativeInt = 0
    uom: Literal["CASE", "EACH"] | str = "EACH"
    unit_cost: Decimal | None = Field(default=None, ge=0)
    counted_quantity: NonNegativeInt | None = None
    reason: str | None = None


class WmsEvent(RawModel):
    event_id: str = Field(min_length=1)
    location_id: str = Field(min_length=1)
    type: WmsType
    occurred_at: UtcDatetime
    reference: str | None = None
    transfer_id: str | None = None
    destination_id: str | None = None
    lines: list[WmsLine] = Field(min_length=1)


# --- Returns inspection --------------------------------------------------------------------------

class Disposition(StrEnum):
    RESTOCK = "RESTOCK"
    DAMAGED = "DAMAGED"
    SCRAP = "SCRAP"


class InspectionLine(RawModel):
    sku: str
    quantity: int = Field(gt=0)
    disposition: Disposition


class ReturnInspection(RawModel):
    inspection_id: str = Field(min_length=1)
    location_id: str = Field(min_length=1)
    occurred_at: UtcDatetime
    lines: list[InspectionLine] = Field(min_length=1)


# --- Master data and ERP -------------------------------------------------------------------------

class Item(RawModel):
    sku: str = Field(min_length=1)
    description: str = ""
    upcs: list[str] = []
    marketplace_aliases: dict[str, str] = {}
    case_pack: int | None = Field(default=None, gt=0)
    standard_cost: Decimal | None = Field(default=None, ge=0)
    active: bool = True


class LocationType(StrEnum):
    STORE = "STORE"
    DC = "DC"


class Location(RawModel):
    location_id: str = Field(min_length=1)
    type: LocationType
    legal_entity: str = Field(min_length=1)
    currency: str = "USD"
    channels: list[str] = []
    safety_stock: NonNegativeInt = 0
    # IANA time zone of the location: a location without a POS (a DC) closes each business date by
    # the clock, DAY_CLOSE_AFTER after that date ends here (SPEC §5.3).
    timezone: str = "UTC"

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
    sku: str
    on_hand: int


class StockSnapshot(RawModel):
    snapshot_id: str = Field(min_length=1)
    location_id: str = Field(min_length=1)
    as_of: UtcDatetime
    balances: list[SnapshotBalance]
