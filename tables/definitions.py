"""The pipeline's tables: which exist, how each is keyed, and which stream partitions it."""
from __future__ import annotations

from app.models.canonical import Position
from app.models.raw import Item, Location
from tables.store import CachedRecordTable, RecordTable, make_table

# SKU@LOCATION → Position (buckets, cost, reservations, applied movement ids). Partitioned exactly
# like inventory.movements, which is the only stream that writes it.
positions = RecordTable(make_table("positions"), Position)

# Master data on every worker (GlobalTable): SKU → Item, LOCATION → Location, alias → SKU. Items
# and locations are read for every movement, so their parsed records are cached (see the class).
items = CachedRecordTable("master-items", Item)
locations = CachedRecordTable("master-locations", Location)
item_aliases = make_table("master-item-aliases", global_=True)

# "TRANSACTION|SKU" → unit cost of a store sale, on every worker, so a return at any store is
# valued at the original sale's cost.
sale_costs = make_table("sale-costs", global_=True)
