"""Packs: a partition's keyed records in a few Kafka records, on internal topics only the pipeline reads.

A raw event makes ~2.7 trace records and ~2.2 finance ledger records, which only the pipeline
reads back: more than a quarter of what it wrote and two thirds of what it read per raw event,
each record read through Faust's per-record path and written through the producer's. A stage
batch sends those packed instead: its records of one partition, in their order, as a few Kafka
records (app/outbox.py, `packed_runs`). Every key of a pack hashes to the pack's partition, so
each keyed record still reaches the owner of its key, in the order it was sent.

A pack is JSON, so the topic stays readable with any console consumer:
`{"pack": [[key, value], ...]}`, keys and values as text (both are the pipeline's own UTF-8:
location ids, trace keys, JSON records). No record these topics carry begins that way.
"""
from __future__ import annotations

import orjson

PACK = b'{"pack":'
PACK_BYTES = 64 * 1024   # a pack is cut beyond this: a pack dead-lettered whole stays whole in its letter


def packed(records: list[tuple[bytes, bytes]], limit: int = PACK_BYTES) -> list[tuple[bytes | None, bytes]]:
    """The (key, value) records of one partition, in their order, as few Kafka records (key, value)
    as fit in about `limit` bytes each. A record larger than `limit` goes as itself: packed, its
    escaped text could pass the producer's limit that it passed alone, and a record the broker
    refuses stops the worker (agents/outputs.py, stop_if_lost)."""
    sent: list[tuple[bytes | None, bytes]] = []
    entries: list[tuple[str, str]] = []
    size = 0
    for key, value in records:
        if entries and size + len(key) + len(value) > limit:
            sent.append((None, orjson.dumps({"pack": entries})))
            entries, size = [], 0
        if len(key) + len(value) > limit:
            sent.append((key, value))
            continue
        entries.append((key.decode(), value.decode()))
        size += len(key) + len(value)
    if entries:
        sent.append((None, orjson.dumps({"pack": entries})))
    return sent


def records_of(key: bytes | None, value: bytes | None) -> list[tuple[bytes | None, bytes | None]]:
    """The (key, value) records a Kafka record carries: a pack's (`packed`), or the record itself."""
    if value is None or not value.startswith(PACK):
        return [(key, value)]
    return [(k.encode(), v.encode()) for k, v in orjson.loads(value)["pack"]]
