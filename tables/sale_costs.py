"""The `sale-costs` table: "REFERENCE|SKU" → the unit cost of a sale (app/domain/sale_costs.py), so a
return naming the sale is valued at the sale's cost (SPEC §5.2), at whichever store it comes back.

Written and read only by the position stage (agents/positions.py), in the partition of
inventory.movements that holds the SKU: that topic is partitioned by SKU (app/domain/keys.py), so
the return of a SKU is applied in the same partition as its sale, wherever either happened. The
table is therefore partitioned like the positions, not global: a worker holds the sales of its
own SKUs only, reads no other worker's sales back, and a return applied after its sale in the
partition always finds the cost (within one batch too), with no replication lag to wait for.

Its keys are not SKU@LOCATION keys, so it has no layout check (tables/restore.py, LAID_OUT_LIKE):
a sale cost written under an older layout is not found, and its return is valued at the average
cost; the positions' own check stops a worker on such a data dir first.
"""
from __future__ import annotations

from tables import names
from tables.store import make_table

sale_costs = make_table(names.SALE_COSTS)
