"""Master data lookups the mappers need: items by SKU, UPC or marketplace alias; locations."""
from __future__ import annotations

from typing import Protocol

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
