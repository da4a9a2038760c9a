"""Issue 15: damaged stock leaves the books, floored buckets, transfers close, negative-stock
revaluation, currency mismatches (SPEC §3, §5.1, §5.2). Every expectation is computed by hand."""
from __future__ import annotations

from decimal import Decimal

from app.domain.availability import availability_record
from app.domain.postings import postings_for
from app.models.canonical import InTransitTransfer, MovementType, Role, SourceSystem
from app.models.records import FinanceExceptionCode, PostingKind
from tests.factories import make_location, make_movement
from tests.unit.test_positions import (
    CTX, T0, adjust, applied, disposition, fulfil, position, receipt, ret, run, sale, transfer_in, transfer_out, wms,
)
from tests.unit.test_postings import DEFAULT, NOW, codes, entries


def books(outcome):
    return postings_for(outcome.applied, make_location(), DEFAULT, NOW)


def close(event: str = "close-T1", **kw):
    return wms(MovementType.TRANSFER_CLOSE, 0, event, **{"transfer_id": "T1", **kw})


# --- 1. Damaged stock leaves the books ------------------------------------------------------------

def test_write_off_takes_damaged_units_off_on_hand_and_posts_write_off_at_average():
    p = position(on_hand=10, damaged=3, avg_cost=Decimal("7.10"))
    outcome = applied(p, adjust(2, "WRITE_OFF"))
    assert (outcome.position.on_hand, outcome.position.damaged, outcome.position.available) == (8, 1, 7)
    assert outcome.applied.unmatched_quantity == 0
    # 2 x 7.10 = 14.20, like a SCRAP disposition
    assert entries(books(outcome)) == {PostingKind.WRITE_OFF: [("5100", "14.20", "0.00"), ("1200", "0.00", "14.20")]}


def test_repaired_units_become_sellable_again_and_post_nothing():
    p = position(on_hand=10, damaged=3, avg_cost=Decimal("7.10"))
    outcome = applied(p, adjust(2, "REPAIRED"))
    assert (outcome.position.on_hand, outcome.position.damaged, outcome.position.available) == (10, 1, 9)
    assert books(outcome).postings == [] and books(outcome).exceptions == []


# --- 2. quality_control and damaged never go below 0 ----------------------------------------------

def test_write_off_of_more_than_is_damaged_empties_damaged_and_flags_the_excess():
    p = position(on_hand=10, damaged=1, avg_cost=Decimal("5.00"))
    outcome = applied(p, adjust(3, "WRITE_OFF"))
    # damaged takes the 1 it has; the 3 units physically left, so on_hand −3; 2 flagged
    assert (outcome.position.on_hand, outcome.position.damaged) == (7, 0)
    assert outcome.applied.unmatched_quantity == 2
    assert entries(books(outcome)) == {PostingKind.WRITE_OFF: [("5100", "15.00", "0.00"), ("1200", "0.00", "15.00")]}
    record = availability_record(outcome.as_emitted, outcome.previous_available, outcome.applied.movement, NOW,
                                 outcome.applied.unmatched_quantity)
    assert record.unmatched_quantity == 2 and record.damaged == 0


def test_repair_of_more_than_is_damaged_takes_what_is_there():
    outcome = applied(position(on_hand=4, damaged=1), adjust(5, "REPAIRED"))
    assert (outcome.position.on_hand, outcome.position.damaged, outcome.applied.unmatched_quantity) == (4, 0, 4)


def test_disposition_beyond_quality_control_floors_it_at_zero():
    outcome = applied(position(on_hand=6, quality_control=2), disposition(5, "RESTOCK"))
    assert (outcome.position.quality_control, outcome.applied.unmatched_quantity) == (0, 3)
    scrap = applied(position(on_hand=6, quality_control=2, avg_cost=Decimal("1.00")), disposition(3, "SCRAP"))
    assert (scrap.position.quality_control, scrap.position.on_hand, scrap.applied.unmatched_quantity) == (0, 3, 1)


def test_fulfil_without_reservation_is_flagged_on_the_availability_record():
    outcome = applied(position(on_hand=5), fulfil(2, "ORD-9", "1"))
    record = availability_record(outcome.as_emitted, outcome.previous_available, outcome.applied.movement, NOW,
                                 outcome.applied.unmatched_quantity)
    assert (record.on_hand, record.unmatched_quantity) == (3, 2)


# --- 8. Transfers close ---------------------------------------------------------------------------

def test_close_writes_off_what_is_still_in_transit_at_the_carried_cost():
    p = position(in_transit=5, transfers={"T1": InTransitTransfer(quantity=5, unit_cost=Decimal("4.25"))})
    p, outcomes = run(p, transfer_in(3), close())
    assert (p.in_transit, p.on_hand, p.transfers) == (0, 3, {})
    lost = outcomes[1]
    assert lost.applied.lost_in_transit == 2
    # 2 x 4.25 = 8.50 lost in transit
    assert entries(books(lost)) == {
        PostingKind.LOST_IN_TRANSIT: [("5100", "8.50", "0.00"), ("1210", "0.00", "8.50")]}


def test_close_of_a_fully_received_transfer_loses_nothing_and_of_an_unknown_one_is_flagged():
    p = position(on_hand=2, in_transit=3, transfers={"T2": InTransitTransfer(quantity=3, unit_cost=Decimal("1"))})
    outcome = applied(p, close())       # T1 is not in transit here
    assert outcome.position.in_transit == 3 and outcome.applied.lost_in_transit == 0
    assert books(outcome).postings == []
    assert outcome.position.transfers == {"T2": InTransitTransfer(quantity=3, unit_cost=Decimal("1"))}


def test_destination_leg_then_close_leaves_the_transfer_forgotten():
    leg = transfer_out(4).model_copy(update={
        "role": Role.DESTINATION, "location_id": "S042", "counterparty_location": "DC01",
        "unit_cost": Decimal("2.00"), "movement_id": "wms:ship-T1:1:destination"})
    p, outcomes = run(position(), leg, close())
    assert (p.in_transit, p.transfers, outcomes[1].applied.lost_in_transit) == (0, {}, 4)


# --- 4. Negative stock is revalued when it comes back (SPEC §5.1) --------------------------------

def test_receipt_covering_negative_stock_posts_the_cost_difference():
    # 3 sold at 7.10 with nothing on hand: Cr 1200 21.30, on_hand −3.
    p, outcomes = run(position(on_hand=0, avg_cost=Decimal("7.10")), sale(3), receipt(5, "8.00"))
    assert (p.on_hand, p.avg_cost) == (2, Decimal("8.0000"))
    inflow = outcomes[1].applied
    assert (inflow.revalued_quantity, inflow.cost_adjustment) == (3, Decimal("2.70"))  # 3 x (8.00 − 7.10)
    result = entries(books(outcomes[1]))
    assert result[PostingKind.RECEIPT] == [("1200", "40.00", "0.00"), ("2000", "0.00", "40.00")]
    assert result[PostingKind.COST_ADJUSTMENT] == [("5000", "2.70", "0.00"), ("1200", "0.00", "2.70")]
    # 1200: −21.30 + 40.00 − 2.70 = 16.00 == 2 x 8.00
    assert Decimal("-21.30") + Decimal("40.00") - Decimal("2.70") == p.on_hand * p.avg_cost


def test_cheaper_inflow_covering_negative_stock_reverses_the_adjustment():
    p, outcomes = run(position(on_hand=-2, avg_cost=Decimal("5.00")), receipt(1, "4.00"))
    assert p.on_hand == -1
    # 1 unit covered, but the unit still negative is held at the new average 4.00 too:
    # 2 x (4.00 − 5.00) = −2.00, Dr 1200 / Cr 5000. 1200: −10.00 + 4.00 + 2.00 = −4.00 == −1 x 4.00
    assert entries(books(outcomes[0]))[PostingKind.COST_ADJUSTMENT] == [("5000", "0.00", "2.00"),
                                                                        ("1200", "2.00", "0.00")]
    assert Decimal("-10.00") + Decimal("4.00") + Decimal("2.00") == p.on_hand * p.avg_cost


def test_inflow_at_the_same_cost_or_onto_positive_stock_posts_no_adjustment():
    _, same = run(position(on_hand=-2, avg_cost=Decimal("5.00")), receipt(4, "5.00"))
    _, positive = run(position(on_hand=2, avg_cost=Decimal("5.00")), receipt(4, "6.00"))
    assert PostingKind.COST_ADJUSTMENT not in entries(books(same[0]))
    assert PostingKind.COST_ADJUSTMENT not in entries(books(positive[0]))


def test_return_onto_negative_stock_at_the_sale_cost_revalues_too():
    ctx = CTX.__class__(**{**CTX.__dict__, "original_sale_cost": Decimal("6.00")})
    p, outcomes = run(position(on_hand=-1, avg_cost=Decimal("7.00")), ret(1, original_transaction_id="S-1"), ctx=ctx)
    assert p.on_hand == 0
    assert outcomes[0].applied.cost_adjustment == Decimal("-1.00")


# --- 6. Currency ----------------------------------------------------------------------------------

def test_sale_in_another_currency_than_the_location_holds_revenue_and_posts_cogs():
    outcome = applied(position(on_hand=5, avg_cost=Decimal("7.10")),
                      sale(2, unit_price=Decimal("19.99"), tax=Decimal("3.20"), currency="EUR"))
    result = postings_for(outcome.applied, make_location(currency="USD"), DEFAULT, NOW)
    assert codes(result) == [FinanceExceptionCode.CURRENCY_MISMATCH]
    assert entries(result) == {PostingKind.COGS: [("5000", "14.20", "0.00"), ("1200", "0.00", "14.20")]}
    assert {p.currency for p in result.postings} == {"USD"}


def test_wms_movements_never_raise_currency_mismatch():
    outcome = applied(position(), receipt(2, "3.00"))
    result = postings_for(outcome.applied, make_location(currency="EUR"), DEFAULT, NOW)
    assert result.exceptions == [] and [p.currency for p in result.postings] == ["EUR"]


# --- The delivery bookkeeping still replays the new fields ----------------------------------------

def test_replay_of_the_same_record_rebuilds_lost_in_transit_and_revaluation():
    ctx = CTX.__class__(**{**CTX.__dict__, "source_record": "0@7"})
    p = position(on_hand=-1, avg_cost=Decimal("5.00"), in_transit=2,
                 transfers={"T1": InTransitTransfer(quantity=2, unit_cost=Decimal("1"))})
    p, first = run(p, close(), ctx=ctx)
    _, again = run(p, close(), ctx=ctx)
    assert again[0].replay and again[0].applied.lost_in_transit == 2
    p, first = run(p, receipt(3, "6.00"), ctx=CTX.__class__(**{**CTX.__dict__, "source_record": "0@8"}))
    _, again = run(p, receipt(3, "6.00"), ctx=CTX.__class__(**{**CTX.__dict__, "source_record": "0@8"}))
    assert again[0].applied.cost_adjustment == first[0].applied.cost_adjustment == Decimal("1.00")


def test_source_system_of_the_factory_sale_is_pos():
    # guards the currency test above: it relies on a POS sale carrying its own currency
    assert make_movement().source_system is SourceSystem.POS and T0.tzinfo is not None


# --- 5. Returns of web and marketplace orders are valued at the FULFIL's cost ---------------------

def test_a_fulfil_is_found_by_its_order_and_a_store_sale_by_its_transaction():
    from app.domain.positions import sale_reference_of

    assert sale_reference_of(fulfil(1, "W100045", "1")) == "W100045"
    assert sale_reference_of(fulfil(1, "AMZ-113", "1", source_system=SourceSystem.MARKETPLACE)) == "AMZ-113"
    assert sale_reference_of(sale(1, "S042-R3-000123")) == "S042-R3-000123"
    assert sale_reference_of(receipt(1, "1.00")) is None


def test_a_return_naming_the_order_comes_in_at_the_fulfils_cost_at_another_store():
    # the web order shipped from DC01 at 6.50; returned at S042 whose average is 9.00
    shipped = applied(position(location_id="DC01", on_hand=4, avg_cost=Decimal("6.50")), fulfil(1, "W1", "1"))
    ctx = CTX.__class__(**{**CTX.__dict__, "original_sale_cost": shipped.applied.unit_cost})
    back = applied(position(on_hand=3, avg_cost=Decimal("9.00")), ret(1, original_transaction_id="W1"), ctx)
    # avg (3 x 9.00 + 1 x 6.50) / 4 = 8.375
    assert (back.applied.unit_cost, back.position.avg_cost) == (Decimal("6.50"), Decimal("8.3750"))
    assert entries(books(back))[PostingKind.RETURN_COGS] == [("1200", "6.50", "0.00"), ("5000", "0.00", "6.50")]
