"""Which partition a keyed record goes to: Kafka's default partitioner (murmur2, as aiokafka, the Java
client and Faust's router hash) over the bytes `app.domain.keys.partition_key` picks from its key."""
from __future__ import annotations

from collections.abc import Iterable

from murmurhash2 import murmurhash2

from app.domain.keys import partition_key, position_key
from app.topics import MOVEMENTS

KAFKA_SEED = 0x9747B28C   # org.apache.kafka.common.utils.Utils.murmur2's seed


def murmur2(data: bytes) -> int:
    """Kafka's murmur2 (`org.apache.kafka.common.utils.Utils.murmur2`), as aiokafka's `murmur2`
    computes it (a unit test compares them on any bytes). Compiled, because the producer hashes
    every keyed output record and most keys are seen once (a posting's, a trace's), so no cache
    helps: 0.16 µs for a 40-byte key, 2.9 µs in Python."""
    return murmurhash2(data, KAFKA_SEED)


def key_hash(key: bytes) -> int:
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
