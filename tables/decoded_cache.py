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
    parts weigh, not only the bytes it is checked against).

    Which records it keeps once full: a record it holds, written again, keeps its place at the cost
    of the least recently read. A record it does not hold is let in only at the cost of records
    nobody read since that record's read before this one. Batches read their keys in turn: with
    more keys than fit, dropping the least recently read for every newcomer dropped each key just
    before its next read, and nothing was ever found (500 busy store days in 32 MB: 3.4 times the CPU
    per posting of a cache that held them all). So a full cache keeps the keys it has while they are
    read, the others are parsed each time, and a key read more often than the least recent one it
    would push out (a new business day, a hot SKU) still gets in at its second read.
    """

    def __init__(self, decode: Callable[[bytes], Any], max_bytes: int,
                 size: Callable[[bytes, Any], int] = lambda raw, _value: len(raw)) -> None:
        self._decode, self.max_bytes, self._size = decode, max_bytes, size
        # key -> (bytes, value, size, when last read), least recent first. An OrderedDict: a full dict
        # that drops its first key on every new one scans past the slots the dropped keys left
        # (3.5 µs a key at 16,000 entries, against 0.5).
        self._entries: OrderedDict[bytes, tuple[bytes, Any, int, int]] = OrderedDict()
        self.bytes = 0
        # The clock is the count of reads. key -> (the read before its last, its last read) for the
        # keys read last, held or not: a few times as many keys as it holds.
        self._reads = 0
        self._read_at: OrderedDict[bytes, tuple[int, int]] = OrderedDict()

    def decode(self, key: bytes, raw: bytes, finish: Callable[[Any], Any] | None = None) -> Any:
        """The value of `raw`, parsed unless held; `finish` makes the value kept of what was parsed (a
        day ledger's head gets its pages read in), so that what is let in is decided once, on it."""
        self._reads += 1
        self._note_read(key)
        held = self._entries.get(key)
        if held is not None and held[0] == raw:
            self._entries[key] = (raw, held[1], held[2], self._reads)
            self._entries.move_to_end(key)   # most recently read last
            return held[1]
        value = self._decode(raw)
        if finish is not None:
            value = finish(value)
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
        # Which reads a record pushed out must predate: none for a record held, or its read before this one.
        since = self._reads if held is not None else self._read_at.get(key, (-1, -1))[0]
        excess, pushed_out = self.bytes + size - self.max_bytes, []
        for other, (_, _, other_size, read) in self._entries.items():
            if excess <= 0:
                break
            if read > since:
                return   # not kept: it would push out a record read more recently
            pushed_out.append(other)
            excess -= other_size
        for other in pushed_out:
            self.bytes -= self._entries.pop(other)[2]
        self._entries[key] = (raw, value, size, self._reads)
        self.bytes += size

    def held(self) -> list[bytes]:
        """The keys of the records it holds, least recently read first."""
        return list(self._entries)

    def reads_remembered(self) -> int:
        """How many keys it remembers the reads of (bounded by the keys it holds)."""
        return len(self._read_at)

    def _note_read(self, key: bytes) -> None:
        last = self._read_at.pop(key, (-1, -1))[1]
        self._read_at[key] = (last, self._reads)
        if len(self._read_at) > 4 * len(self._entries) + 1024:
            self._read_at.popitem(last=False)
