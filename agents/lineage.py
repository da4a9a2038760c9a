"""Lineage stage: the trace facts of each source event into the `traces` table, for `GET /v1/trace/...`.

Every stage sends `TraceFact`s to `internal.lineage`, keyed "source_system:source_event_id" (a stage
batch's packed per partition: app/packs.py); this agent appends them to that key's entry (format,
per-key bound and the fold: app/domain/lineage.py), so the owner of the key's partition can tell
what became of the event. The table is a fold of the topic, with no changelog (tables/lineage.py):
each partition's DB holds the offset of the last record folded in, and a record at or below it
(folded already by a restore, or by this worker before a restart that lost its commit) is skipped.

Retention: a sweep forgets keys whose last fact is older than DEDUPE_RETENTION, the window in which
a producer's resend is still recognised as a duplicate. Timers cannot write tables, so the sweep
sends a `forget` request through the lineage topic and the agent deletes the key, unless a newer
fact arrived meanwhile.
"""
from __future__ import annotations

from datetime import UTC, datetime, timedelta

from agents.streams import each_batch
from agents.timers import each_apart, each_owned_partition, kept, timer
from app.faust_app import app, lineage_topic, settings
from app.domain.lineage import apply_record, forget_request, last_fact_at
from app.packs import records_of
from tables.lineage import lineage
from tables.store import BatchWrites

SWEEP_INTERVAL = max(60.0, min(3600.0, settings.dedupe_retention / 10))
# Trace facts reach this stage one by one, between the other stages' batches: without a wait each
# became a batch of its own (a WriteBatch, an outbox and an acknowledgement per fact: 16,142 batches
# in a 6,000-event bench run). Waiting 50 ms after the first makes batches of hundreds; a trace is
# read by people, for whom 50 ms is nothing. All stages +15 % (BENCHMARKS.md, eighth session).
LINGER = 0.05


@app.agent(lineage_topic)
async def record_lineage(stream):
    await each_batch(stream, "lineage", LineageBatch, linger=LINGER)


class LineageBatch:
    """A batch of trace facts: each key's entry read once, its facts appended in offset order, and
    written once, with the batch's last offset per partition (agents/streams.py, each_batch). A
    source event's facts come in runs (received, then one per movement; applied; the postings), so
    a batch writes far fewer entries than facts."""

    def __init__(self) -> None:
        self.entries = BatchWrites(lineage)
        self.folded_up_to: dict[int, int] = {}   # partition -> last offset folded in (its DB's, or this batch's)

    def finish(self, outbox) -> None:
        self.entries.write_folded(outbox, self.folded_up_to)

    async def take(self, event) -> None:
        partition, offset = event.message.partition, event.message.offset
        last = self.folded_up_to[partition] if partition in self.folded_up_to else lineage.data.source_offset(partition)
        if last is not None and offset <= last:
            self.folded_up_to[partition] = last
            return
        self.folded_up_to[partition] = offset
        for key, record in records_of(event.key, event.value):
            if key and record:
                self.entries.set(key, apply_record(self.entries.get(key, partition), record), partition)


@timer(SWEEP_INTERVAL)
async def forget_old_lineage():
    """Scan each partition of the trace table this worker owns, one after the other, keeping from the
    scan only the keys to forget. It used to list every entry first (`list(table.items())`): a
    week of traces, every fact of every event, held at once each sweep."""
    cutoff = datetime.now(UTC) - timedelta(seconds=settings.dedupe_retention)
    request = forget_request(cutoff)

    def old(item: tuple[bytes, bytes]) -> bool:
        return last_fact_at(item[1]) < cutoff

    async def forget(item: tuple[bytes, bytes]) -> None:
        await lineage_topic.send(key=item[0], value=request)

    async def sweep(partition: int) -> None:
        await each_apart(kept(lineage.data.items_in_partition(partition), old, timer="forget_old_lineage",
                              what=_entry_named),
                         forget, timer="forget_old_lineage", what=_entry_named)
    await each_owned_partition(lineage_topic, sweep, timer="forget_old_lineage")


def _entry_named(item: tuple[bytes, bytes]) -> str:
    return f"trace entry {item[0]!r}"
