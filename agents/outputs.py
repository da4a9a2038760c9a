"""The one way every stage publishes: records with their key, dead letters, and trace facts."""
from __future__ import annotations

from datetime import UTC, datetime

import faust
from pydantic import BaseModel

from app import metrics
from app.faust_app import app, dlq_topic, lineage_topic
from app.models.records import DeadLetter, ErrorCode, Rejection, TraceFact, TraceStage


def utcnow() -> datetime:
    return datetime.now(UTC)


async def publish(topic: faust.TopicT, key: str | None, record: BaseModel) -> None:
    """Hand one record to the app's producer; its delivery is awaited by Faust's flush before each commit.

    This is the call `Topic.send` ends in (`Topic.publish_message`), minus the FutureMessage,
    PendingMessage, sensor and done-callback layers around it, which cost more CPU per record than
    the record's own serialisation and which nothing here reads. At-least-once is unchanged: Faust
    flushes this producer before it commits the input offsets; with exactly_once,
    `maybe_start_producer` returns the transaction manager, as it does for `Topic.send`.
    """
    producer = await app.maybe_start_producer()
    await producer.send(topic.get_topic_name(), key.encode() if key is not None else None,
                        record.model_dump_json().encode(), None, None, None)


async def trace(source_system: str, source_event_id: str | None, stage: TraceStage, **detail: object) -> None:
    if not source_event_id:
        return
    fact = TraceFact(source_system=source_system, source_event_id=source_event_id, stage=stage,
                     at=utcnow(), detail=detail)
    await publish(lineage_topic, f"{source_system}:{source_event_id}", fact)


async def dead_letter(message: faust.types.Message | None, source_topic: str, raw_value: bytes | str,
                      rejection: Rejection, *, source_system: str | None = None,
                      source_event_id: str | None = None) -> None:
    """Park a record we cannot process, whole and with its reason; the pipeline carries on."""
    raw_text = raw_value.decode("utf-8", errors="replace") if isinstance(raw_value, bytes) else raw_value
    key = message.key if message is not None else None
    letter = DeadLetter(
        source_topic=source_topic,
        partition=message.partition if message is not None else None,
        offset=message.offset if message is not None else None,
        key=key.decode("utf-8", errors="replace") if isinstance(key, bytes) else key,
        raw_value=raw_text,
        error_code=rejection.error_code,
        error_detail=rejection.error_detail,
        received_at=utcnow(),
        source_system=source_system,
        source_event_id=source_event_id,
    )
    metrics.DLQ_RECORDS.labels(code=rejection.error_code.value).inc()
    await publish(dlq_topic, source_event_id, letter)
    if source_system:
        await trace(source_system, source_event_id, TraceStage.DEAD_LETTER,
                    error_code=rejection.error_code.value, error_detail=rejection.error_detail,
                    source_topic=source_topic, offset=letter.offset, partition=letter.partition)


__all__ = ["ErrorCode", "dead_letter", "publish", "trace", "utcnow"]
