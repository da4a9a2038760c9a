"""The pipeline's own records: canonical movements, positions, and what applying a movement did."""
from __future__ import annotations

import functools
from datetime import date, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field

M = TypeVar("M", bound=BaseModel)


class MovementType(StrEnum):
    SALE = "SALE"
    FULFIL = "FULFIL"
    RETURN = "RETURN"
    RESERVE = "RESERVE"
    RELEASE = "RELEASE"
    RECEIPT = "RECEIPT"
    TRANSFER_OUT = "TRANSFER_OUT"
    TRANSFER_IN = "TRANSFER_IN"
    COUNT = "COUNT"
    ADJUST = "ADJUST"
    DISPOSITION = "DISPOSITION"
    TRANSFER_CLOSE = "TRANSFER_CLOSE"  # WMS: the transfer is over, what is still in transit is lost


class Role(StrEnum):
    """Which part of a source line a movement stands for; part of the movement id."""

    LINE = "line"
    ORIGIN = "origin"            # TRANSFER_OUT at the shipping location
    DESTINATION = "destination"  # TRANSFER_OUT's in-transit leg at the receiving location
    FROM = "from"                # OMS re-sourcing: release at the old location
    TO = "to"                    # OMS re-sourcing: reserve at the new location
    EXPIRY = "expiry"            # reservation expired after RESERVATION_TTL
    RECON = "recon"              # correction raised by reconciliation


class SourceSystem(StrEnum):
    POS = "pos"
    ECOM = "ecom"
    MARKETPLACE = "marketplace"
    OMS = "oms"
    WMS = "wms"
    INSPECTIONS = "inspections"
    PIPELINE = "pipeline"


class Channel(StrEnum):
    """Where revenue came from: decides tender clearing (store) versus channel receivable."""

    STORE = "store"
    WEB = "web"
    MARKETPLACE = "marketplace"
    INTERNAL = "internal"


class Movement(BaseModel):
    """One canonical inventory movement for one SKU at one location (key `SKU@LOCATION`)."""

    model_config = ConfigDict(frozen=True)

    movement_id: str
    movement_type: MovementType
    role: Role = Role.LINE
    sku: str
    location_id: str
    quantity: int  # eaches, always >= 0; the type says the direction. COUNT: the counted quantity.
    source_system: SourceSystem
    source_event_id: str
    source_line: str
    correlation_id: str
    occurred_at: datetime
    business_date: date
    currency: str = "USD"
    channel: Channel = Channel.INTERNAL
    unit_price: Decimal | None = None
    discount: Decimal = Decimal("0")   # line total
    tax: Decimal = Decimal("0")        # line total
    unit_cost: Decimal | None = None   # per each: receipt cost, or the origin's cost carried by a transfer
    order_id: str | None = None
    order_line_id: str | None = None
    reason: str | None = None
    inspection_required: bool = False
    original_transaction_id: str | None = None
    transfer_id: str | None = None
    counterparty_location: str | None = None
    expires_at: datetime | None = None  # RESERVE only
    # Revenue of this line is held back (e.g. tenders did not match the basket): a finance
    # exception was raised for the transaction; stock and COGS still move.
    revenue_on_hold: bool = False
    received_at: datetime | None = None  # when the pipeline read the raw record: latency is measured from it


class OpenReservation(BaseModel):
    order_id: str
    line_id: str | None
    quantity: int
    expires_at: datetime | None = None


class InTransitTransfer(BaseModel):
    quantity: int
    unit_cost: Decimal | None = None


class Emitted(BaseModel):
    """What applying one movement emitted, kept for REPLAY_WINDOW seconds in its position.

    The position is saved (RocksDB at once, its changelog soon after) before the outputs of the
    movement are confirmed by Kafka. If the worker dies in between, the movement's Kafka record is
    delivered again and found already applied: this is what lets that *replay* emit the same
    outputs again (same version, same buckets, same costs) instead of nothing.
    """

    record: str                  # "partition@offset" of the inventory.movements record that applied it
    at: int                      # applied at, epoch seconds
    version: int
    previous_available: int
    buckets: tuple[int, int, int, int, int, int]  # on_hand, reserved, quality_control, damaged, in_transit, safety_stock
    on_hand_delta: int
    late_quantity: int = 0
    count_difference: int = 0
    unit_cost: Decimal | None = None
    avg_cost_after: Decimal | None = None
    unmatched_quantity: int = 0
    lost_in_transit: int = 0
    found_after_close: int = 0
    revalued_quantity: int = 0
    cost_adjustment: Decimal = Decimal(0)


class Position(BaseModel):
    """Everything known about one SKU at one location; one table value, one changelog write.

    Its dicts (and SkuNetwork's) default through a factory: pydantic deep-copies a literal `{}`
    default for every new model, about a tenth of the position stage's own work (BENCHMARKS.md)."""

    sku: str
    location_id: str
    on_hand: int = 0
    reserved: int = 0
    quality_control: int = 0
    damaged: int = 0
    in_transit: int = 0
    safety_stock: int = 0
    version: int = 0
    avg_cost: Decimal | None = None
    reservations: dict[str, OpenReservation] = Field(default_factory=dict)
    transfers: dict[str, InTransitTransfer] = Field(default_factory=dict)
    # Transfers closed here (mark of the transfer id -> unit cost of what the close wrote off), the
    # last CLOSED_TRANSFERS_KEPT of them: units that turn up after the close are found, not in transit.
    closed_transfers: dict[str, Decimal | None] = Field(default_factory=dict)
    last_count_at: datetime | None = None
    # movement id -> [applied epoch, occurred epoch, on_hand delta]; pruned after DEDUPE_RETENTION.
    # Kept in the same record as the buckets so a crash can never separate "applied" from "marked as
    # applied"; the deltas let reconciliation compare with on_hand as of a snapshot's time.
    applied: dict[str, list[int]] = Field(default_factory=dict)
    # movement id -> what applying it emitted, for the last few minutes: see Emitted.
    emitted: dict[str, Emitted] = Field(default_factory=dict)
    # movement id -> rejected at (epoch) for a RELEASE of a reservation the position did not know:
    # the same movement again gets the same answer (only a DLQ replay asks again); pruned like `applied`.
    rejected: dict[str, int] = Field(default_factory=dict)

    @property
    def available(self) -> int:
        return max(0, self.on_hand - self.quality_control - self.damaged - self.reserved - self.safety_stock)

    @property
    def negative(self) -> bool:
        return self.on_hand < 0


class Applied(BaseModel):
    """What applying one movement did to its position: the input to availability and finance."""

    movement: Movement
    legal_entity: str | None = None
    version: int
    on_hand_delta: int           # change actually made to on_hand (0 when the late rule kept it off)
    late_quantity: int = 0       # signed on_hand change the late-against-count rule kept off
    count_difference: int = 0    # COUNT: counted − on_hand before
    unit_cost: Decimal | None    # cost per each the movement is valued at (None: unknown)
    avg_cost_after: Decimal | None
    on_hand_after: int
    # FULFIL beyond the open reservation; disposition, write-off or repair beyond its bucket;
    # TRANSFER_CLOSE of a transfer the position does not know.
    unmatched_quantity: int = 0
    lost_in_transit: int = 0     # TRANSFER_CLOSE: units still in transit, written off
    found_after_close: int = 0   # TRANSFER_IN of a closed transfer: units written off, found after all
    # An inflow covering negative on_hand (SPEC §5.1): that many units, revalued by this signed amount
    # (positive: they cost more than they left at; Dr COGS / Cr inventory).
    revalued_quantity: int = 0
    cost_adjustment: Decimal = Decimal(0)


class DayClose(BaseModel):
    """A store closed its POS business day: the finance stage closes the day batch."""

    model_config = ConfigDict(frozen=True)

    location_id: str
    business_date: date
    transaction_id: str
    occurred_at: datetime


class PosTotals(BaseModel):
    """What the POS itself says it sold in one transaction: the control side of the day batch."""

    model_config = ConfigDict(frozen=True)

    location_id: str
    business_date: date
    transaction_id: str
    units_sold: int
    gross: Decimal


class SkuNetwork(BaseModel):
    """One SKU across the network: each location's latest availability, and per-channel versions."""

    sku: str
    by_location: dict[str, list[int]] = Field(default_factory=dict)     # location -> [available, position version]
    channel_versions: dict[str, int] = Field(default_factory=dict)
    channel_totals: dict[str, int] = Field(default_factory=dict)
    # channel -> mark of the locations its total counts: a location leaving the channel (its master
    # changed) is a change of the channel even when its total stays (app/domain/network.py).
    channel_members: dict[str, str] = Field(default_factory=dict)
    # channel -> version coalesced and not yet published when this value was saved: kept in the
    # table, not only in memory, so whichever worker owns the SKU next publishes it (SPEC §3).
    pending: dict[str, int] = Field(default_factory=dict)
    # What the last fold summed (app/domain/network.py, ChannelSums): in memory only, never written
    # (excluded from the JSON). A field, not a private attribute: those are read and set through
    # pydantic's Python-level __getattr__/__setattr__, a few µs per fold.
    channel_sums: Any = Field(default=None, exclude=True)


class LocationChange(BaseModel):
    """Internal control record: a location's safety stock or channels changed (SPEC §3 "Master data
    changes reach the channels").

    The master stage sends one to every partition of inventory.movements (explicit partition, header
    topics.CONTROL_HEADER); the position stage re-emits that partition's positions at the location.
    It is not a movement: nothing is posted and it is not part of the audit trail's movement schema.
    """

    model_config = ConfigDict(frozen=True)

    source_event_id: str   # "location:<id>:<digest of the new values>:<partition>.<offset> of the master record"
    location_id: str
    safety_stock: int
    channels: list[str]
    occurred_at: datetime  # when the master record was written
    partition: int         # the inventory.movements partition this copy is meant for
    partitions: int

    @property
    def change_id(self) -> str:
        """The identity each position remembers (applied marks): one re-emission per change."""
        return f"master:{self.source_event_id}"


def working_copy(record: M) -> M:
    """A copy whose dict fields are its own, for rules that add, replace or delete entries of them
    but never change an entry in place (Position, SkuNetwork): copying the dicts is enough.

    `dict.copy()`, not `dict(d)`: once the oldest marks have been forgotten a dict has holes, and
    `dict(d)` then re-inserts every entry (~140 µs for 4,000 marks) where `d.copy()` clones the
    table (~19 µs). A deep copy cost more than the position rules themselves.
    """
    return record.model_copy(update={name: getattr(record, name).copy() for name in _dict_fields(type(record))})


@functools.cache
def _dict_fields(model: type[BaseModel]) -> tuple[str, ...]:
    # Every dict field (each defaults to an empty dict), so a new record's are copied too
    # (tests/property: `apply` never changes its input).
    return tuple(name for name, spec in model.model_fields.items() if spec.default_factory is dict)
