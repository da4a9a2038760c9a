"""What each applied movement posts (SPEC §5.2), with the exact entries, and the POS tender check."""
from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.domain.accounts import Account, ChartOfAccounts, Charts, parse_chart_overrides
from app.domain.postings import PostingResult, check_tenders, posting_id, postings_for
from app.models.canonical import Applied, Channel, MovementType, Role, SourceSystem
from app.models.finance_ledger import AppliedTrace, LedgerEntry
from app.models.raw import PosTransaction
from app.models.records import FinanceExceptionCode, Posting, PostingKind
from tests.factories import make_applied, make_location, make_movement

NOW = datetime(2026, 11, 27, 10, 15, 4, tzinfo=timezone.utc)
DEFAULT = Charts()


def post(applied: Applied, charts: Charts = DEFAULT, location=None) -> PostingResult:
    return postings_for(applied, location or make_location(), charts, NOW)


def entries(result: PostingResult) -> dict[PostingKind, list[tuple[str, str, str]]]:
    """kind -> [(account, debit, credit)], the way an accountant reads a journal."""
    return {p.kind: [(ln.account, str(ln.debit), str(ln.credit)) for ln in p.lines] for p in result.postings}


def codes(result: PostingResult) -> list[FinanceExceptionCode]:
    return [e.reason_code for e in result.exceptions]


# --- Sales and returns ---------------------------------------------------------------------------

def test_store_sale_posts_revenue_to_tender_clearing_and_cogs_at_average():
    result = post(make_applied(make_movement(quantity=2, unit_price=Decimal("19.99"), tax=Decimal("3.20")),
                               unit_cost=Decimal("7.10")))
    assert entries(result) == {
        PostingKind.SALE_REVENUE: [("1000", "43.18", "0.00"), ("4000", "0.00", "39.98"),
                                   ("2100", "0.00", "3.20")],
        PostingKind.COGS: [("5000", "14.20", "0.00"), ("1200", "0.00", "14.20")],
    }
    assert result.exceptions == []


@pytest.mark.parametrize("channel", [Channel.WEB, Channel.MARKETPLACE])
def test_web_and_marketplace_fulfilment_posts_revenue_to_channel_receivable(channel):
    movement = make_movement(movement_type=MovementType.FULFIL, channel=channel,
                             source_system=SourceSystem.ECOM, quantity=1, unit_price=Decimal("21.99"),
                             tax=Decimal("1.76"))
    assert entries(post(make_applied(movement, unit_cost=Decimal("7.0000")))) == {
        PostingKind.SALE_REVENUE: [("1100", "23.75", "0.00"), ("4000", "0.00", "21.99"),
                                   ("2100", "0.00", "1.76")],
        PostingKind.COGS: [("5000", "7.00", "0.00"), ("1200", "0.00", "7.00")],
    }


def test_line_discount_reduces_net_revenue_and_what_the_tender_clears():
    movement = make_movement(quantity=3, unit_price=Decimal("10.00"), discount=Decimal("5.00"),
                             tax=Decimal("2.00"))
    assert entries(post(make_applied(movement)))[PostingKind.SALE_REVENUE] == [
        ("1000", "27.00", "0.00"), ("4000", "0.00", "25.00"), ("2100", "0.00", "2.00")]


def test_gross_is_derived_from_rounded_net_and_tax_so_the_entry_balances():
    # 3 x 1.005 = 3.015 rounds half-up to 3.02; tax 0.125 to 0.13; gross is their sum, not round(3.14).
    movement = make_movement(quantity=3, unit_price=Decimal("1.005"), tax=Decimal("0.125"))
    assert entries(post(make_applied(movement)))[PostingKind.SALE_REVENUE] == [
        ("1000", "3.15", "0.00"), ("4000", "0.00", "3.02"), ("2100", "0.00", "0.13")]


def test_cogs_is_rounded_half_up_to_the_cent():
    result = post(make_applied(make_movement(quantity=3), unit_cost=Decimal("0.3350")))
    assert entries(result)[PostingKind.COGS] == [("5000", "1.01", "0.00"), ("1200", "0.00", "1.01")]


def test_store_return_debits_returns_and_tax_credits_tender_clearing_and_restocks_at_cost():
    movement = make_movement(movement_type=MovementType.RETURN, quantity=1, unit_price=Decimal("19.99"),
                             tax=Decimal("1.60"), original_transaction_id="S042-R3-000100")
    assert entries(post(make_applied(movement, unit_cost=Decimal("6.50")))) == {
        PostingKind.RETURN_REVENUE: [("1000", "0.00", "21.59"), ("4100", "19.99", "0.00"),
                                     ("2100", "1.60", "0.00")],
        PostingKind.RETURN_COGS: [("1200", "6.50", "0.00"), ("5000", "0.00", "6.50")],
    }


def test_sale_with_revenue_on_hold_posts_only_cogs_and_raises_nothing_more():
    result = post(make_applied(make_movement(revenue_on_hold=True)))
    assert list(entries(result)) == [PostingKind.COGS]
    assert result.exceptions == []


def test_sale_without_price_posts_cogs_and_reports_missing_price():
    result = post(make_applied(make_movement(unit_price=None)))
    assert list(entries(result)) == [PostingKind.COGS]
    assert codes(result) == [FinanceExceptionCode.MISSING_PRICE]


# --- Stock in and out ----------------------------------------------------------------------------

def test_receipt_debits_inventory_and_credits_grni_at_receipt_cost():
    # Two cases of 12 at 7.10 a case: the mapper hands over the cost per each, 7.10 / 12.
    movement = make_movement(movement_type=MovementType.RECEIPT, source_system=SourceSystem.WMS, quantity=24,
                             unit_price=None, channel=Channel.INTERNAL)
    result = post(make_applied(movement, unit_cost=Decimal("7.10") / 12))
    assert entries(result) == {PostingKind.RECEIPT: [("1200", "14.20", "0.00"), ("2000", "0.00", "14.20")]}


def test_transfer_out_at_origin_moves_value_to_in_transit():
    movement = make_movement(movement_type=MovementType.TRANSFER_OUT, role=Role.ORIGIN, location_id="DC01",
                             source_system=SourceSystem.WMS, quantity=5, counterparty_location="S042")
    result = post(make_applied(movement, unit_cost=Decimal("7.1234")),
                  location=make_location(location_id="DC01"))
    assert entries(result) == {
        PostingKind.TRANSFER_OUT: [("1210", "35.62", "0.00"), ("1200", "0.00", "35.62")]}


def test_transfer_out_destination_leg_only_raises_in_transit_and_posts_nothing():
    movement = make_movement(movement_type=MovementType.TRANSFER_OUT, role=Role.DESTINATION,
                             source_system=SourceSystem.WMS, quantity=5)
    assert post(make_applied(movement, on_hand_delta=0)) == PostingResult()


def test_transfer_in_moves_value_from_in_transit_to_inventory_at_the_carried_cost():
    movement = make_movement(movement_type=MovementType.TRANSFER_IN, source_system=SourceSystem.WMS,
                             quantity=5)
    result = post(make_applied(movement, unit_cost=Decimal("7.1234")))
    assert entries(result) == {
        PostingKind.TRANSFER_IN: [("1200", "35.62", "0.00"), ("1210", "0.00", "35.62")]}


# --- Adjustments, counts, dispositions -----------------------------------------------------------

def adjustment(reason: str, quantity: int = 2, **applied):
    movement = make_movement(movement_type=MovementType.ADJUST, source_system=SourceSystem.WMS, reason=reason,
                             quantity=quantity, unit_price=None, channel=Channel.INTERNAL)
    return make_applied(movement, **applied)


def test_shrink_adjustment_writes_off_at_average():
    assert entries(post(adjustment("SHRINK"))) == {
        PostingKind.SHRINK: [("5100", "14.20", "0.00"), ("1200", "0.00", "14.20")]}


def test_found_adjustment_posts_shrink_in_reverse():
    assert entries(post(adjustment("FOUND"))) == {
        PostingKind.SHRINK: [("1200", "14.20", "0.00"), ("5100", "0.00", "14.20")]}


def test_damaged_adjustment_keeps_units_on_the_books_and_posts_nothing():
    assert post(adjustment("DAMAGED", on_hand_delta=0)) == PostingResult()


def counted(difference: int, **applied):
    movement = make_movement(movement_type=MovementType.COUNT, source_system=SourceSystem.WMS, quantity=10,
                             unit_price=None, channel=Channel.INTERNAL)
    return make_applied(movement, count_difference=difference, on_hand_delta=difference, **applied)


def test_count_loss_posts_variance_from_inventory_to_shrink_at_average():
    assert entries(post(counted(-3))) == {
        PostingKind.COUNT_VARIANCE: [("5100", "21.30", "0.00"), ("1200", "0.00", "21.30")]}


def test_count_gain_posts_variance_from_shrink_to_inventory():
    assert entries(post(counted(4))) == {
        PostingKind.COUNT_VARIANCE: [("1200", "28.40", "0.00"), ("5100", "0.00", "28.40")]}


def test_count_that_matches_the_books_posts_nothing():
    assert post(counted(0)) == PostingResult()


def disposition(reason: str, **applied):
    movement = make_movement(movement_type=MovementType.DISPOSITION, source_system=SourceSystem.INSPECTIONS,
                             reason=reason, quantity=1, unit_price=None, channel=Channel.INTERNAL)
    return make_applied(movement, **applied)


def test_scrapped_return_is_written_off_at_average():
    assert entries(post(disposition("SCRAP"))) == {
        PostingKind.WRITE_OFF: [("5100", "7.10", "0.00"), ("1200", "0.00", "7.10")]}


@pytest.mark.parametrize("reason", ["RESTOCK", "DAMAGED"])
def test_restocked_or_damaged_return_posts_nothing(reason):
    assert post(disposition(reason)) == PostingResult()


@pytest.mark.parametrize("movement_type", [MovementType.RESERVE, MovementType.RELEASE])
def test_reservations_post_nothing_even_without_a_legal_entity(movement_type):
    applied = make_applied(make_movement(movement_type=movement_type, source_system=SourceSystem.ECOM),
                           legal_entity=None)
    assert postings_for(applied, None, DEFAULT, NOW) == PostingResult()


# --- Late movements against a count --------------------------------------------------------------

def test_late_sale_before_a_count_posts_cogs_and_reverses_the_counts_loss():
    result = post(make_applied(make_movement(quantity=2), on_hand_delta=0, late_quantity=-2))
    assert entries(result)[PostingKind.COGS] == [("5000", "14.20", "0.00"), ("1200", "0.00", "14.20")]
    assert entries(result)[PostingKind.LATE_COUNT_REVERSAL] == [
        ("1200", "14.20", "0.00"), ("5100", "0.00", "14.20")]


def test_late_receipt_before_a_count_posts_the_receipt_and_reverses_the_counts_gain():
    movement = make_movement(movement_type=MovementType.RECEIPT, source_system=SourceSystem.WMS, quantity=3,
                             unit_price=None)
    result = post(make_applied(movement, on_hand_delta=0, late_quantity=3, unit_cost=Decimal("5.00")))
    assert entries(result) == {
        PostingKind.RECEIPT: [("1200", "15.00", "0.00"), ("2000", "0.00", "15.00")],
        PostingKind.LATE_COUNT_REVERSAL: [("5100", "15.00", "0.00"), ("1200", "0.00", "15.00")],
    }


def test_late_shrink_before_a_count_nets_to_nothing_on_inventory():
    result = post(adjustment("SHRINK", quantity=2, on_hand_delta=0, late_quantity=-2))
    assert set(entries(result)) == {PostingKind.SHRINK, PostingKind.LATE_COUNT_REVERSAL}
    assert inventory_net(result.postings) == Decimal("0.00")


def inventory_net(postings: list[Posting]) -> Decimal:
    return sum((ln.debit - ln.credit for p in postings for ln in p.lines if ln.account == "1200"),
               Decimal("0"))


# --- What cannot be posted -----------------------------------------------------------------------

def test_sale_without_cost_posts_revenue_and_reports_no_cost():
    result = post(make_applied(make_movement(), unit_cost=None))
    assert list(entries(result)) == [PostingKind.SALE_REVENUE]
    assert codes(result) == [FinanceExceptionCode.NO_COST]
    exception = result.exceptions[0]
    assert exception.movement_id == "pos:S042-R3-000123:1:line"
    assert exception.source_event_id == "S042-R3-000123"
    assert "COGS not posted" in exception.detail


def test_late_sale_without_cost_reports_one_no_cost_for_both_entries():
    result = post(make_applied(make_movement(), unit_cost=None, on_hand_delta=0, late_quantity=-2))
    assert codes(result) == [FinanceExceptionCode.NO_COST]
    assert "COGS, LATE_COUNT_REVERSAL" in result.exceptions[0].detail


def test_zero_cost_posts_no_empty_entry_and_no_exception():
    result = post(make_applied(make_movement(), unit_cost=Decimal("0.0000")))
    assert list(entries(result)) == [PostingKind.SALE_REVENUE]
    assert result.exceptions == []


def test_unknown_legal_entity_posts_nothing_and_says_so():
    result = postings_for(make_applied(make_movement(), legal_entity=None), None, DEFAULT, NOW)
    assert result.postings == []
    assert codes(result) == [FinanceExceptionCode.UNKNOWN_LEGAL_ENTITY]


def test_legal_entity_comes_from_the_location_master_when_the_position_stage_had_none():
    result = post(make_applied(make_movement(), legal_entity=None),
                  location=make_location(legal_entity="CA01"))
    assert {p.legal_entity for p in result.postings} == {"CA01"}


# --- The posting record --------------------------------------------------------------------------

def test_posting_carries_its_source_day_and_lines_with_sku_and_quantity():
    result = post(make_applied(make_movement()))
    cogs = next(p for p in result.postings if p.kind is PostingKind.COGS)
    assert (cogs.legal_entity, cogs.location_id, str(cogs.business_date), cogs.currency) == (
        "US01", "S042", "2026-11-27", "USD")
    assert (cogs.source_system, cogs.source_event_id, cogs.movement_id) == (
        "pos", "S042-R3-000123", "pos:S042-R3-000123:1:line")
    assert cogs.created_at == NOW
    assert {(ln.sku, ln.quantity) for ln in cogs.lines} == {("SKU-1001", 2)}


def test_posting_id_is_deterministic_per_movement_and_kind():
    first, again = post(make_applied(make_movement())), post(make_applied(make_movement()))
    assert [p.posting_id for p in first.postings] == [p.posting_id for p in again.postings]
    assert first.postings[1].posting_id == posting_id("pos:S042-R3-000123:1:line", PostingKind.COGS)
    assert len({p.posting_id for p in first.postings}) == 2


# --- Chart of accounts ---------------------------------------------------------------------------

def test_chart_override_applies_to_its_legal_entity_only():
    charts = parse_chart_overrides("CA01.COGS=5010, US01.INVENTORY=1250")
    canada = post(make_applied(make_movement(), legal_entity="CA01"), charts)
    us = post(make_applied(make_movement(), legal_entity="US01"), charts)
    assert entries(canada)[PostingKind.COGS] == [("5010", "14.20", "0.00"), ("1200", "0.00", "14.20")]
    assert entries(us)[PostingKind.COGS] == [("5000", "14.20", "0.00"), ("1250", "0.00", "14.20")]
    assert charts.for_entity("GB01") == ChartOfAccounts()


def test_wildcard_override_changes_the_default_chart_and_entities_refine_it():
    charts = parse_chart_overrides("*.COGS=5001,US01.inventory=1250")
    assert charts.for_entity("GB01").number(Account.COGS) == "5001"
    us = charts.for_entity("US01")
    assert (us.number(Account.COGS), us.number(Account.INVENTORY)) == ("5001", "1250")


def test_empty_overrides_give_the_default_chart():
    assert parse_chart_overrides("  ") == Charts()
    assert Charts().for_entity("US01").number(Account.TENDER_CLEARING) == "1000"


@pytest.mark.parametrize("text, message", [
    ("US01.INVENTORY", "must look like ENTITY.ROLE=NUMBER"),
    ("INVENTORY=1250", "must look like ENTITY.ROLE=NUMBER"),
    ("US01.STOCK=1250", "unknown account role 'STOCK'"),
    ("US01.INVENTORY=", "account number ''"),
    ("US01.INVENTORY=12 50", "account number '12 50'"),
    ("US01.INVENTORY=1250,US01.INVENTORY=1260", "given twice"),
    ("US01.INVENTORY=2000", "would share account number 2000"),
])
def test_bad_chart_overrides_are_refused_with_a_clear_message(text, message):
    with pytest.raises(ValueError, match=message):
        parse_chart_overrides(text)


# --- POS tenders ---------------------------------------------------------------------------------

def pos(kind: str, tenders: list[str], lines: list[dict] | None = None) -> PosTransaction:
    lines = lines or [{"line_no": 1, "sku": "SKU-1001", "quantity": 2, "unit_price": "19.99",
                       "discount": "0.00", "tax": "3.20"}]
    return PosTransaction.model_validate({
        "transaction_id": "S042-R3-000123", "store_id": "S042", "type": kind, "business_date": "2026-11-27",
        "occurred_at": "2026-11-27T10:15:03Z", "lines": lines,
        "tenders": [{"type": "CARD", "amount": amount} for amount in tenders]})


def test_sale_paid_exactly_passes_the_tender_check():
    assert check_tenders(pos("SALE", ["40.00", "3.18"])) is None


def test_sale_paid_short_is_a_tender_mismatch_naming_both_amounts():
    problem = check_tenders(pos("SALE", ["43.00"]))
    assert problem is not None
    assert problem.reason_code is FinanceExceptionCode.TENDER_MISMATCH
    assert "43.00" in problem.detail and "43.18" in problem.detail
    assert (problem.source_event_id, problem.location_id, problem.movement_id) == (
        "S042-R3-000123", "S042", None)


@pytest.mark.parametrize("refund", ["-43.18", "43.18"])
def test_return_refund_may_be_booked_with_either_sign(refund):
    assert check_tenders(pos("RETURN", [refund])) is None


def test_return_refund_of_the_wrong_amount_is_a_tender_mismatch():
    problem = check_tenders(pos("RETURN", ["-40.00"]))
    assert problem is not None and problem.reason_code is FinanceExceptionCode.TENDER_MISMATCH


def test_discounts_count_against_the_tenders():
    lines = [{"line_no": 1, "sku": "SKU-1001", "quantity": 3, "unit_price": "10.00", "discount": "5.00",
              "tax": "2.00"}]
    assert check_tenders(pos("SALE", ["27.00"], lines)) is None


def test_day_close_has_no_tenders_to_check():
    assert check_tenders(pos("DAY_CLOSE", [], [])) is None


# --- The ledger record between the position and finance stages ----------------------------------

_amounts = st.sampled_from([Decimal("0"), Decimal("0.00"), Decimal("0.0000"), Decimal("1.5"), Decimal("19.99")])


@settings(max_examples=200, deadline=None)
@given(movement_type=st.sampled_from(list(MovementType)), channel=st.sampled_from(list(Channel)),
       role=st.sampled_from(list(Role)), quantity=st.integers(0, 50), discount=_amounts, tax=_amounts,
       unit_price=st.one_of(st.none(), _amounts), unit_cost=st.one_of(st.none(), _amounts),
       cost_adjustment=_amounts, late_quantity=st.integers(-3, 3), count_difference=st.integers(-3, 3),
       revenue_on_hold=st.booleans(), reason=st.sampled_from([None, "SHRINK", "FOUND", "WRITE_OFF", "SCRAP"]),
       legal_entity=st.sampled_from([None, "US01"]), with_trace=st.booleans())
def test_a_ledger_record_without_its_defaults_reads_back_equal_and_posts_the_same(
        movement_type, channel, role, quantity, discount, tax, unit_price, unit_cost, cost_adjustment,
        late_quantity, count_difference, revenue_on_hold, reason, legal_entity, with_trace):
    movement = make_movement(movement_type=movement_type, channel=channel, role=role, quantity=quantity,
                             discount=discount, tax=tax, unit_price=unit_price, revenue_on_hold=revenue_on_hold,
                             reason=reason)
    applied = make_applied(movement, unit_cost=unit_cost, cost_adjustment=cost_adjustment,
                           late_quantity=late_quantity, count_difference=count_difference, legal_entity=legal_entity)
    trace = AppliedTrace(key="SKU-1001@S042", version=3, available=4, on_hand=5, at=NOW) if with_trace else None
    entry = LedgerEntry(applied=applied, applied_trace=trace)

    compact = entry.to_json()
    read = LedgerEntry.model_validate_json(compact)

    assert len(compact) < len(entry.model_dump_json())
    assert read == entry
    location = make_location()
    assert post(read.applied, location=location) == post(entry.applied, location=location)
