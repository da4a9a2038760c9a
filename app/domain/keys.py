"""The one place record keys are built (positions, channels, day batches), and the one rule of
which bytes of a key pick its partition."""
from __future__ import annotations

from datetime import date

from app.topics import MOVEMENTS

KEY_SEPARATOR = "@"
_SEPARATOR = KEY_SEPARATOR.encode()

# Topics keyed SKU@LOCATION but partitioned by the SKU alone: every location of a SKU in one
# partition of inventory.movements, so the position stage holds the SKU's channel sums beside its
# positions and folds them in the same batch (no re-keyed hop). Each SKU@LOCATION still goes
# through one partition, in order (SPEC §3).
PARTITIONED_BY_SKU = frozenset({MOVEMENTS})


def position_key(sku: str, location_id: str) -> str:
    """Key of a SKU at a location: of `inventory.movements` records and of the position table."""
    return f"{sku}{KEY_SEPARATOR}{location_id}"


def split_position_key(key: str) -> tuple[str, str]:
    sku, _, location_id = key.rpartition(KEY_SEPARATOR)
    return sku, location_id


def partition_key(topic: str, key: bytes) -> bytes:
    """The bytes a record's partition is hashed from: its key, or the SKU of a SKU@LOCATION key on a
    topic partitioned by SKU. A key without the separator (the master stage's "*@LOC" control
    records go to explicit partitions) hashes whole."""
    if topic in PARTITIONED_BY_SKU and _SEPARATOR in key:
        return key.rpartition(_SEPARATOR)[0]
    return key


def channel_key(channel: str, sku: str) -> str:
    return f"{channel}:{sku}"


def day_batch_key(legal_entity: str, location_id: str, business_date: date) -> str:
    return f"{legal_entity}:{location_id}:{business_date.isoformat()}"


DAY_PAGE_SEPARATOR = "\x1f"   # never in a day's key (app/domain/day_pages.py)


def day_page_key(day_key: bytes, name: str) -> bytes:
    """Key of one page of a stored day ledger, beside its day's key in the `day-ledgers` table."""
    return day_key + f"{DAY_PAGE_SEPARATOR}{name}".encode()


def is_day_page_key(key: bytes) -> bool:
    return DAY_PAGE_SEPARATOR.encode() in key


def sale_cost_key(reference: str, sku: str) -> str:
    """Key of the `sale-costs` table: the sale a return may name (transaction or order id) and the SKU."""
    return f"{reference}|{sku}"
