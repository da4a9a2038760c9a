"""A day ledger stored as a head and pages (app/domain/day_pages.py) reads back as the ledger that was
written, after any run of postings, POS transactions, closes, late batches and a forget, and the store
holds exactly the pages that ledger needs."""
from __future__ import annotations

from contextlib import contextmanager
from datetime import date, datetime, timezone
from decimal import Decimal
from unittest import mock

from hypothesis import example, given, settings
from hypothesis import strategies as st

import app.domain.day_batches as day_batches
import app.domain.day_pages as day_pages
from app.domain.day_batches import DayLedger, add_pos_totals, add_posting, close_day, close_late, open_day
from app.domain.day_pages import head_of, page_changes, page_names, pages_of, whole
from app.domain.marks import MARK_CHARS
from app.models.records import Posting, PostingKind, PostingLine, json_bytes

DAY = date(2026, 11, 27)
AT = datetime(2026, 11, 27, 10, 0, tzinfo=timezone.utc)


@contextmanager
def small_pages():
    """Pages of 3 marks and 2 ids, 7 marks kept and 5 ids listed: every edge within a few dozen steps."""
    with mock.patch.multiple(day_pages, MARKS_PER_PAGE=3, IDS_PER_PAGE=2), \
            mock.patch.multiple(day_batches, COUNTED_KEEP=7, LISTED_POSTING_IDS=5):
        yield


def posting(n: int) -> Posting:
    return Posting(posting_id=f"SALE_REVENUE-{n:032x}", kind=PostingKind.SALE_REVENUE, legal_entity="US01",
                   location_id="S1", business_date=DAY, currency="USD", source_system="POS",
                   source_event_id=f"E{n}", correlation_id=f"E{n}", movement_id=f"M{n}",
                   lines=[PostingLine(account="1100", debit=Decimal("2.00"), credit=Decimal("0")),
                          PostingLine(account="4000", debit=Decimal("0"), credit=Decimal("2.00"))],
                   created_at=AT)


class PagedStore:
    """One day's key in a table: its head's bytes, and its pages by name."""

    def __init__(self) -> None:
        self.head: bytes | None = None
        self.pages: dict[str, str] = {}
        self.stored_before_pages = False   # the head is a whole ledger written before pages existed

    def write(self, before: DayLedger | None, after: DayLedger | None) -> None:
        for name, text in page_changes(before, after, before_stored=not self.stored_before_pages).items():
            if text is None:
                self.pages.pop(name, None)
            else:
                self.pages[name] = text
        self.head = None if after is None else json_bytes(head_of(after))
        self.stored_before_pages = False

    def read(self) -> DayLedger | None:
        if self.head is None:
            return None
        ledger, missing = whole(DayLedger.model_validate_json(self.head), lambda names: [*map(self.pages.get, names)])
        assert missing == []
        return ledger


steps = st.lists(st.one_of(
    st.tuples(st.just("post"), st.integers(0, 40)),        # re-used numbers: re-delivered postings
    st.tuples(st.just("pos"), st.integers(0, 40)),
    st.tuples(st.sampled_from(["close", "late", "forget", "batch"]), st.just(0)),
), max_size=120)


@settings(max_examples=1000, deadline=None)
@given(steps, st.booleans())
# Forgotten and opened again in one batch, as many marks and ids, in another order.
@example([("post", 0), ("post", 1), ("post", 2), ("batch", 0), ("forget", 0), ("post", 1), ("post", 0),
          ("post", 2)], False)
@example([("pos", 0), ("pos", 1), ("pos", 2), ("batch", 0), ("forget", 0), ("pos", 1), ("pos", 0), ("pos", 2)],
         False)
# ... with the same last 7 marks at the same places, and other ids listed first.
@example([*[("post", n) for n in range(10)], ("batch", 0), ("forget", 0),
          *[("post", n) for n in (10, 11, 12, 3, 4, 5, 6, 7, 8, 9)]], False)
def test_a_day_stored_in_pages_reads_back_whole_and_the_store_holds_only_its_pages(steps, from_older_record):
    with small_pages():
        store = PagedStore()
        ledger: DayLedger | None = open_day("US01", "S1", DAY)
        if from_older_record:
            # A whole ledger as stored before pages (and their counters) existed.
            for n in range(100, 109):
                ledger = add_posting(ledger, posting(n))
            store.head = ledger.model_dump_json(exclude={"postings_marked", "pos_transactions_marked",
                                                         "paged"}).encode()
            store.stored_before_pages = True
            ledger = DayLedger.model_validate_json(store.head)   # its counters start at the marks it holds
        before = store.read()
        assert before == (ledger if from_older_record else None)   # a new day is not stored before its first batch
        for step, n in [*steps, ("batch", 0)]:
            if step == "batch":
                store.write(before, ledger)
                before = store.read()
                assert before == ledger
                assert set(store.pages) == set(() if ledger is None else pages_of(ledger))
                if ledger is not None:
                    head = DayLedger.model_validate_json(store.head)
                    assert sorted(page_names(head)) == sorted(store.pages)
                    assert len(head.counted_postings) < 3 * MARK_CHARS and len(head.posting_ids) < 2
                continue
            if ledger is None:
                ledger = open_day("US01", "S1", DAY)
            if step == "post":
                ledger = add_posting(ledger, posting(n))
            elif step == "pos":
                ledger = add_pos_totals(ledger, 1, Decimal("2.00"), f"T{n}")
            elif step == "close":
                ledger = close_day(ledger, AT)[0]
            elif step == "late":
                ledger = close_late(ledger, AT)[0]
            else:
                ledger = None


def test_a_busy_days_head_is_small_and_a_batch_writes_only_the_pages_that_filled():
    ledger = open_day("US01", "S1", DAY)
    for n in range(5_000):
        ledger = add_posting(ledger, posting(n))
    assert len(json_bytes(ledger)) > 90_000 and len(json_bytes(head_of(ledger))) < 2_000
    before = ledger
    for n in range(5_000, 5_014):   # a store's 14 postings in one finance batch
        ledger = add_posting(ledger, posting(n))
    assert page_changes(before, ledger) == {}   # no page filled; the forgotten marks' page still holds the rest
    assert len(json_bytes(head_of(ledger))) < 2_000 + 14 * MARK_CHARS
    before = ledger
    for n in range(5_014, 5_100):
        ledger = add_posting(ledger, posting(n))
    assert page_changes(before, ledger) == {"postings.50": ledger.counted_postings[-100 * MARK_CHARS:],
                                            "postings.10": None}   # the one that filled, the one forgotten
