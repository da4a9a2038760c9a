"""The ERP poster's pure parts: pacing, back-off, what a batch becomes, and never posting twice."""
from __future__ import annotations

import asyncio
import random
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest

from app.domain.erp_entries import batch_balances, differences, entry_description, entry_lines, add_ledger_line
from app.domain.throttle import TokenBucket, backoff_delay
from app.erp.client import ErpRejected, ErpUnavailable, FoundEntry, classify_error, decode, encode
from app.erp.posting import post_batch
from app.models.records import ErpStatus, JournalBatch

D = Decimal


def a_batch(totals=None, sequence=0) -> JournalBatch:
    totals = totals or {"1000": ("42.02", "0"), "4000": ("0", "38.98"), "2100": ("0", "3.04")}
    return JournalBatch(batch_id=f"US01:S1:2026-11-27#{sequence}", legal_entity="US01", location_id="S1",
                        business_date=date(2026, 11, 27), currency="USD", late=sequence > 0, sequence=sequence,
                        totals={a: {"debit": D(d), "credit": D(c)} for a, (d, c) in totals.items()},
                        posting_ids=["p1"], control={}, closed_at=datetime(2026, 11, 28, tzinfo=UTC))


# --- token bucket ---------------------------------------------------------------------------------

def test_the_bucket_spaces_calls_at_the_rate_and_never_exceeds_it():
    bucket = TokenBucket(rate=2.0)
    now, starts = 0.0, []
    for n in range(50):
        while (wait := bucket.take(now)) > 0:
            now += wait + (0.03 if n % 7 == 0 else 0.0)   # an event loop sometimes wakes the caller late
        starts.append(now)
    assert starts[0] == 0.0 and starts[-1] >= 24.5
    # In any one-second window, at most 2 calls (the burst is 1: calls at least 0.5 s apart), even
    # after a late wake-up: a token is taken when the call goes, not reserved ahead.
    assert all(b - a >= 0.5 - 1e-9 for a, b in zip(starts, starts[1:]))


def test_a_token_is_not_taken_while_the_caller_waits():
    bucket = TokenBucket(rate=1.0)
    assert bucket.take(0.0) == 0.0
    assert bucket.take(0.25) == pytest.approx(0.75)
    assert bucket.take(0.25) == pytest.approx(0.75)   # asking again takes nothing more
    assert bucket.take(1.0) == 0.0


def test_an_idle_bucket_refills_only_up_to_its_burst():
    bucket = TokenBucket(rate=5.0, burst=3)
    assert [bucket.take(100.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert bucket.take(100.0) == pytest.approx(0.2)
    assert bucket.take(1000.0) == 0.0   # a long pause refills to 3, not to 4500


def test_the_bucket_refuses_nonsense():
    with pytest.raises(ValueError):
        TokenBucket(rate=0)
    with pytest.raises(ValueError):
        TokenBucket(rate=1, burst=0.5)


def test_backoff_grows_exponentially_up_to_its_cap_with_jitter():
    rng = random.Random(7)
    for attempt in range(1, 12):
        bound = min(10.0, 0.5 * 2 ** (attempt - 1))
        delays = [backoff_delay(attempt, rng=rng) for _ in range(200)]
        assert all(0.25 <= d <= max(bound, 0.25) for d in delays)
        if bound >= 2:
            assert len({round(d, 3) for d in delays}) > 100   # jittered, not one value
    with pytest.raises(ValueError):
        backoff_delay(0)


# --- what a batch becomes --------------------------------------------------------------------------

def test_one_line_per_account_and_side_with_the_location_and_the_batch_id_as_description():
    batch = a_batch({"1200": ("150.00", "52.50"), "2000": ("0.00", "150.00"), "5000": ("22.50", "0"),
                     "5100": ("0", "0")})
    lines = entry_lines(batch)
    assert [(l.account, l.debit, l.credit) for l in lines] == [
        ("1200", D("150.00"), D("0")), ("1200", D("0"), D("52.50")), ("2000", D("0"), D("150.00")),
        ("5000", D("22.50"), D("0"))]
    assert {l.description for l in lines} == {"S1"}
    assert entry_description(batch) == batch.batch_id


def test_reconciliation_finds_what_the_ledger_lacks_and_counts_a_replayed_batch_once():
    day, late = a_batch(), a_batch({"1000": ("5.00", "0"), "4000": ("0", "5.00")}, sequence=1)
    pipeline = batch_balances([day, late, day])
    ledger = {}
    for line in entry_lines(day):
        add_ledger_line(ledger, day.business_date, "S1", line.account, line.debit, line.credit)
    found = differences(pipeline, ledger)
    assert [(d.account, d.pipeline_debit, d.erp_debit, d.pipeline_credit, d.erp_credit) for d in found] == [
        ("1000", D("47.02"), D("42.02"), D("0"), D("0")), ("4000", D("0"), D("0"), D("43.98"), D("38.98"))]
    for line in entry_lines(late):
        add_ledger_line(ledger, late.business_date, "S1", line.account, line.debit, line.credit)
    assert differences(pipeline, ledger) == []


# --- the JSON-RPC wire -----------------------------------------------------------------------------

def test_tryton_business_errors_reject_and_everything_else_is_retried():
    refused = classify_error(["UserError", ["The account is closed.", "Choose another", None]])
    assert isinstance(refused, ErpRejected) and str(refused) == "The account is closed. - Choose another"
    assert isinstance(classify_error(["UserWarning", ["key", "Sure?", ""]]), ErpRejected)
    assert isinstance(classify_error(["database is locked", "Traceback ..."]), ErpUnavailable)
    assert isinstance(classify_error(["ConcurrencyException", "changed meanwhile"]), ErpUnavailable)


def test_decimals_and_dates_travel_in_trytons_json_shapes():
    assert encode(D("12.30")) == {"__class__": "Decimal", "decimal": "12.30"}
    assert encode(date(2026, 11, 27)) == {"__class__": "date", "year": 2026, "month": 11, "day": 27}
    assert decode([{"debit": {"__class__": "Decimal", "decimal": "1.5"}}]) == [{"debit": D("1.5")}]
    with pytest.raises(TypeError):
        encode(1.5)   # money is never a float


# --- never twice -----------------------------------------------------------------------------------

class Ledger:
    """An in-memory ErpLedger with Tryton's behaviour that matters here: entries found by description,
    drafts until posted; `down` makes the next calls fail as a stopped server would."""

    def __init__(self) -> None:
        self.entries: dict[str, dict] = {}
        self.down = 0
        self.refuse: str | None = None
        self.calls: list[str] = []

    def _call(self, name: str) -> None:
        self.calls.append(name)
        if self.down:
            self.down -= 1
            raise ErpUnavailable("connection refused")

    async def lookup(self, legal_entity, batch_id):
        self._call("lookup")
        entry = self.entries.get(batch_id)
        return FoundEntry(entry["id"], entry["posted"]) if entry else None

    async def create(self, legal_entity, batch_id, day, lines):
        self._call("create")
        if self.refuse:
            raise ErpRejected(self.refuse)
        self.entries[batch_id] = {"id": str(len(self.entries) + 1), "posted": False, "lines": lines}
        return self.entries[batch_id]["id"]

    async def post(self, legal_entity, erp_reference):
        self._call("post")
        for entry in self.entries.values():
            if entry["id"] == erp_reference:
                entry["posted"] = True


def post(ledger: Ledger, batch: JournalBatch, slept: list[float] | None = None, **kwargs):
    async def sleep(seconds: float) -> None:
        (slept if slept is not None else []).append(seconds)
    return asyncio.run(post_batch(ledger, batch, sleep=sleep, rng=random.Random(1), **kwargs))


def test_a_new_batch_is_created_and_posted_and_a_second_delivery_is_a_duplicate():
    ledger, batch = Ledger(), a_batch()
    first = post(ledger, batch)
    assert (first.status, first.erp_reference, first.attempts) == (ErpStatus.POSTED, "1", 3)
    again = post(ledger, batch)
    assert (again.status, again.erp_reference) == (ErpStatus.DUPLICATE, "1")
    assert len(ledger.entries) == 1 and ledger.calls == ["lookup", "create", "post", "lookup"]


def test_a_draft_left_by_a_crash_after_create_is_posted_not_created_again():
    ledger, batch = Ledger(), a_batch()

    def crash(step: str) -> None:
        if step == "create":
            raise SystemExit("killed")   # the worker dies between the ERP's commit and the ack
    with pytest.raises(SystemExit):
        post(ledger, batch, after_step=crash)
    outcome = post(ledger, batch)
    assert outcome.status is ErpStatus.POSTED and len(ledger.entries) == 1
    assert ledger.entries[batch.batch_id]["posted"] is True


def test_an_outage_is_waited_out_with_growing_pauses_and_the_errors_are_reported():
    ledger, batch, slept, errors = Ledger(), a_batch(), [], []
    ledger.down = 5
    outcome = post(ledger, batch, slept, on_error=errors.append)
    assert outcome.status is ErpStatus.POSTED and len(ledger.entries) == 1
    assert len(slept) == 5 and len(errors) == 5 and outcome.errors == errors
    assert outcome.attempts == 5 + 3


def test_a_refusal_is_a_rejection_with_the_erps_message_and_no_entry():
    ledger, batch = Ledger(), a_batch()
    ledger.refuse = "The account 5100 is closed."
    outcome = post(ledger, batch)
    assert (outcome.status, outcome.erp_reference, outcome.message) == (
        ErpStatus.REJECTED, None, "The account 5100 is closed.")
    assert ledger.entries == {}


def test_an_empty_batch_books_nothing():
    ledger = Ledger()
    outcome = post(ledger, a_batch({"1000": ("0", "0")}))
    assert (outcome.status, outcome.erp_reference) == (ErpStatus.POSTED, None)
    assert ledger.calls == ["lookup"]
