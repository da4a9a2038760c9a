"""Posting one journal batch to the ERP, never twice (SPEC §9). No Faust: agents/erp.py feeds it.

Every attempt starts with a look-up of the batch id, so whatever happened before — a crash between
the ERP's commit and our ack, a redelivered or replayed batch, a time-out on a call that did go
through — the entry is created at most once: found posted → DUPLICATE, found in draft (created,
then interrupted before the post) → posted now, not found → created and posted.
"""
from __future__ import annotations

import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime

from app.domain.erp_entries import entry_description, entry_lines
from app.domain.throttle import backoff_delay
from app.erp.client import ErpLedger, ErpRejected, ErpUnavailable
from app.models.records import ErpStatus, JournalBatch


@dataclass
class PostOutcome:
    status: ErpStatus
    erp_reference: str | None
    attempts: int                 # ERP round trips (look-up, create, post), retried ones included
    message: str = ""             # the ERP's message for a rejection
    errors: list[str] = field(default_factory=list)  # transport/server errors retried on the way


async def post_batch(ledger: ErpLedger, batch: JournalBatch, *, sleep: Callable[[float], Awaitable[None]],
                     on_error: Callable[[str], None] = lambda _: None,
                     after_step: Callable[[str], None] = lambda _: None,
                     now: Callable[[], datetime] | None = None, rng: random.Random | None = None,
                     max_backoff: float = 10.0) -> PostOutcome:
    """Post `batch` and say what became of it; waits through ERP outages for as long as they last
    (the caller's Kafka lag is the buffer), so it returns only with POSTED, DUPLICATE or REJECTED."""
    attempts = 0
    retries = 0
    errors: list[str] = []
    lines = entry_lines(batch)
    reference = entry_description(batch)
    while True:
        try:
            attempts += 1
            found = await ledger.lookup(batch.legal_entity, reference)
            if found is not None and found.posted:
                return PostOutcome(ErpStatus.DUPLICATE, found.erp_reference, attempts, errors=errors)
            if found is None:
                if not lines:  # nothing to book (a day with no postings): no entry, nothing to post
                    return PostOutcome(ErpStatus.POSTED, None, attempts, errors=errors)
                attempts += 1
                erp_reference = await ledger.create(batch.legal_entity, reference, batch.business_date, lines)
                after_step("create")
            else:
                erp_reference = found.erp_reference
            attempts += 1
            await ledger.post(batch.legal_entity, erp_reference)
            after_step("post")
            return PostOutcome(ErpStatus.POSTED, erp_reference, attempts, errors=errors)
        except ErpRejected as refused:
            return PostOutcome(ErpStatus.REJECTED, None, attempts, message=str(refused), errors=errors)
        except ErpUnavailable as problem:
            retries += 1
            errors.append(str(problem))
            on_error(str(problem))
            await sleep(backoff_delay(retries, cap=max_backoff, rng=rng))
