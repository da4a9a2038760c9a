"""Raw channel records → canonical movements: parse, validate, map; bad input becomes a Rejection."""
from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo

from pydantic import BaseModel

from app.domain.sources.common import Mapped, MappingContext, Rejected
from app.domain.sources.inspections import map_inspection
from app.domain.sources.oms import map_oms
from app.domain.sources.orders import map_ecom, map_marketplace
from app.domain.sources.pos import map_pos
from app.domain.sources.wms import map_wms
from app.domain.parsing import parse_record
from app.models.canonical import SourceSystem
from app.models.raw import EcomOrder, MarketplaceOrder, OmsReservationEvent, PosTransaction, ReturnInspection, WmsEvent
from app.models.records import Rejection

__all__ = ["SOURCES", "Mapped", "MappingContext", "Source", "map_raw"]


class Source:
    """One raw channel topic: its producer's model, its mapper, and where its event id lives."""

    def __init__(self, topic: str, system: SourceSystem, model: type[BaseModel],
                 mapper: Callable[[Any, MappingContext], Mapped], id_field: str) -> None:
        self.topic = topic
        self.system = system
        self.model = model
        self.mapper = mapper
        self.id_field = id_field


SOURCES: dict[str, Source] = {s.topic: s for s in (
    Source("pos.transactions", SourceSystem.POS, PosTransaction, map_pos, "transaction_id"),
    Source("ecom.orders", SourceSystem.ECOM, EcomOrder, map_ecom, "event_id"),
    Source("marketplace.orders", SourceSystem.MARKETPLACE, MarketplaceOrder, map_marketplace, "message_id"),
    Source("oms.reservations", SourceSystem.OMS, OmsReservationEvent, map_oms, "event_id"),
    Source("wms.events", SourceSystem.WMS, WmsEvent, map_wms, "event_id"),
    Source("returns.inspections", SourceSystem.INSPECTIONS, ReturnInspection, map_inspection, "inspection_id"),
)}


def map_raw(source: Source, raw: bytes, ctx: MappingContext) -> Mapped | Rejection:
    """The whole edge of the pipeline for one raw record; never raises on bad input."""
    event = parse_record(source.model, raw, source.id_field)
    if isinstance(event, Rejection):
        return event
    try:
        return on_local_business_dates(source.mapper(event, ctx), ctx)
    except Rejected as exc:
        return Rejection(error_code=exc.code, error_detail=exc.detail,
                         source_event_id=getattr(event, source.id_field, None))


@lru_cache(maxsize=256)
def _zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


def on_local_business_dates(mapped: Mapped, ctx: MappingContext) -> Mapped:
    """A movement's business date is the date where it happened (the location's time zone, SPEC
    §5.3): a DC closes its day by that clock, so a UTC date would put the evening of a New York DC
    into tomorrow's batch. The POS sends its own business date, which stands."""
    if mapped.source_system is SourceSystem.POS:
        return mapped
    for index, movement in enumerate(mapped.movements):
        location = ctx.master.location(movement.location_id)
        if location is None or location.timezone == "UTC":
            continue
        local = movement.occurred_at.astimezone(_zone(location.timezone)).date()
        if local != movement.business_date:
            mapped.movements[index] = movement.model_copy(update={"business_date": local})
    return mapped
