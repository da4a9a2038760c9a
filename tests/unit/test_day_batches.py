"""Store day batches (SPEC §5.3): totals at day close, late batches, duplicates and control totals."""
from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from decimal import Decimal

import orjson
import pytest

from app.domain.accounts import Charts
from app.domain.day_batches import (
    DayLedger, add_pos_totals, add_posting, close_day, close_late, due_to_forget, late_batch_due, open_day,
)
from app.domain.marks import MARK_CHARS, marks_contain, with_mark
from app.domain.postings import postings_for
from app.models.canonical import Channel, MovementType, SourceSystem
from app.models.records import JournalBatch, Posting
from tests.factories import make_applied, make_location, make_movement

DAY = date(2026, 11, 27)
CLOSED_AT = datetime(2026, 11, 27, 22, 0, tzinfo=timezone.utc)
CREATED_AT = datetime(2026, 11, 27, 10, 15, 4, tzinfo=timezone.utc)


def store_day() -> DayLedger:
    return open_day("US01", "S042", DAY, "USD")


def sale_postings(line: str = "1", quantity: int = 2, **movement) -> list[Posting]:
    """A POS sale line at 19.99 + 1.60 tax per unit, costing 7.10 per unit."""
    m = make_movement(source_line=line, quantity=quantity, unit_price=Decimal("19.99"),
                      tax=Decimal("1.60") * quantity, **movement)
    applied = make_applied(m, unit_cost=Decimal("7.10"))
    return postings_for(applied, make_location(), Charts(), CREATED_AT).postings


def add_all(ledger: DayLedger, postings: list[Posting]) -> DayLedger:
    for posting in postings:
        ledger = add_posting(ledger, posting)
    return ledger


def balanced(batch: JournalBatch) -> bool:
    return (sum(t["debit"] for t in batch.totals.values()) == sum(t["credit"] for t in batch.totals.values()))


def test_day_close_emits_one_balanced_batch_with_totals_per_account_and_the_postings_it_covers():
    postings = sale_postings("1", 2) + sale_postings("2", 1)
    ledger, batch = close_day(add_all(store_day(), postings), CLOSED_AT)

    assert batch is not None
    assert (batch.batch_id, batch.late, batch.sequence, batch.closed_at) == (
        "US01:S042:2026-11-27#0", False, 0, CLOSED_AT)
    assert batch.totals == {
        "1000": {"debit": Decimal("64.77"), "credit": Decimal("0.00")},
        "1200": {"debit": Decimal("0.00"), "credit": Decimal("21.30")},
        "2100": {"debit": Decimal("0.00"), "credit": Decimal("4.80")},
        "4000": {"debit": Decimal("0.00"), "credit": Decimal("59.97")},
        "5000": {"debit": Decimal("21.30"), "credit": Decimal("0.00")},
    }
    assert balanced(batch)
    assert batch.posting_ids == [p.posting_id for p in postings]
    assert ledger.closed and ledger.totals == {} and ledger.posting_ids == []


def test_closing_a_closed_day_again_emits_nothing():
    ledger, _ = close_day(add_all(store_day(), sale_postings()), CLOSED_AT)
    again, batch = close_day(ledger, CLOSED_AT)
    assert batch is None and again == ledger


def test_a_day_with_no_postings_still_closes_with_its_controls():
    _, batch = close_day(add_pos_totals(store_day(), 0, Decimal("0"), "S042-R3-000001"), CLOSED_AT)
    assert batch is not None and batch.totals == {} and batch.posting_ids == []
    assert batch.control["units_difference"] == "0"


def test_postings_after_close_wait_together_for_one_late_batch_with_the_next_sequence():
    ledger, _ = close_day(add_all(store_day(), sale_postings("1")), CLOSED_AT)
    late_postings = sale_postings("9", 1)
    first_at = late_postings[0].created_at

    ledger = add_all(ledger, late_postings)
    assert ledger.late_since == first_at and ledger.posting_count == 2
    assert not late_batch_due(ledger, first_at + timedelta(seconds=59), 60)
    assert late_batch_due(ledger, first_at + timedelta(seconds=60), 60)

    ledger, late = close_late(ledger, first_at + timedelta(seconds=60))
    assert late is not None
    assert (late.late, late.sequence, late.batch_id) == (True, 1, "US01:S042:2026-11-27#1")
    assert late.posting_ids == [p.posting_id for p in late_postings] and balanced(late)
    assert (ledger.late_since, ledger.posting_count, ledger.sequence) == (None, 0, 2)
    # Asked again (a re-sent request): nothing waits, nothing goes out; the next late posting opens #2.
    assert close_late(ledger, CLOSED_AT)[1] is None
    ledger = add_all(ledger, sale_postings("10", 1)[:1])
    assert close_late(ledger, CLOSED_AT)[1].batch_id == "US01:S042:2026-11-27#2"


def test_an_open_day_has_no_late_batch_and_a_day_with_late_postings_is_not_forgotten():
    ledger = add_all(store_day(), sale_postings("1"))
    assert close_late(ledger, CLOSED_AT) == (ledger, None) and ledger.late_since is None
    closed, _ = close_day(ledger, CLOSED_AT)
    waiting = add_all(closed, sale_postings("2", 1))
    week = 7 * 86400.0
    assert due_to_forget(closed, CLOSED_AT + timedelta(days=8), week)
    assert not due_to_forget(waiting, CLOSED_AT + timedelta(days=8), week)


def test_redelivered_posting_is_counted_once_before_and_after_close():
    postings = sale_postings()
    ledger = add_all(store_day(), postings + postings)
    assert ledger.cogs_units == 2 and len(ledger.posting_ids) == 2

    ledger, batch = close_day(ledger, CLOSED_AT)
    ledger = add_all(ledger, postings)
    assert batch is not None and batch.totals["5000"]["debit"] == Decimal("14.20")
    assert (ledger.sequence, ledger.posting_count, ledger.late_since) == (1, 0, None)


def test_controls_compare_pos_units_and_gross_with_cogs_and_revenue_postings():
    ledger = add_all(store_day(), sale_postings("1", 2) + sale_postings("2", 1))
    ledger = add_pos_totals(ledger, 3, Decimal("64.77"), "S042-R3-000123")
    _, batch = close_day(ledger, CLOSED_AT)
    assert batch is not None
    assert batch.control == {"pos_units_sold": "3", "cogs_units": "3", "units_difference": "0",
                             "pos_gross": "64.77", "revenue_gross": "64.77", "gross_difference": "0.00"}


def test_controls_show_a_sale_whose_cost_was_never_posted():
    no_cogs = postings_for(make_applied(make_movement(), unit_cost=None), make_location(), Charts(),
                           CREATED_AT).postings
    ledger = add_pos_totals(add_all(store_day(), no_cogs), 2, Decimal("43.18"), "S042-R3-000123")
    _, batch = close_day(ledger, CLOSED_AT)
    assert batch is not None
    assert (batch.control["units_difference"], batch.control["gross_difference"]) == ("2", "0.00")


def test_pos_totals_resent_for_the_same_transaction_are_counted_once():
    ledger = store_day()
    for _ in range(2):
        ledger = add_pos_totals(ledger, 2, Decimal("43.18"), "S042-R3-000123")
    assert (ledger.pos_units_sold, ledger.pos_gross) == (2, Decimal("43.18"))


def test_web_orders_shipped_from_the_store_are_in_the_totals_but_not_the_pos_controls():
    web = sale_postings(movement_type=MovementType.FULFIL, channel=Channel.WEB,
                        source_system=SourceSystem.ECOM, source_event_id="evt-77")
    _, batch = close_day(add_all(store_day(), web), CLOSED_AT)
    assert batch is not None and "1100" in batch.totals
    assert (batch.control["cogs_units"], batch.control["revenue_gross"]) == ("0", "0.00")


def test_late_batch_reports_the_days_controls_as_they_stand_after_it():
    ledger = add_pos_totals(store_day(), 2, Decimal("43.18"), "S042-R3-000123")
    ledger, day_batch = close_day(ledger, CLOSED_AT)
    assert day_batch is not None and day_batch.control["units_difference"] == "2"
    _, late = close_late(add_all(ledger, sale_postings()), CLOSED_AT)
    assert late is not None and late.control["units_difference"] == "0"


def test_a_posting_of_another_store_or_day_is_refused():
    other = sale_postings(location_id="S043")[0]
    with pytest.raises(ValueError, match="does not belong to day batch US01:S042:2026-11-27"):
        add_posting(store_day(), other)


def test_ledger_survives_a_round_trip_through_json_as_a_table_value():
    ledger = add_pos_totals(add_all(store_day(), sale_postings()), 2, Decimal("43.18"), "S042-R3-000123")
    assert DayLedger.model_validate_json(ledger.model_dump_json()) == ledger


def test_a_mark_is_found_only_where_a_mark_begins_and_the_oldest_go_beyond_the_bound():
    first, second = "x" * 11 + "y", "z" * 12
    marks = with_mark(with_mark("", first, keep=3), second, keep=3)
    assert marks_contain(marks, first) and marks_contain(marks, second)
    assert not marks_contain(marks, "y" + "z" * 11)   # the end of one and the start of the next
    third, fourth = "a" * 12, "b" * 12
    marks = with_mark(with_mark(marks, third, keep=3), fourth, keep=3)
    assert marks == second + third + fourth and not marks_contain(marks, first)


def test_a_ledger_written_with_marks_as_a_dict_still_knows_what_it_counted():
    postings = sale_postings("1", 2)
    counted = add_all(store_day(), postings)
    older = counted.model_dump()
    for field in ("counted_postings", "counted_pos_transactions"):
        marks = older[field]
        older[field] = {marks[i:i + MARK_CHARS]: 0 for i in range(0, len(marks), MARK_CHARS)}
    read_back = DayLedger.model_validate_json(orjson.dumps(older, default=str))
    assert read_back == counted
    assert add_all(read_back, postings) is read_back   # re-delivered: nothing counted twice
