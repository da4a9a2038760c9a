"""Finance stage: applied movements → balanced postings, finance exceptions, and store day batches.

Runs behind the position stage on its own topic (keyed by location), so a posting problem can
never hold back a stock update (SPEC §1: operational and financial flows kept apart).
"""
from __future__ import annotations

import time
from datetime import UTC, datetime

from agents.outputs import Trace, publish, publish_acknowledged, trace, utcnow
from agents.streams import each_batch
from agents.timers import each_apart, timer
from app import metrics
from app.domain.accounts import parse_chart_overrides
from app.domain.day_batches import (
    Day, DayLedger, DayStatus, add_pos_totals, add_posting, close_after_grace_due, close_day, close_late,
    due_to_close_by_clock, due_to_forget, late_batch_due, reopen_day, status_of,
)
from app.domain.keys import day_batch_key, is_day_page_key
from app.domain.postings import postings_for
from app.domain.throttle import RecentKeys
from app.faust_app import (
    app, finance_exceptions_topic, journal_batches_topic, ledger_topic, postings_topic, settings,
)
from app.models.finance_ledger import CloseDue, LedgerEntry
from app.models.records import FinanceException, JournalBatch, TraceStage, json_bytes
from app.packs import records_of
from tables.day_ledgers import DayLedgerWrites, day_ledgers, day_statuses, parsed_ledgers
from tables.master import master_data
from tables.store import BatchWrites

charts = parse_chart_overrides(settings.chart_overrides)


# Postings are not on the stock path, and a finance batch rewrites every store day it touches (its
# day ledger's head, a few KB, and that head's changelog record). At a steady rate, taking
# whatever had arrived made ~15 small batches a second; up to 250 ms more makes ~3, cuts the stage's
# own CPU by 6-17 % and leaves the position stage the CPU it needs (one worker at 782 raw events/s:
# p99 to availability 435 and 548 ms without, 291-328 ms with; BENCHMARKS.md, twentieth session).
LINGER = 0.25


@app.agent(ledger_topic)
async def book(stream):
    await each_batch(stream, "finance", FinanceBatch, linger=LINGER, unpack=records_of)


class FinanceBatch:
    """A batch of finance.ledger entries: each day ledger read and parsed once, every entry counted
    into it in memory in offset order, and written once at the end (agents/streams.py, each_batch).

    A store's day ledger remembers the marks of its last 4,000 postings, ~100 KB of JSON: parsed and
    rewritten for every posting it was most of the pipeline's CPU (BENCHMARKS.md). It is stored as a
    head and pages (tables/day_ledgers.py), so a batch writes a few KB per day it touches. The
    ledger topic is keyed by location, so a day's ledger lives in the partition of the entries that
    change it.
    """

    def __init__(self) -> None:
        self.ledgers = DayLedgerWrites(day_ledgers.table, parsed_ledgers)
        self.statuses = BatchWrites(day_statuses.table, decode=DayStatus.model_validate_json, encode=json_bytes)
        self.touched: dict[bytes, int] = {}   # every day ledger this batch read or wrote -> its partition

    def finish(self, outbox) -> None:
        # A day's status is brought in line with its ledger whenever the ledger is touched, not
        # only when it changes: after a crash between the two changelog records, the re-delivered
        # entries read the same ledgers again and mend the status, though they change nothing.
        for key, partition in self.touched.items():
            status = status_of(self.ledgers.get(key, partition))
            if self.statuses.get(key, partition) != status:
                self.statuses.set(key, status, partition)
        self.ledgers.write(outbox)
        self.statuses.write(outbox)

    def _get(self, key: str, partition: int) -> DayLedger | None:
        raw_key = key.encode()
        self.touched[raw_key] = partition
        return self.ledgers.get(raw_key, partition)

    def _set(self, key: str, ledger: DayLedger | None, partition: int) -> None:
        raw_key = key.encode()
        self.touched[raw_key] = partition
        self.ledgers.set(raw_key, ledger, partition)

    def _ledger_for(self, location_id: str, business_date, partition: int) -> tuple[str, DayLedger]:
        location = master_data.location(location_id)
        legal_entity = location.legal_entity if location else "UNKNOWN"
        key = day_batch_key(legal_entity, location_id, business_date)
        return key, self._get(key, partition) or _reopen(legal_entity, location_id, business_date,
                                              location.currency if location else "USD")

    async def take(self, event) -> None:
        partition = event.message.partition
        entry = LedgerEntry.model_validate_json(event.value)
        if entry.applied is not None:
            await self._post(entry, partition)
        elif entry.pos_totals is not None:
            facts = entry.pos_totals
            key, ledger = self._ledger_for(facts.location_id, facts.business_date, partition)
            self._set(key, add_pos_totals(ledger, facts.units_sold, facts.gross, facts.transaction_id), partition)
        elif entry.day_close is not None:
            close = entry.day_close
            key, ledger = self._ledger_for(close.location_id, close.business_date, partition)
            if not ledger.closed and ledger.close_requested_at is None:
                # Movements of the day may still be on their way through other partitions: close
                # after a grace period rather than at once (DAY_CLOSE_GRACE), late ones still land.
                self._set(key, ledger.model_copy(update={"close_requested_at": utcnow()}), partition)
        elif entry.close_due is not None:
            key, ledger = self._ledger_for(entry.close_due.location_id, entry.close_due.business_date, partition)
            closed, batch = (close_late if ledger.closed else close_day)(ledger, utcnow())
            if batch is not None:
                await _emit_batch(batch)
                self._set(key, closed, partition)
        elif entry.forget_day is not None:
            key, ledger = self._ledger_for(entry.forget_day.location_id, entry.forget_day.business_date, partition)
            if due_to_forget(ledger, utcnow(), settings.dedupe_retention):
                self._set(key, None, partition)

    async def _post(self, entry: LedgerEntry, partition: int) -> None:
        applied = entry.applied
        movement = applied.movement
        facts = Trace(movement.source_system.value, movement.source_event_id)
        if entry.applied_trace is not None:
            done = entry.applied_trace
            facts.add(TraceStage.APPLIED, at=done.at, movement_id=movement.movement_id, key=done.key,
                      version=done.version, available=done.available, on_hand=done.on_hand,
                      previous_available=done.previous_available, replay=done.replay)
        try:
            result = postings_for(applied, master_data.location(movement.location_id), charts, utcnow())
            counted = self._counted(result.postings, partition)
        except Exception:
            await facts.send()   # the movement was applied, whatever finance makes of it
            raise
        for key, ledger in counted.items():
            self._set(key, ledger, partition)
        for posting in result.postings:
            await publish(postings_topic, posting.posting_id, posting)
            metrics.labelled(metrics.POSTINGS_OUT, posting.kind.value).inc()
            facts.add(TraceStage.POSTING, posting_id=posting.posting_id, kind=posting.kind.value,
                      movement_id=posting.movement_id)
        await facts.send()
        for problem in result.exceptions:
            await _raise_exception(problem)

    def _counted(self, postings: list, partition: int) -> dict[str, DayLedger]:
        """The day ledgers with the postings counted in, built before anything is kept or sent: a
        record that fails here is rejected with nothing of it in the batch."""
        counted: dict[str, DayLedger] = {}
        for posting in postings:
            key = day_batch_key(posting.legal_entity, posting.location_id, posting.business_date)
            ledger = counted.get(key) or self._get(key, partition) or _reopen(
                posting.legal_entity, posting.location_id, posting.business_date, posting.currency)
            updated = add_posting(ledger, posting)
            if updated is not ledger:   # not counted before (a re-delivered movement's postings are)
                counted[key] = updated
        return counted


def _reopen(legal_entity: str, location_id: str, business_date, currency: str) -> DayLedger:
    return reopen_day(legal_entity, location_id, business_date, currency, utcnow(), settings.dedupe_retention)


async def _emit_batch(batch: JournalBatch) -> None:
    """The batch is with the broker before its day is written closed: a closed day's entries emit
    nothing again, so a batch lost after the ledger's changelog record was would be lost for good.
    The other way round, a worker killed in between sends the same batch (same `batch_id`) again
    when the entry is read again: a duplicate, which the ERP poster and any consumer keyed on the
    batch id ignore (RELIABILITY.md §2). One round trip to the broker per store day closed."""
    key = day_batch_key(batch.legal_entity, batch.location_id, batch.business_date)
    await publish_acknowledged(journal_batches_topic, key, batch)


async def _raise_exception(problem: FinanceException) -> None:
    metrics.FINANCE_EXCEPTIONS.labels(reason=problem.reason_code.value).inc()
    await publish(finance_exceptions_topic, problem.source_event_id, problem)
    await trace(problem.source_system, problem.source_event_id, TraceStage.FINANCE_EXCEPTION,
                reason_code=problem.reason_code.value, detail=problem.detail)


ANNOUNCE_AGAIN_AFTER = 10.0   # seconds: an announcement not acted on by then is sent again
# The day ledgers announced within that time: older ones answer nothing any more, so this holds the
# last seconds' days, not every store-day the worker ever closed.
_announced = RecentKeys(ANNOUNCE_AGAIN_AFTER)


@timer(1.0)
async def close_days_after_grace():
    """Timers cannot write tables: announce due closes (a store's day after its DAY_CLOSE, a closed
    day's late postings LATE_BATCH_AFTER after the first) through the ledger topic; the agent closes."""
    await announce_closes_after_grace(list(day_statuses.table.items()), datetime.now(UTC))


async def announce_closes_after_grace(statuses, now: datetime) -> None:
    async def announce_if_due(item: tuple[str, bytes]) -> None:
        key, raw = item
        if b'"closed":true' in raw:
            if b'"late_since":null' in raw:
                return  # closed, nothing late waiting: the slow sweep below forgets it in time
        elif b'"close_requested_at":null' in raw:
            return  # no DAY_CLOSE seen; a location without a POS closes by the clock (below)
        day = DayStatus.model_validate_json(raw)
        if (close_after_grace_due(day, now, settings.day_close_grace)
                or late_batch_due(day, now, settings.late_batch_after)):
            await _announce(key, day, close_due=True)
    await each_apart(statuses, announce_if_due, timer="close_days_after_grace", what=_day_named)


@timer(60.0)
async def close_days_by_the_clock():
    """Locations without a POS (DCs) get no DAY_CLOSE: their days close DAY_CLOSE_AFTER after the
    business date ended in the location's time zone; closed days are forgotten after DEDUPE_RETENTION.
    Both are announced through the ledger topic, as above."""
    await _touch_days_without_status()
    await announce_closes_by_the_clock(list(day_statuses.table.items()), datetime.now(UTC))


async def announce_closes_by_the_clock(statuses, now: datetime) -> None:
    async def announce_if_due(item: tuple[str, bytes]) -> None:
        key, raw = item
        day = DayStatus.model_validate_json(raw)
        if day.closed:
            if due_to_forget(day, now, settings.dedupe_retention):
                await _announce(key, day, close_due=False)
            return
        location = master_data.location(day.location_id)
        if location is None or location.type.value == "STORE":
            return  # a store closes at its POS DAY_CLOSE
        if due_to_close_by_clock(day, location.timezone, now, settings.day_close_after):
            await _announce(key, day, close_due=True)
    await each_apart(statuses, announce_if_due, timer="close_days_by_the_clock", what=_day_named)


def _day_named(item: tuple[str, bytes]) -> str:
    return f"day {item[0]!r}"


_looked_for_days_without_status = False


async def _touch_days_without_status() -> None:
    """Day ledgers written before `day-statuses` existed have no status until the agent next reads
    them: once per worker, announce each such day as one to forget. The agent reads its ledger
    (which writes its status) and forgets it only if it is due (`due_to_forget`)."""
    global _looked_for_days_without_status
    if _looked_for_days_without_status:
        return
    _looked_for_days_without_status = True

    async def announce_forget(key) -> None:
        if key not in day_statuses.table:
            await _announce(key, DayLedger.model_validate_json(day_ledgers.table[key]), close_due=False)
    days = [key for key in day_ledgers.table.keys() if not is_day_page_key(key)]
    await each_apart(days, announce_forget, timer="close_days_by_the_clock",
                     what=lambda key: f"day {key!r}")


async def _announce(key: str, day: Day, *, close_due: bool) -> None:
    now = time.monotonic()
    if _announced.recent(key, now):
        return  # already announced; it is on its way
    _announced.mark(key, now)
    which = CloseDue(location_id=day.location_id, business_date=day.business_date)
    await publish(ledger_topic, day.location_id,
                  LedgerEntry(close_due=which) if close_due else LedgerEntry(forget_day=which))
