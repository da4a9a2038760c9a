"""Which partition a keyed record goes to: Kafka's default partitioner (murmur2, as aiokafka, the Java
client and Faust's router hash) over the bytes `app.domain.keys.partition_key` picks from its key."""
from __future__ import annotations

import functools
from collections.abc import Iterable

from aiokafka.partitioner import murmur2

from app.domain.keys import partition_key, position_key
from app.topics import MOVEMENTS


@functools.lru_cache(maxsize=1 << 17)
def key_hash(key: bytes) -> int:
    # murmur2 is pure Python in aiokafka (~6 µs a key); SKU and location keys repeat all the time.
    return murmur2(key) & 0x7FFFFFFF


def key_partition(topic: str, key: bytes, partitions: int) -> int:
    """The partition of a keyed record of `topic` among `partitions` (numbered from 0)."""
    return key_hash(partition_key(topic, key)) % partitions


def sku_partition(sku: str, partitions: int) -> int:
    """The partition of inventory.movements, so of the position stage's tables, that holds `sku`."""
    return key_partition(MOVEMENTS, position_key(sku, "").encode(), partitions)


def misplaced_keys(topic: str, keys: Iterable[bytes], partition: int, partitions: int) -> list[bytes]:
    """The keys found in `partition` that `topic`'s partitioner puts in another one."""
    return [key for key in keys if key_partition(topic, key, partitions) != partition]
