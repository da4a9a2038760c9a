"""How lineage facts are kept per source event: the value of the `lineage` table (tables/lineage.py),
bounded per key.

Written by agents/lineage.py, read by the trace view. The facts are JSON lines appended as they
arrive, so the lineage stage never parses an entry on its hot path. At most MAX_FACTS facts are
kept per key (a 200-line POS basket makes ~600: received, movement, applied and postings per line);
beyond that the oldest facts after the first are dropped, so the `received` fact and the latest
outcomes stay, and a first line `{"dropped": n}` counts what was lost.
"""
from __future__ import annotations

from datetime import datetime

import orjson

from app.models.records import TraceFact

MAX_FACTS = 200
DROPPED = b'{"dropped":'


def trace_key(source_system: str, source_event_id: str) -> str:
    return f"{source_system}:{source_event_id}"


def append_fact(entry: bytes | None, fact: bytes, limit: int = MAX_FACTS) -> bytes:
    """Add one fact (one JSON line) to an entry, keeping at most `limit` facts and counting the dropped ones."""
    fact = fact.replace(b"\n", b" ")
    if not entry:
        return fact
    lines = entry.split(b"\n")
    dropped = orjson.loads(lines.pop(0))["dropped"] if lines[0].startswith(DROPPED) else 0
    lines.append(fact)
    while len(lines) > limit:
        del lines[1]  # keep the first fact (received) and the newest ones
        dropped += 1
    if dropped:
        lines.insert(0, orjson.dumps({"dropped": dropped}))
    return b"\n".join(lines)


def read_entry(entry: bytes) -> tuple[list[TraceFact], int]:
    """The facts of an entry, oldest first, and how many were dropped."""
    lines = entry.split(b"\n")
    dropped = orjson.loads(lines.pop(0))["dropped"] if lines[0].startswith(DROPPED) else 0
    return [TraceFact.model_validate_json(line) for line in lines if line], dropped


def last_fact_at(entry: bytes) -> datetime:
    return datetime.fromisoformat(orjson.loads(entry.rsplit(b"\n", 1)[-1])["at"])
