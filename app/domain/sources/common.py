"""What every source mapper shares: the mapping result, movement identity, master-data lookups."""
from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from app.domain.master import MasterData, upc_alias
from app.models.canonical import DayClose, Movement, MovementType, PosTotals, Role, SourceSystem
from app.models.raw import Item, Location
from app.models.records import ErrorCode, FinanceException


@dataclass(frozen=True)
class Mapped:
    """A raw record turned into canonical movements (and, for POS, the finance side-facts)."""

    source_system: SourceSystem
    source_event_id: str
    movements: list[Movement] = field(default_factory=list)
    day_close: DayClose | None = None
    pos_totals: PosTotals | None = None
    finance_exceptions: list[FinanceException] = field(default_factory=list)


class Rejected(Exception):
    """Raised inside a mapper, turned into a `Rejection` value at the mapping boundary."""

    def __init__(self, code: ErrorCode, detail: str, source_event_id: str | None = None) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail
        self.source_event_id = source_event_id


@dataclass(frozen=True)
class MappingContext:
    master: MasterData
    reservation_ttl: timedelta
    now: datetime


def movement_id(source: SourceSystem, source_event_id: str, line: str, role: Role) -> str:
    """Deterministic identity of a movement: a resent source event maps to the same ids."""
    return f"{source.value}:{source_event_id}:{line}:{role.value}"


def distinct_lines(line_ids: Iterable[str]) -> list[str]:
    """The line part of each movement id, one per line of the event, in order.

    A producer may repeat a line id within one event; each line is still its own movement (SPEC §3
    "Every line counts"). A repeat gets `~n` for its n-th occurrence, so the ids of well-formed events
    are unchanged and a resend of the whole event, lines in the same order, maps to the same ids.
    """
    seen: Counter[str] = Counter()
    lines = []
    for line_id in line_ids:
        seen[line_id] += 1
        lines.append(line_id if seen[line_id] == 1 else f"{line_id}~{seen[line_id]}")
    return lines


def require_location(master: MasterData, location_id: str) -> Location:
    location = master.location(location_id)
    if location is None:
        raise Rejected(ErrorCode.UNKNOWN_LOCATION, f"location {location_id!r} is not in the location master")
    return location


def require_item(master: MasterData, sku: str | None, upc: str | None = None) -> Item:
    if sku:
        item = master.item(sku)
        if item is None:
            raise Rejected(ErrorCode.UNKNOWN_ITEM, f"sku {sku!r} is not in the item master")
        return item
    if upc:
        mapped = master.sku_for_alias(upc_alias(upc))
        item = master.item(mapped) if mapped else None
        if item is None:
            raise Rejected(ErrorCode.UNKNOWN_ITEM, f"upc {upc!r} maps to no item in the item master")
        return item
    raise Rejected(ErrorCode.SCHEMA_INVALID, "line names neither sku nor upc")


def to_eaches(item: Item, quantity: int, uom: str) -> int:
    if uom == "EACH":
        return quantity
    if uom == "CASE":
        if not item.case_pack:
            raise Rejected(ErrorCode.UNIT_OF_MEASURE, f"sku {item.sku!r} has no case_pack to convert CASE")
        return quantity * item.case_pack
    raise Rejected(ErrorCode.UNIT_OF_MEASURE, f"unknown unit of measure {uom!r}")


def business_date_of(occurred_at: datetime) -> date:
    return occurred_at.date()


def build_movement(
    *,
    source: SourceSystem,
    source_event_id: str,
    line: str,
    role: Role = Role.LINE,
    movement_type: MovementType,
    sku: str,
    location_id: str,
    quantity: int,
    correlation_id: str,
    occurred_at: datetime,
    business_date: date | None = None,
    **commercial: Any,
) -> Movement:
    """The single constructor every mapper uses, so identity and defaults are set one way."""
    return Movement(
        movement_id=movement_id(source, source_event_id, line, role),
        movement_type=movement_type,
        role=role,
        sku=sku,
        location_id=location_id,
        quantity=quantity,
        source_system=source,
        source_event_id=source_event_id,
        source_line=line,
        correlation_id=correlation_id,
        occurred_at=occurred_at,
        business_date=business_date or business_date_of(occurred_at),
        **commercial,
    )
