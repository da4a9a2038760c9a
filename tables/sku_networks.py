"""The `sku-network` table: SKU → SkuNetwork (each location's availability and the channel totals).

Written only by the position stage (agents/positions.py), in the partition of inventory.movements that
holds the SKU (that topic is partitioned by SKU: app/domain/keys.py), so a SKU's network sits beside
its positions and changes in the same batch.
"""
from __future__ import annotations

from app import topics
from app.models.canonical import SkuNetwork
from tables import names
from tables.decoded_cache import DecodedCache
from tables.restore import LAID_OUT_LIKE
from tables.store import RecordTable, make_table

networks = RecordTable(make_table(names.SKU_NETWORKS), SkuNetwork)
LAID_OUT_LIKE[names.SKU_NETWORKS] = topics.MOVEMENTS


# The networks this worker folded last, parsed and with their channel sums (app/domain/network.py):
# a SKU that moves again is neither parsed nor summed over all its locations again. 16 MB of their
# JSON (tens of thousands of SKUs), a few times that as Python objects.
NETWORKS_KEPT_PARSED_BYTES = 16 << 20
parsed_networks = DecodedCache(SkuNetwork.model_validate_json, NETWORKS_KEPT_PARSED_BYTES)
