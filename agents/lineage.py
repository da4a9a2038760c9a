"""Lineage stage: the trace facts of each source event into the `lineage` table, for `GET /v1/trace/...`.

Every stage sends `TraceFact`s to `internal.lineage`, keyed "source_system:source_event_id"; this
agent appends them to that key's entry (format and per-key bound: app/domain/lineage.py), so the
owner of the key's partition can tell what became of the event.

Retention: a sweep forgets keys whose last fact is older than DEDUPE_RETENTION, the window in which
a producer's resend is still recognised as a duplicate. Timers cannot write tables, so the sweep
sends a `forget` request through the lineage topic and the agent deletes the key, unless a newer
fact arrived meanwhile.
"""
from __future__ import annotations

from datetime import UTC, datetime, timedelta

import orjson

from agents.streams import each_batch
from app.faust_app import app, lineage_topic, settings
from app.domain.lineage import append_fact, last_fact_at
from tables.lineage import lineage
from tables.store import BatchWrites

SWEEP_INTERVAL = max(60.0, min(3600.0, settings.dedupe_retention / 10))
FORGET = b'{"forget_before":'   # the sweep's control record (never a TraceFact)


@app.agent(lineage_topic)
async def record_lineage(stream):
    await each_batch(stream, "lineage", LineageBatch)


class LineageBatch:
    """A batch of trace facts: each key's entry read once, its facts appended in offset order, and
    written once (agents/streams.py, each_batch). A source event's facts come in runs (received,
    then one per movement; applied; the postings), so a batch writes far fewer entries than facts."""

    def __init__(self) -> None:
        self.entries = BatchWrites(lineage)

    def finish(self, outbox) -> None:
        self.entries.write(outbox)

    async def take(self, event) -> None:
        key, value = event.key, event.value
        if not key or not value:
            return
        partition = event.message.partition
        current = self.entries.get(key, partition)
        if value.startswith(FORGET):
            cutoff = datetime.fromisoformat(orjson.loads(value)["forget_before"])
            if current is not None and last_fact_at(current) < cutoff:
                self.entries.set(key, None, partition)
            return
        for fact in value.split(b"\n"):   # a record may carry several facts, one JSON line each (outputs.Trace)
            current = append_fact(current, fact)
        self.entries.set(key, current, partition)


@app.timer(interval=SWEEP_INTERVAL)
async def forget_old_lineage():
    cutoff = datetime.now(UTC) - timedelta(seconds=settings.dedupe_retention)
    request = orjson.dumps({"forget_before": cutoff.isoformat()})
    for key, raw in list(lineage.items()):
        if last_fact_at(raw) < cutoff:
            await lineage_topic.send(key=key, value=request)
