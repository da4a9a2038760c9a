"""Master data seen through the global tables, in the shape the pure mappers expect."""
from __future__ import annotations

from app.models.raw import Item, Location
from tables.definitions import item_aliases, items, locations


class TableMasterData:
    def item(self, sku: str) -> Item | None:
        return items.get(sku)

    def sku_for_alias(self, alias: str) -> str | None:
        raw = item_aliases.get(alias.encode())
        return raw.decode() if raw is not None else None

    def location(self, location_id: str) -> Location | None:
        return locations.get(location_id)


master_data = TableMasterData()


def channels_generation() -> int:
    """Moves whenever a location's master may have changed, so what `channels_of` answers may have."""
    return locations.generation


def channels_of(location_id: str) -> list[str]:
    """The channels a location serves, per its master record (none when unknown)."""
    location = master_data.location(location_id)
    return list(location.channels) if location else []
