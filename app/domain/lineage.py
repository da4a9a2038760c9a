"""How lineage facts are kept per source event: the value of the `lineage` table (tables/lineage.py),
bounded per key.

Written by agents/lineage.py, read by the trace view. The facts are JSON lines appended as they
arrive, so the lineage stage never parses an entry on its hot path. At most MAX_FACTS facts are
kept per key (a 200-line POS basket makes ~600: received, movement, applied and postings per line);
beyond that the oldest facts after the first are dropped, so the `received` fact and the latest
outcomes stay, and a first line `{"dropped": n}` counts what was lost.

An entry is a fold of the records of `internal.lineage` with the entry's key (`apply_record`), in
offset order: the lineage stage folds them as they come, and a worker that takes over a partition
folds that partition's records again from the topic (tables/restore.py), so the table needs no
changelog of its own.
"""
from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal

import orjson

from app.models.records import TraceFact, TraceStage, json_bytes

MAX_FACTS = 200
DROPPED = b'{"dropped":'
FORGET = b'{"forget_before":'   # the retention sweep's request (never a TraceFact)


def trace_key(source_system: str, source_event_id: str) -> str:
    return f"{source_system}:{source_event_id}"


def fact_line(source_system: str, source_event_id: str, stage: TraceStage, at: datetime,
              detail: Mapping[str, object]) -> bytes:
    """One trace fact as one JSON line: the bytes `TraceFact.model_dump_json` makes (a property test
    compares), without building and validating the model. A raw event makes about seven facts on
    its way through the stages; this takes ~0.5 µs a fact against ~3 µs through the model."""
    try:
        return orjson.dumps({"source_system": source_system, "source_event_id": source_event_id, "stage": stage,
                             "at": at, "detail": detail}, default=_decimal_as_text, option=orjson.OPT_UTC_Z)
    except TypeError:   # what orjson does not encode as pydantic would (an int beyond 64 bits)
        return json_bytes(TraceFact(source_system=source_system, source_event_id=source_event_id, stage=stage,
                                    at=at, detail=dict(detail)))


def _decimal_as_text(value: object) -> str:
    if isinstance(value, Decimal):
        return str(value)   # as pydantic writes a Decimal it meets in a dict of objects
    raise TypeError(type(value).__name__)


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


def apply_record(entry: bytes | None, record: bytes) -> bytes | None:
    """An entry after one record of the lineage topic: facts (JSON lines) appended, or, for the
    sweep's forget request, the entry dropped (None) unless it has a fact newer than the cutoff."""
    if not record:
        return entry
    if record.startswith(FORGET):
        cutoff = datetime.fromisoformat(orjson.loads(record)["forget_before"])
        return None if entry is None or last_fact_at(entry) < cutoff else entry
    for fact in record.split(b"\n"):   # a record may carry several facts (agents/outputs.py, Trace)
        entry = append_fact(entry, fact)
    return entry


def forget_request(cutoff: datetime) -> bytes:
    return orjson.dumps({"forget_before": cutoff.isoformat()})


def read_entry(entry: bytes) -> tuple[list[TraceFact], int]:
    """The facts of an entry, oldest first, and how many were dropped."""
    lines = entry.split(b"\n")
    dropped = orjson.loads(lines.pop(0))["dropped"] if lines[0].startswith(DROPPED) else 0
    return [TraceFact.model_validate_json(line) for line in lines if line], dropped


def last_fact_at(entry: bytes) -> datetime:
    return datetime.fromisoformat(orjson.loads(entry.rsplit(b"\n", 1)[-1])["at"])
