"""Master data lookups the mappers need: items by SKU, UPC or marketplace alias; locations."""
from __future__ import annotations

from datetime import datetime
from typing import Protocol

from app.domain.marks import mark_of
from app.models.canonical import LocationChange
from app.models.raw import Item, Location


def upc_alias(upc: str) -> str:
    return f"UPC:{upc}"


def marketplace_alias(marketplace: str, seller_sku: str) -> str:
    return f"{marketplace.upper()}:{seller_sku}"


def aliases_of(item: Item) -> list[str]:
    """Every alias under which producers may name this item."""
    return [upc_alias(u) for u in item.upcs] + [
        marketplace_alias(mp, alias) for mp, alias in item.marketplace_aliases.items()
    ]


def channel_set(location: Location) -> list[str]:
    """The channels a location serves, as a set: their order and repeats in the record mean nothing."""
    return sorted(set(location.channels))


def changes_positions(previous: Location | None, new: Location) -> bool:
    """Whether a location record changes what its positions show (SPEC §3 "Master data changes reach
    the channels"): its safety stock or its channels. Not the first sight of a location (no position
    can be there yet: a movement at an unknown location is dead-lettered), not a re-send of the same
    record, not a change of any other field (legal entity, currency, time zone reach no position)."""
    return previous is not None and (
        previous.safety_stock != new.safety_stock or channel_set(previous) != channel_set(new))


def location_changes(previous: Location | None, new: Location, *, partitions: int, record_partition: int,
                     record_offset: int, occurred_at: datetime) -> list[LocationChange]:
    """One control record per partition of the position stage's input, or none when nothing changes.

    Positions are partitioned by SKU@LOCATION, so any partition may hold positions at the location:
    each gets its own copy (sent there explicitly) and re-emits its own. The id names the master
    record (partition and offset), so a redelivery of that record makes the same ids, which the
    positions already remember, while a later change back and forth again makes new ones.
    """
    if not changes_positions(previous, new):
        return []
    channels = channel_set(new)
    digest = mark_of(f"{new.safety_stock}|{','.join(channels)}")
    source_event_id = f"location:{new.location_id}:{digest}:{record_partition}.{record_offset}"
    return [LocationChange(source_event_id=source_event_id, location_id=new.location_id,
                           safety_stock=new.safety_stock, channels=channels, occurred_at=occurred_at,
                           partition=p, partitions=partitions)
            for p in range(partitions)]


def shows_change(location: Location | None, change: LocationChange) -> bool:
    """Whether a worker's copy of the location master already holds the change."""
    return (location is not None and location.safety_stock == change.safety_stock
            and channel_set(location) == change.channels)


class MasterData(Protocol):
    def item(self, sku: str) -> Item | None: ...
    def sku_for_alias(self, alias: str) -> str | None: ...
    def location(self, location_id: str) -> Location | None: ...


class InMemoryMasterData:
    """Plain-dict master data: the tests' fixture and the simulator's view of the catalogue."""

    def __init__(self, items: list[Item] = (), locations: list[Location] = ()) -> None:  # type: ignore[assignment]
        self.items: dict[str, Item] = {}
        self.aliases: dict[str, str] = {}
        self.locations: dict[str, Location] = {loc.location_id: loc for loc in locations}
        for item in items:
            self.add_item(item)

    def add_item(self, item: Item) -> None:
        self.items[item.sku] = item
        for alias in aliases_of(item):
            self.aliases[alias] = item.sku

    def item(self, sku: str) -> Item | None:
        return self.items.get(sku)

    def sku_for_alias(self, alias: str) -> str | None:
        return self.aliases.get(alias)

    def location(self, location_id: str) -> Location | None:
        return self.locations.get(location_id)
