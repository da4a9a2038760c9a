"""Ingest stage: every raw channel topic → canonical movements keyed SKU@LOCATION (or the DLQ).

It holds no state, yet works in micro-batches like the stages that do (agents/streams.py,
each_batch): what a batch of raw records makes (movements, trace records, ledger facts, dead letters)
goes to the producer at the batch's end as whole record batches. Sent one by one through aiokafka,
the same records cost 200 µs of a worker's CPU per raw event, against ~130 µs now, and with each
batch's records sent without aiokafka's linger (app/kafka_transport.py) a raw event reached
availability sooner too: at 782 raw events/s on one worker p50 62-78 ms against 97-114, p99 184-196
ms against 243-259 (BENCHMARKS.md, twenty-first session)."""
from __future__ import annotations

from datetime import timedelta

from agents.outputs import Trace, dead_letter, publish, utcnow
from agents.streams import each_batch
from app import metrics
from app import topics as t
from app.domain.keys import position_key
from app.domain.sources import SOURCES, Mapped, MappingContext, map_raw
from app.faust_app import app, finance_exceptions_topic, ledger_topic, movements_topic, settings
from app.models.finance_ledger import LedgerEntry
from app.models.records import Rejection, TraceStage
from tables.master import master_data

raw_channels = app.topic(*t.RAW_TOPICS, key_type=bytes, value_type=bytes)
RESERVATION_TTL = timedelta(seconds=settings.reservation_ttl)


@app.agent(raw_channels)
async def ingest(stream):
    await each_batch(stream, "ingest", IngestBatch)


class IngestBatch:
    """A batch of raw records: each mapped in offset order, its outputs queued in the batch's outbox.
    A record that raises is dead-lettered alone (each_batch); nothing is kept between records."""

    async def take(self, event) -> None:
        source = SOURCES[event.message.topic]
        now = utcnow()
        raw = event.value or b""
        result = map_raw(source, raw, MappingContext(master_data, RESERVATION_TTL, now))
        if isinstance(result, Rejection):
            metrics.labelled(metrics.EVENTS_IN, source.system.value, "rejected").inc()
            await dead_letter(event.message, source.topic, raw, result, source_system=source.system.value,
                              source_event_id=result.source_event_id, stage="ingest")
            return
        await forward(result, now)

    def finish(self, outbox) -> None:
        """No table to write: the outputs are the batch."""


async def forward(mapped: Mapped, now) -> None:
    system = mapped.source_system.value
    kind = mapped.movements[0].movement_type.value if mapped.movements else ("DAY_CLOSE" if mapped.day_close else "none")
    metrics.labelled(metrics.EVENTS_IN, system, kind).inc()
    # The event's trace goes out first, as one record: its facts reach the lineage partition before
    # anything the position stage records about the same event.
    keys = [position_key(movement.sku, movement.location_id) for movement in mapped.movements]
    facts = Trace(system, mapped.source_event_id)
    facts.add(TraceStage.RECEIVED, movements=len(mapped.movements))
    for movement, key in zip(mapped.movements, keys):
        facts.add(TraceStage.MOVEMENT, movement_id=movement.movement_id, movement_type=movement.movement_type.value,
                  key=key, quantity=movement.quantity)
    for problem in mapped.finance_exceptions:
        facts.add(TraceStage.FINANCE_EXCEPTION, reason_code=problem.reason_code.value, detail=problem.detail)
    await facts.send()
    for movement, key in zip(mapped.movements, keys):
        await publish(movements_topic, key, movement.model_copy(update={"received_at": now}))
    if mapped.pos_totals:
        await publish(ledger_topic, mapped.pos_totals.location_id, LedgerEntry(pos_totals=mapped.pos_totals))
    if mapped.day_close:
        await publish(ledger_topic, mapped.day_close.location_id, LedgerEntry(day_close=mapped.day_close))
    for problem in mapped.finance_exceptions:
        metrics.FINANCE_EXCEPTIONS.labels(reason=problem.reason_code.value).inc()
        await publish(finance_exceptions_topic, problem.source_event_id, problem)

