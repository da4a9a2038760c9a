"""Decoded table values kept between batches, checked against the bytes they came from (no Faust here:
the bench's Quix Streams peer keeps its parsed values the same way)."""
from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import Any


class DecodedCache:
    """Decoded values of a table's records kept from one batch to the next, each with the exact bytes
    it was decoded from or encoded to: a batch that reads those bytes again gets the value unparsed.

    A store's day ledger was ~180 KB of JSON once its day had 4,000 postings: parsing it again for
    every batch was an eighth of a worker's CPU under sustained load (BENCHMARKS.md). The check is
    the bytes themselves, so a value written by a recovery, another owner or a batch that failed
    half-way is never mistaken for the cached one. The values are shared between batches: only for
    records the stage never changes in place (the day-ledger rules return new ledgers).
    Bounded by the bytes of the records it holds (`size`: of a value stored in parts, what all its
    parts weigh, not only the bytes it is checked against); the least recently used go first.
    """

    def __init__(self, decode: Callable[[bytes], Any], max_bytes: int,
                 size: Callable[[bytes, Any], int] = lambda raw, _value: len(raw)) -> None:
        self._decode, self.max_bytes, self._size = decode, max_bytes, size
        # key -> (bytes, value, size), least recent first. An OrderedDict: a full dict that drops its
        # first key on every new one scans past the slots the dropped keys left (3.5 µs a key at
        # 16,000 entries, against 0.5).
        self._entries: OrderedDict[bytes, tuple[bytes, Any, int]] = OrderedDict()
        self.bytes = 0

    def decode(self, key: bytes, raw: bytes) -> Any:
        held = self._entries.get(key)
        if held is not None and held[0] == raw:
            self._entries.move_to_end(key)   # most recently used last
            return held[1]
        value = self._decode(raw)
        self.remember(key, raw, value)
        return value

    def remember(self, key: bytes, raw: bytes | None, value: Any) -> None:
        held = self._entries.pop(key, None)
        if held is not None:
            self.bytes -= held[2]
        if raw is None:
            return
        size = self._size(raw, value)
        if size > self.max_bytes:
            return
        self._entries[key] = (raw, value, size)
        self.bytes += size
        while self.bytes > self.max_bytes:
            self.bytes -= self._entries.popitem(last=False)[1][2]
