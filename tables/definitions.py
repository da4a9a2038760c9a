"""The pipeline's tables: which exist, how each is keyed, and which stream partitions it."""
from __future__ import annotations

from app.models.canonical import Position
from app.models.raw import Item, Location
from tables.store import RecordTable, make_table

# SKU@LOCATION → Position (buckets, cost, reservations, applied movement ids). Partitioned exactly
# like inventory.movements, which is the only stream that writes it.
positions = RecordTable(make_table("positions"), Position)

# Master data on every worker (GlobalTable): SKU → Item, LOCATION → Location, alias → SKU.
items = RecordTable(make_table("master-items", global_=True), Item)
locations = RecordTable(make_table("master-locations", global_=True), Location)
item_aliases = make_table("master-item-aliases", global_=True)

# "TRANSACTION|SKU" → unit cost of a store sale, on every worker, so a return at any store is
# valued at the original sale's cost.
sale_costs = make_table("sale-costs", global_=True)
