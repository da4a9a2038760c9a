"""The tables every worker defines, whatever STAGES it runs: positions (the operator views read them)
and master data (global: every worker holds a copy). A table only one stage writes is defined by
that stage's own module in tables/ (day ledgers, SKU networks, sale costs, lineage, reconciliation
summaries)."""
from __future__ import annotations

from app import topics
from app.models.canonical import Position
from app.models.raw import Item, Location
from tables import names
from tables.restore import LAID_OUT_LIKE
from tables.store import CachedRecordTable, RecordTable, make_table

# SKU@LOCATION → Position (buckets, cost, reservations, applied movement ids). Partitioned exactly
# like inventory.movements, which is the only stream that writes it.
positions = RecordTable(make_table(names.POSITIONS), Position)
LAID_OUT_LIKE[names.POSITIONS] = topics.MOVEMENTS   # a worker on data laid out otherwise stops (tables/restore.py)

# Master data on every worker (GlobalTable): SKU → Item, LOCATION → Location, alias → SKU. Items
# and locations are read for every movement, so their parsed records are cached (see the class).
items = CachedRecordTable(names.MASTER_ITEMS, Item)
locations = CachedRecordTable(names.MASTER_LOCATIONS, Location)
item_aliases = make_table(names.MASTER_ITEM_ALIASES, global_=True)
