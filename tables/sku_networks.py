"""The `sku-network` table: SKU → SkuNetwork (each location's availability and the channel totals).

Written only by the channel stage (agents/channels.py), partitioned like internal.availability-by-sku,
which is keyed by SKU, so one SKU's network sits in one partition with every update that changes it.
"""
from __future__ import annotations

from app.models.canonical import SkuNetwork
from tables import names
from tables.store import RecordTable, make_table

networks = RecordTable(make_table(names.SKU_NETWORKS), SkuNetwork)
