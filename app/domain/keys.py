"""The one place record keys are built: positions, channels, day batches."""
from __future__ import annotations

from datetime import date

KEY_SEPARATOR = "@"


def position_key(sku: str, location_id: str) -> str:
    """Key of a SKU at a location: partitions `inventory.movements` and the position table."""
    return f"{sku}{KEY_SEPARATOR}{location_id}"


def split_position_key(key: str) -> tuple[str, str]:
    sku, _, location_id = key.rpartition(KEY_SEPARATOR)
    return sku, location_id


def channel_key(channel: str, sku: str) -> str:
    return f"{channel}:{sku}"


def day_batch_key(legal_entity: str, location_id: str, business_date: date) -> str:
    return f"{legal_entity}:{location_id}:{business_date.isoformat()}"


def sale_cost_key(reference: str, sku: str) -> str:
    """Key of the `sale-costs` table: the sale a return may name (transaction or order id) and the SKU."""
    return f"{reference}|{sku}"
