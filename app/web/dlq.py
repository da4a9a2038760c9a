"""Dead letters for operators: a bounded index of `inventory.dlq` on every worker, and the admin replay.

Each worker follows the whole DLQ topic (every partition, no consumer group, from the beginning)
and keeps counts by error code and source topic over everything read, plus the newest
WINDOW letters for `GET /v1/dlq`. Any worker can therefore answer for the whole DLQ, without
asking the others, and memory stays bounded however large the DLQ grows.
"""
from __future__ import annotations

import asyncio
import logging
from collections import Counter, deque
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from faust.web import Request, Response, View
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from app import topics as t
from app.connection import client_kwargs
from app.faust_app import app, audit_topic, settings
from app.models.records import ErrorCode
from app.replay import replay_dead_letters, select_dead_letters
from app.web import audit
from app.web.auth import ADMIN, VIEWER
from app.web.http import REQUEST_ID_HEADER, bad_request, guarded, json_response, principal_of

log = logging.getLogger("app.web.dlq")

WINDOW = 10_000
MAX_LIMIT = 1_000
# Of each letter's raw value, the index holds this much: a letter may carry 256 KiB of it (SPEC §4), and
# WINDOW whole letters from a hostile producer would be gigabytes in every worker (and in one answer of
# MAX_LIMIT letters). The whole letter stays on the DLQ topic at its dlq_partition and dlq_offset.
INDEX_RAW_CHARS = 2048


class DeadLetterIndex:
    """Counts over every dead letter read, and the newest `window` of them for listing."""

    def __init__(self, window: int = WINDOW) -> None:
        self.window = window
        self.reset()

    def reset(self) -> None:
        self.recent: deque[dict[str, Any]] = deque(maxlen=self.window)
        self.by_code: Counter[str] = Counter()
        self.by_source_topic: Counter[str] = Counter()
        self.total = 0
        self.caught_up = False

    def add(self, letter: dict[str, Any]) -> None:
        self.total += 1
        self.by_code[str(letter.get("error_code"))] += 1
        self.by_source_topic[str(letter.get("source_topic"))] += 1
        raw = letter.get("raw_value")
        if isinstance(raw, str) and len(raw) > INDEX_RAW_CHARS:
            letter = {**letter, "raw_value": raw[:INDEX_RAW_CHARS], "raw_value_cut_in_view": True}
        self.recent.append(letter)

    def query(self, *, code: str | None = None, source_topic: str | None = None,
              source_event_id: str | None = None, limit: int = 100) -> tuple[list[dict[str, Any]], int]:
        """Newest first: up to `limit` matching letters, and how many in the window match."""
        matched = [
            letter for letter in reversed(self.recent)
            if (code is None or letter.get("error_code") == code)
            and (source_topic is None or letter.get("source_topic") == source_topic)
            and (source_event_id is None or letter.get("source_event_id") == source_event_id)
        ]
        return matched[:limit], len(matched)

    def summary(self) -> dict[str, Any]:
        return {"total": self.total, "by_code": dict(self.by_code.most_common()),
                "by_source_topic": dict(self.by_source_topic.most_common()),
                "window": {"held": len(self.recent), "bound": self.recent.maxlen}, "caught_up": self.caught_up}


index = DeadLetterIndex()


@app.task
async def follow_dead_letters() -> None:
    """Keep the index following the DLQ topic for the worker's lifetime; start over after a failure."""
    while True:
        try:
            await _follow()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("dead letter index lost the DLQ topic; reading it again in 5 s")
            await asyncio.sleep(5.0)


async def _follow() -> None:
    consumer = AIOKafkaConsumer(**client_kwargs(settings.kafka), group_id=None,
                                enable_auto_commit=False, auto_offset_reset="earliest")
    await consumer.start()
    try:
        partitions = consumer.partitions_for_topic(t.DLQ)
        while not partitions:
            await asyncio.sleep(1.0)
            await consumer._client.force_metadata_update()
            partitions = consumer.partitions_for_topic(t.DLQ)
        tps = [TopicPartition(t.DLQ, p) for p in sorted(partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        index.reset()  # everything is read again from the beginning
        while True:
            batch = await consumer.getmany(timeout_ms=1000, max_records=2000)
            for records in batch.values():
                for record in records:
                    _index_record(record)
            if not index.caught_up and all([await consumer.position(tp) >= ends[tp] for tp in tps]):
                index.caught_up = True
                log.info("dead letter index caught up: %d letters", index.total)
    finally:
        await consumer.stop()


def _index_record(record) -> None:
    try:
        letter = orjson.loads(record.value)
    except (orjson.JSONDecodeError, TypeError):
        letter = {"error_code": "UNREADABLE", "raw_value": repr(record.value)[:500]}
    if isinstance(letter, dict):
        index.add({**letter, "dlq_partition": record.partition, "dlq_offset": record.offset})


def _limit(raw: str | None, default: int = 100) -> int:
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise bad_request(f"limit must be an integer, got {raw!r}") from None
    if not 1 <= value <= MAX_LIMIT:
        raise bad_request(f"limit must be between 1 and {MAX_LIMIT}")
    return value


def _code(raw: str | None) -> str | None:
    if not raw:
        return None
    if raw not in ErrorCode.__members__:
        raise bad_request(f"unknown error code {raw!r}", known_codes=[c.value for c in ErrorCode])
    return raw


@app.page("/v1/dlq")
class DeadLetters(View):
    @guarded(VIEWER)
    async def get(self, request: Request) -> Response:
        query = request.query
        records, matched = index.query(code=_code(query.get("code")), source_topic=query.get("source_topic") or None,
                                       source_event_id=query.get("source_event_id") or None,
                                       limit=_limit(query.get("limit")))
        return json_response(self, {**index.summary(), "matched_in_window": matched, "records": records})


class ReplayRequest(BaseModel):
    """Which dead letters to re-send to their source topic; at least one selector is required."""

    model_config = ConfigDict(extra="forbid")

    error_code: ErrorCode | None = None
    source_topic: str | None = Field(default=None, min_length=1, max_length=200)
    source_event_ids: list[str] | None = Field(default=None, min_length=1, max_length=10_000)
    limit: int | None = Field(default=None, ge=1, le=1_000_000)
    dry_run: bool = False

    @model_validator(mode="after")
    def _selective(self) -> ReplayRequest:
        if self.error_code is None and self.source_topic is None and self.source_event_ids is None:
            raise ValueError("select records by error_code, source_topic or source_event_ids")
        return self

    def selection(self) -> dict[str, Any]:
        return {"error_code": self.error_code.value if self.error_code else None, "source_topic": self.source_topic,
                "source_event_ids": set(self.source_event_ids) if self.source_event_ids else None,
                "limit": self.limit}


@app.page("/v1/dlq/replay")
class ReplayDeadLetters(View):
    @guarded(ADMIN)
    async def post(self, request: Request) -> Response:
        body = await request.read()
        try:
            replay = ReplayRequest.model_validate_json(body or b"{}")
        except ValidationError as exc:
            raise bad_request("invalid replay request", errors=[
                {"field": ".".join(map(str, e["loc"])), "problem": e["msg"]} for e in exc.errors()]) from None
        selection = replay.selection()
        principal = principal_of(request)
        request_id = request.headers.get(REQUEST_ID_HEADER)
        action = "dlq.replay.dry_run" if replay.dry_run else "dlq.replay"
        described = replay.model_dump(mode="json")
        started = audit.audit_entry(principal, action, described, "started", request_id=request_id)
        audit_id = started.detail["audit_id"]
        await audit.record(started, settings.audit_log, audit_topic, required=True)
        try:
            if replay.dry_run:
                count = len(await select_dead_letters(settings.kafka, **selection))
            else:
                count = await replay_dead_letters(settings.kafka, **selection)
        except Exception as exc:
            await audit.record(audit.audit_entry(principal, action, described, "failed", {"error": repr(exc)},
                                                 audit_id=audit_id, request_id=request_id),
                               settings.audit_log, audit_topic)
            raise
        outcome = {"matched" if replay.dry_run else "replayed": count}
        await audit.record(audit.audit_entry(principal, action, described, "succeeded", outcome,
                                             audit_id=audit_id, request_id=request_id),
                           settings.audit_log, audit_topic)
        return json_response(self, {**outcome, "dry_run": replay.dry_run, "selection": described,
                                    "audit_id": audit_id})
