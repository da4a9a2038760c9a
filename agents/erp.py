"""ERP poster stage: finance.journal_batches → one journal entry per batch in the ERP (SPEC §9).

One plain agent (batches are few: one per location and day, plus late ones). It awaits the ERP:
while the ERP is down it backs off and tries the same batch again, so later batches wait in
Kafka (this agent's lag grows) and nothing piles up in memory; other stages have their own agents
and never wait for it. Calls are paced by a token bucket (ERP_MAX_RPS) shared by every call.
"""
from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
from dataclasses import dataclass

from agents.outputs import publish, utcnow
from agents.streams import each_event
from agents.timers import timer
from app import metrics
from app.domain.throttle import TokenBucket
from app.erp.client import TrytonLedger, TrytonRpc
from app.erp.posting import post_batch
from app.faust_app import app, erp_acks_topic, erp_rejections_topic, journal_batches_topic, settings
from app.kafka_transport import next_to_process
from app.models.records import ErpAck, ErpRejection, ErpStatus, JournalBatch

log = logging.getLogger(__name__)

# Test hook (tests/e2e/test_erp_crash.py): SIGKILL this worker right after the named ERP call
# returned ("create" or "post"), i.e. between the ERP's commit and our ack.
CRASH_AFTER = os.environ.get("ERP_TEST_CRASH_AFTER", "")
# Test hook (tests/e2e/test_erp_posting.py, the rate test): append each call's start time here.
CALL_LOG = os.environ.get("ERP_TEST_CALL_LOG", "")


@dataclass
class PosterState:
    """What GET /v1/erp and the metrics report about this worker's poster."""

    last_error: str | None = None
    last_error_at: float | None = None
    reachable: bool | None = None       # None until the first call
    working_on: str | None = None       # batch id being posted now
    working_since: float | None = None  # wall time the oldest waiting batch was written to Kafka
    waiting: int = 0
    posted: int = 0


state = PosterState()
_bucket = TokenBucket(rate=settings.erp_max_rps)
_done: dict = {}   # partition → offset of the last batch acked, for the lag


async def _throttle() -> None:
    while (wait := _bucket.take(time.monotonic())) > 0:
        await asyncio.sleep(wait)


def _observe(method: str, seconds: float, outcome: str) -> None:
    # The call's start, read before any I/O: a log line stamped after opening the file could land
    # late on a busy box and make two calls look closer than the bucket let them be.
    started = time.time() - seconds
    metrics.ERP_CALL_SECONDS.labels(method=method, outcome=outcome).observe(seconds)
    if CALL_LOG:
        with open(CALL_LOG, "a") as calls:
            calls.write(f"{started:.6f} {method} {outcome}\n")
    # A refused request was still answered: the ERP is up.
    state.reachable = outcome != "error"
    metrics.ERP_REACHABLE.labels(erp_url=settings.erp_url).set(1 if state.reachable else 0)


def _error(message: str) -> None:
    state.last_error, state.last_error_at = message, time.time()
    log.warning("ERP call failed, retrying with back-off: %s", message)


def _after_step(step: str) -> None:
    if CRASH_AFTER == step:
        log.warning("ERP_TEST_CRASH_AFTER=%s: killing this worker after the ERP committed", step)
        os.kill(os.getpid(), signal.SIGKILL)


async def _back_off(seconds: float) -> None:
    """Sleep between retries; a stopping worker gives the batch up instead (not acked, so it is
    posted after the restart): Faust's stop waits for the event an agent holds, outage or not."""
    if app.should_stop:
        raise asyncio.CancelledError("worker stopping during an ERP outage")
    await asyncio.sleep(seconds)


ledger = TrytonLedger(TrytonRpc(settings.erp_url, settings.erp_database, settings.erp_user,
                                settings.erp_password, timeout=settings.erp_timeout,
                                before_call=_throttle, after_call=_observe))


@app.agent(journal_batches_topic)
async def post_to_erp(stream):
    await each_event(stream, "erp", post_batch_record)


async def post_batch_record(event) -> None:
    batch = JournalBatch.model_validate_json(event.value)
    state.working_on, state.working_since = batch.batch_id, event.message.timestamp
    outcome = await post_batch(ledger, batch, sleep=_back_off, on_error=_error, after_step=_after_step)
    now = utcnow()
    await publish(erp_acks_topic, batch.batch_id, ErpAck(
        batch_id=batch.batch_id, status=outcome.status, erp_reference=outcome.erp_reference,
        attempts=outcome.attempts, posted_at=now))
    if outcome.status is ErpStatus.REJECTED:
        state.last_error, state.last_error_at = f"{batch.batch_id} rejected: {outcome.message}", time.time()
        await publish(erp_rejections_topic, batch.batch_id, ErpRejection(
            batch_id=batch.batch_id, legal_entity=batch.legal_entity, location_id=batch.location_id,
            business_date=batch.business_date, message=outcome.message, rejected_at=now))
    metrics.ERP_POSTS.labels(status=outcome.status.value).inc()
    state.posted += 1
    state.working_on = state.working_since = None
    _done[event.message.tp] = event.message.offset


@timer(2.0)
async def erp_waiting_gauges() -> None:
    """Batches waiting = this worker's lag on finance.journal_batches (end offset minus next to post)."""
    consumer = app.consumer
    waiting = 0
    for tp in consumer.assignment():
        if tp.topic != journal_batches_topic.get_topic_name():
            continue
        end = consumer.highwater(tp) or 0
        done = _done.get(tp)
        next_offset = done + 1 if done is not None else (next_to_process(consumer, tp) or 0)
        waiting += max(0, end - next_offset)
    state.waiting = waiting
    metrics.ERP_BATCHES_WAITING.set(waiting)
    oldest = time.time() - state.working_since if state.working_since else 0.0
    metrics.ERP_OLDEST_WAITING.set(max(0.0, oldest) if waiting else 0.0)
