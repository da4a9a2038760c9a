"""Store day batches (SPEC §5.3): one store's postings of one business date, summarised at day close."""
from __future__ import annotations

from datetime import date, datetime, time, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

from pydantic import BaseModel, field_validator, model_validator

import hashlib

from app.domain.keys import day_batch_key
from app.domain.marks import MARK_CHARS, mark_of, marks_contain, with_mark
from app.domain.money import ZERO, to_amount
from app.models.canonical import SourceSystem
from app.models.records import JournalBatch, Posting, PostingKind

Totals = dict[str, dict[str, Decimal]]  # account -> {"debit": .., "credit": ..}

# A day ledger stays bounded in bytes whatever the store sells (SPEC §4): a batch lists the ids of
# at most LISTED_POSTING_IDS postings (every late batch, most store days), and always their count
# and digest; re-delivered postings and POS transactions are recognised among the last COUNTED_KEEP.
# Re-deliveries come within minutes (the finance stage's uncommitted records, a position's replay),
# not thousands of postings later.
LISTED_POSTING_IDS = 1000
COUNTED_KEEP = 4000


class DayLedger(BaseModel):
    """The day batch of one store and business date while it fills, and what was counted into it.

    The control counters cover the whole day (every batch, day and late, reports them as of its
    emission); they count POS-sourced postings only, so they compare like with like against what
    the POS itself says it sold: a web order shipped from the store is in the totals, not the controls.
    """

    legal_entity: str
    location_id: str
    business_date: date
    currency: str = "USD"
    closed: bool = False
    closed_at: datetime | None = None
    close_requested_at: datetime | None = None  # DAY_CLOSE seen; the batch goes out after the grace period
    late_since: datetime | None = None  # closed day: the first posting waiting for the next late batch
    sequence: int = 0                 # of the next batch: 0 is the day batch, late batches follow
    totals: Totals = {}               # postings not yet in a batch
    posting_ids: list[str] = []       # postings not yet in a batch, the first LISTED_POSTING_IDS of them
    posting_count: int = 0            # postings not yet in a batch
    posting_digest: str = ""          # of postings not yet in a batch (posting_digest_of)
    # Marks (app/domain/marks.py) of the day's last postings and POS transactions counted, end to
    # end, oldest first, so a re-delivered one is never counted twice.
    counted_postings: str = ""
    counted_pos_transactions: str = ""
    # How many marks each of those ever had added: where a mark sits for good, which names the page
    # it is stored in (app/domain/day_pages.py).
    postings_marked: int = 0
    pos_transactions_marked: int = 0
    # Only in a stored head (app/domain/day_pages.py): how many items of each list are in its pages.
    paged: dict[str, int] = {}
    pos_units_sold: int = 0
    pos_gross: Decimal = ZERO
    cogs_units: int = 0
    revenue_gross: Decimal = ZERO     # Σ debits of POS SALE_REVENUE postings

    @field_validator("counted_postings", "counted_pos_transactions", mode="before")
    @classmethod
    def _marks_of_an_older_ledger(cls, marks: object) -> object:
        # Ledgers written before the marks were kept end to end held them as {"mark": 0, ...}.
        return "".join(marks) if isinstance(marks, dict) else marks

    @model_validator(mode="after")
    def _counters_of_an_older_ledger(self) -> DayLedger:
        # Ledgers written before the counters were kept: the marks they hold are all it added.
        self.postings_marked = max(self.postings_marked, len(self.counted_postings) // MARK_CHARS)
        self.pos_transactions_marked = max(self.pos_transactions_marked,
                                           len(self.counted_pos_transactions) // MARK_CHARS)
        return self


class DayStatus(BaseModel):
    """Where a day stands in its close: the part of its DayLedger that the close timers read every
    second (agents/finance.py), ~200 bytes where the ledger is up to ~140 KB (SPEC §4: the timers'
    work grows with the store-days held, not with what each day sold)."""

    location_id: str
    business_date: date
    closed: bool = False
    closed_at: datetime | None = None
    close_requested_at: datetime | None = None
    late_since: datetime | None = None


Day = DayLedger | DayStatus   # the close rules below read only the fields both have


def status_of(ledger: DayLedger | None) -> DayStatus | None:
    if ledger is None:
        return None
    return DayStatus(location_id=ledger.location_id, business_date=ledger.business_date, closed=ledger.closed,
                     closed_at=ledger.closed_at, close_requested_at=ledger.close_requested_at,
                     late_since=ledger.late_since)


def open_day(legal_entity: str, location_id: str, business_date: date, currency: str = "USD") -> DayLedger:
    return DayLedger(legal_entity=legal_entity, location_id=location_id, business_date=business_date,
                     currency=currency)


def batch_id(ledger: DayLedger, sequence: int) -> str:
    return f"{day_batch_key(ledger.legal_entity, ledger.location_id, ledger.business_date)}#{sequence}"


def add_posting(ledger: DayLedger, posting: Posting) -> DayLedger:
    """Count a posting into its day; after the day closed it waits for the next late batch
    (`close_late`), so a stream of late postings makes a late batch per window, not one per posting."""
    mark = mark_of(posting.posting_id)
    if marks_contain(ledger.counted_postings, mark):
        return ledger
    _require_same_day(ledger, posting)
    update = _controls_with(ledger, posting)
    update["counted_postings"] = with_mark(ledger.counted_postings, mark, COUNTED_KEEP)
    update["postings_marked"] = ledger.postings_marked + 1
    update["totals"] = _add_to_totals(ledger.totals, posting)
    if len(ledger.posting_ids) < LISTED_POSTING_IDS:
        update["posting_ids"] = [*ledger.posting_ids, posting.posting_id]
    update["posting_count"] = ledger.posting_count + 1
    update["posting_digest"] = posting_digest_of([posting.posting_id], ledger.posting_digest)
    if ledger.closed and ledger.late_since is None:
        update["late_since"] = posting.created_at
    return ledger.model_copy(update=update)


def close_after_grace_due(day: Day, now: datetime, grace: float) -> bool:
    """A store's day closes `grace` seconds after its DAY_CLOSE: movements of the day may still be on
    their way through other partitions, and late ones still land in the day batch."""
    return (not day.closed and day.close_requested_at is not None
            and now >= day.close_requested_at + timedelta(seconds=grace))


def late_batch_due(day: Day, now: datetime, wait: float) -> bool:
    """Late postings of a closed day go out together `wait` seconds after the first of them."""
    return day.closed and day.late_since is not None and now >= day.late_since + timedelta(seconds=wait)


def close_late(ledger: DayLedger, closed_at: datetime) -> tuple[DayLedger, JournalBatch | None]:
    """The late batch of what arrived since the day (or its last late batch) went out; nothing if
    nothing is waiting (a re-sent request)."""
    if not ledger.closed or not ledger.posting_count:
        return ledger, None
    batch = _batch(ledger, ledger.sequence, ledger.totals, ledger.posting_ids, ledger.posting_count,
                   ledger.posting_digest, late=True, closed_at=closed_at)
    return ledger.model_copy(update={**_EMPTY, "sequence": ledger.sequence + 1, "late_since": None}), batch


_EMPTY = {"totals": {}, "posting_ids": [], "posting_count": 0, "posting_digest": ""}


def posting_digest_of(posting_ids: list[str], digest: str = "") -> str:
    """An order-free digest of a set of posting ids (XOR of their SHA-256): a batch that cannot list
    every id it covers still lets a consumer check the postings it holds for that day add up to it."""
    value = int(digest, 16) if digest else 0
    for posting_id in posting_ids:
        value ^= int.from_bytes(hashlib.sha256(posting_id.encode()).digest(), "big")
    return f"{value:064x}"


def add_pos_totals(ledger: DayLedger, units: int, gross: Decimal, transaction_id: str) -> DayLedger:
    """What the POS says one transaction sold: the other side of the day's control totals."""
    mark = mark_of(transaction_id)
    if marks_contain(ledger.counted_pos_transactions, mark):
        return ledger
    return ledger.model_copy(update={
        "counted_pos_transactions": with_mark(ledger.counted_pos_transactions, mark, COUNTED_KEEP),
        "pos_transactions_marked": ledger.pos_transactions_marked + 1,
        "pos_units_sold": ledger.pos_units_sold + units,
        "pos_gross": ledger.pos_gross + to_amount(gross),
    })


def close_day(ledger: DayLedger, closed_at: datetime) -> tuple[DayLedger, JournalBatch | None]:
    """The day batch; closing a day twice (a re-sent DAY_CLOSE) emits nothing."""
    if ledger.closed:
        return ledger, None
    batch = _batch(ledger, ledger.sequence, ledger.totals, ledger.posting_ids, ledger.posting_count,
                   ledger.posting_digest, late=False, closed_at=closed_at)
    closed = ledger.model_copy(update={**_EMPTY, "closed": True, "closed_at": closed_at,
                                       "sequence": ledger.sequence + 1})
    return closed, batch


def end_of_business_date(business_date: date, timezone: str) -> datetime:
    """Midnight after `business_date` in the location's time zone (an aware datetime)."""
    return datetime.combine(business_date + timedelta(days=1), time(0), tzinfo=ZoneInfo(timezone))


def due_to_close_by_clock(day: Day, timezone: str, now: datetime, close_after: float) -> bool:
    """A day of a location without a POS (SPEC §5.3) closes `close_after` seconds after its business
    date ended in the location's time zone; a closed day, or one whose close is on its way, is not due."""
    if day.closed or day.close_requested_at is not None:
        return False
    return now >= end_of_business_date(day.business_date, timezone) + timedelta(seconds=close_after)


def due_to_forget(day: Day, now: datetime, retention: float) -> bool:
    """A closed day is forgotten from state `retention` seconds after it closed; its batches stay on
    finance.journal_batches. A posting of that day arriving later finds no ledger: see reopen_day."""
    return (day.closed and day.late_since is None and day.closed_at is not None
            and now >= day.closed_at + timedelta(seconds=retention))


def reopen_day(legal_entity: str, location_id: str, business_date: date, currency: str, now: datetime,
               retention: float) -> DayLedger:
    """The ledger for a posting whose day has no ledger: a fresh open day, unless the day is so old
    (ended more than `retention` ago) that it was closed and forgotten. Then it reopens closed, its
    batch sequence taken from the clock (seconds since the epoch): its postings go out in late
    batches whose ids cannot collide with the ones batched before it was forgotten (the ERP would
    take a repeated id for a duplicate and book nothing)."""
    ledger = open_day(legal_entity, location_id, business_date, currency)
    if now < end_of_business_date(business_date, "UTC") + timedelta(seconds=retention):
        return ledger
    return ledger.model_copy(update={"closed": True, "closed_at": now, "sequence": int(now.timestamp())})


def controls(ledger: DayLedger) -> dict[str, str]:
    return {
        "pos_units_sold": str(ledger.pos_units_sold),
        "cogs_units": str(ledger.cogs_units),
        "units_difference": str(ledger.pos_units_sold - ledger.cogs_units),
        "pos_gross": str(to_amount(ledger.pos_gross)),
        "revenue_gross": str(to_amount(ledger.revenue_gross)),
        "gross_difference": str(to_amount(ledger.pos_gross - ledger.revenue_gross)),
    }


def _batch(ledger: DayLedger, sequence: int, totals: Totals, posting_ids: list[str], posting_count: int,
           posting_digest: str, *, late: bool, closed_at: datetime) -> JournalBatch:
    return JournalBatch(
        batch_id=batch_id(ledger, sequence), legal_entity=ledger.legal_entity, location_id=ledger.location_id,
        business_date=ledger.business_date, currency=ledger.currency, late=late, sequence=sequence,
        totals={account: dict(totals[account]) for account in sorted(totals)}, posting_ids=list(posting_ids),
        posting_count=posting_count, posting_digest=posting_digest,
        control=controls(ledger), closed_at=closed_at,
    )


def _add_to_totals(totals: Totals, posting: Posting) -> Totals:
    updated = dict(totals)
    for line in posting.lines:
        before = updated.get(line.account, {"debit": ZERO, "credit": ZERO})
        updated[line.account] = {"debit": before["debit"] + line.debit,
                                 "credit": before["credit"] + line.credit}
    return updated


def _controls_with(ledger: DayLedger, posting: Posting) -> dict[str, object]:
    if posting.source_system != SourceSystem.POS.value:
        return {}
    if posting.kind is PostingKind.COGS:
        return {"cogs_units": ledger.cogs_units + (posting.lines[0].quantity or 0)}
    if posting.kind is PostingKind.SALE_REVENUE:
        return {"revenue_gross": ledger.revenue_gross + sum((line.debit for line in posting.lines), ZERO)}
    return {}


def _require_same_day(ledger: DayLedger, posting: Posting) -> None:
    if (posting.legal_entity, posting.location_id, posting.business_date) != (
            ledger.legal_entity, ledger.location_id, ledger.business_date):
        raise ValueError(f"posting {posting.posting_id} of {posting.legal_entity}:{posting.location_id}:"
                         f"{posting.business_date} does not belong to day batch "
                         f"{day_batch_key(ledger.legal_entity, ledger.location_id, ledger.business_date)}")
