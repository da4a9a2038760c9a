"""The names of the pipeline's tables (their changelogs are `<app id>-<name>-changelog`).

Plain names, so that the map of the pipeline (app/topology.py) and the web views can name a table
without defining it: a table is defined by importing its module in tables/, which only the stage
that writes it does (a worker running other STAGES neither restores nor holds it).
"""
from __future__ import annotations

POSITIONS = "positions"
SALE_COSTS = "sale-costs"
MASTER_ITEMS = "master-items"
MASTER_LOCATIONS = "master-locations"
MASTER_ITEM_ALIASES = "master-item-aliases"
SKU_NETWORKS = "sku-network"
DAY_LEDGERS = "day-ledgers"
DAY_STATUSES = "day-statuses"
RECONCILIATION_SUMMARIES = "reconciliation-summaries"
LINEAGE = "traces"    # the trace facts of each source event (a fold of internal.lineage)
