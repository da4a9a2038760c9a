"""The one way every stage publishes: records with their key, dead letters, and trace facts."""
from __future__ import annotations

import asyncio
import logging
import os
from contextvars import ContextVar
from datetime import UTC, datetime

import faust
from pydantic import BaseModel

from app import metrics
from app.domain.dead_letters import raw_for_letter
from app.domain.lineage import fact_line
from app.faust_app import app, dlq_topic, lineage_topic
from app.logging_setup import exit_now
from app.models.records import DeadLetter, ErrorCode, Rejection, TraceStage, json_bytes
from app.outbox import OneByOne, Outbox

log = logging.getLogger(__name__)
EXIT_LOST_DELIVERY = 70

# The outbox of the stage batch being applied in this task (agents/streams.py, each_batch): while
# one is set, what a stage publishes is queued there and sent with the batch.
current_outbox: ContextVar[Outbox | None] = ContextVar("current_outbox", default=None)


def utcnow() -> datetime:
    return datetime.now(UTC)


async def publish(topic: faust.TopicT, key: str | None, record: BaseModel, *, partition: int | None = None,
                  headers: list[tuple[str, bytes]] | None = None) -> asyncio.Future | None:
    """Hand one record to the app's producer; its delivery is awaited by Faust's flush before each commit.

    This is the call `Topic.send` ends in (`Topic.publish_message`), minus the FutureMessage,
    PendingMessage, sensor and done-callback layers around it, which cost more CPU per record than
    the record's own serialisation and which nothing here reads. At-least-once is unchanged: Faust
    flushes this producer before it commits the input offsets; with exactly_once,
    `maybe_start_producer` returns the transaction manager, as it does for `Topic.send`.
    An explicit `partition` overrides the key's (control records meant for every partition). A
    record with a `to_json` of its own (an internal one's compact form) is written with it.
    Returns the record's delivery, or None inside a stage batch (`send_record`).
    """
    to_json = getattr(record, "to_json", None)
    return await send_record(topic.get_topic_name(), key.encode() if key is not None else None,
                             json_bytes(record) if to_json is None else to_json(), partition, headers)


async def send_record(topic: str, key: bytes | None, value: bytes | None, partition: int | None = None,
                      headers: list[tuple[str, bytes]] | None = None) -> asyncio.Future | None:
    """One encoded record to the producer, or to the outbox of the stage batch being applied (then
    None: the batch's deliveries come from `send_outbox`, and a keyed record of a topic whose
    readers unpack goes packed with the batch's others of its partition: app/outbox.py,
    `packed_runs`); a delivery that fails stops the worker before any commit passes it
    (`stop_if_lost`)."""
    outbox = current_outbox.get()
    if outbox is not None:
        outbox.add(topic, key, value, partition, headers)
        return None
    producer = await started_producer()
    delivery = await producer.send(topic, key, value, partition, None, headers)
    delivery.add_done_callback(lambda done: stop_if_lost(done, topic))
    return delivery


async def publish_acknowledged(topic: faust.TopicT, key: str | None, record: BaseModel) -> None:
    """`publish`, returning once the broker has the record, inside a stage batch too (past its
    outbox): for an output that the batch's state must not claim before it exists. A batch's
    records go to the broker together at its end, so a worker killed then can leave the state's
    changelog record acknowledged and the output not; the re-read record then finds nothing left
    to do, and the output was lost for good (agents/finance.py, a day batch)."""
    outbox = current_outbox.set(None)
    try:
        delivery = await publish(topic, key, record)
    finally:
        current_outbox.reset(outbox)
    await delivery


def new_outbox() -> Outbox:
    return Outbox(app.conf.producer_max_request_size)


async def send_outbox(outbox: Outbox) -> list[asyncio.Future]:
    """Everything a stage batch queued, to the producer at once (app/outbox.py); the deliveries the
    batch's input offsets wait for. In a transaction (exactly_once) Faust routes each record through
    the transactional producer of the input partition, so there the records go one by one."""
    producer = await started_producer()
    deliveries = await outbox.send(OneByOne(producer) if app.in_transaction else producer)
    for delivery in deliveries:
        delivery.add_done_callback(lambda done: stop_if_lost(done, "a stage batch's outputs"))
    return deliveries


async def started_producer():
    """The app's producer. Awaiting `app.maybe_start_producer()` for every record took ~320 µs of
    wall time per call inside the loaded position stage (other tasks ran in between; why Faust's
    coroutine gives the loop away there was not pinned down), against well under 1 µs for this
    check. Taking the running producer directly: position stage ~500 → 1,087 movements/s (one run
    each, `bench.run --only throughput --systems positions --runs 1`)."""
    producer = app.producer
    if app.in_transaction or not producer.started:
        producer = await app.maybe_start_producer()
    return producer


def stop_if_lost(delivery: asyncio.Future, topic: str, exit_=os._exit) -> None:
    """A record the producer gave up on (after its own retries: ACL denied, topic deleted, broker away
    past the delivery timeout) must not be committed over: Faust's commit flushes the producer, which
    returns once every send has *finished*, failed ones included, and commits the input offsets.
    This callback runs before that flush returns (the record's future is resolved before its batch's),
    so stopping the process here is the one way to be sure no commit passes the records that produced
    it: they are processed again after the restart (the replay rule makes that exact). A failure that
    lasts makes the worker exit again with the same message: an operator must act (SPEC §10).
    """
    if delivery.cancelled():
        return   # only at stop, after the last commit flushed every send
    error = delivery.exception()
    if error is None:
        return
    log.critical("a record for %s could not be delivered (%r): the worker stops now (exit %d) so that no commit "
                 "passes its input; it is processed again after the restart. If this repeats, check the topic "
                 "exists and the worker's credentials may write to it.", topic, error, EXIT_LOST_DELIVERY)
    exit_now(EXIT_LOST_DELIVERY, exit_)


async def trace(source_system: str, source_event_id: str | None, stage: TraceStage, **detail: object) -> None:
    """One trace fact of a source event, in its own record (see `Trace` for several at once)."""
    facts = Trace(source_system, source_event_id)
    facts.add(stage, **detail)
    await facts.send()


class Trace:
    """The trace facts one stage records for one source event while it handles one record, sent as
    one record of JSON lines: ingest's "received" and one fact per movement, finance's "applied"
    (carried from the position stage by the ledger entry) and one per posting, each used to be a
    record of its own (the lineage stage appends the lines one by one). Inside a stage batch, the
    batch's trace records of one partition go packed into a few topic records (app/packs.py)."""

    def __init__(self, source_system: str, source_event_id: str | None) -> None:
        self.source_system, self.source_event_id = source_system, source_event_id
        self.lines: list[bytes] = []

    def add(self, stage: TraceStage, at: datetime | None = None, **detail: object) -> None:
        """One fact; `at` is when it happened, if that was before now (another stage saw it)."""
        if self.source_event_id:
            self.lines.append(fact_line(self.source_system, self.source_event_id, stage, at or utcnow(), detail))

    async def send(self) -> None:
        if self.lines:
            await send_record(lineage_topic.get_topic_name(), f"{self.source_system}:{self.source_event_id}".encode(),
                              b"\n".join(self.lines))
            self.lines = []


async def dead_letter(message: faust.types.Message | None, source_topic: str, raw_value: bytes | str | None,
                      rejection: Rejection, *, source_system: str | None = None,
                      source_event_id: str | None = None, stage: str | None = None,
                      key: bytes | str | None = None) -> None:
    """Park a record we cannot process, with its reason; the pipeline carries on. The raw value is
    kept whole up to 256 KiB, beyond that cut, with the whole value's size and digest. The key is
    the Kafka record's unless given (a record of a pack: app/packs.py)."""
    raw = raw_for_letter(raw_value)
    if key is None and message is not None:
        key = message.key
    letter = DeadLetter(
        source_topic=source_topic,
        partition=message.partition if message is not None else None,
        offset=message.offset if message is not None else None,
        key=raw_for_letter(key, keep=1024).text if key is not None else None,
        raw_value=raw.text,
        raw_size=raw.size,
        raw_sha256=raw.sha256,
        raw_truncated=raw.truncated,
        error_code=rejection.error_code,
        error_detail=rejection.error_detail[:2000],
        received_at=utcnow(),
        source_system=source_system,
        source_event_id=source_event_id,
        stage=stage,
        app_id=app.conf.id,
    )
    metrics.DLQ_RECORDS.labels(code=rejection.error_code.value).inc()
    await publish(dlq_topic, source_event_id, letter)
    if source_system:
        await trace(source_system, source_event_id, TraceStage.DEAD_LETTER,
                    error_code=rejection.error_code.value, error_detail=rejection.error_detail,
                    source_topic=source_topic, offset=letter.offset, partition=letter.partition)


__all__ = ["ErrorCode", "dead_letter", "publish", "trace", "utcnow"]
