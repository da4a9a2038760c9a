"""What each canonical movement does to one SKU@LOCATION position (SPEC §3), rule by rule."""
from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.domain.availability import availability_record
from app.domain.marks import mark_of
from app.domain.positions import (
    Outcome, PositionContext, apply, expiry_movements, may_hold_reservations, new_position, on_hand_as_of, outputs_of,
    reservation_key,
)
from app.domain.sale_costs import parse_sale_cost
from app.models.canonical import (
    Channel, InTransitTransfer, Movement, MovementType, OpenReservation, Position, Role, SourceSystem,
)
from app.models.records import ErrorCode, compact_json, json_bytes
from tests.factories import make_movement

T0 = datetime(2026, 11, 27, 10, 0, tzinfo=timezone.utc)
NOW_EPOCH = int(T0.timestamp())
WEEK = 7 * 24 * 3600
CTX = PositionContext(now_epoch=NOW_EPOCH, dedupe_retention=WEEK, standard_cost=Decimal("7.00"),
                      legal_entity="US01")


# --- builders: one movement of each kind, at S042 unless told otherwise ----------------------------

def movement(movement_type: MovementType, quantity: int, event: str, **overrides: Any) -> Movement:
    fields: dict[str, Any] = {"movement_type": movement_type, "quantity": quantity, "source_event_id": event,
                              "correlation_id": event, "occurred_at": T0}
    fields.update(overrides)
    return make_movement(**fields)


def sale(quantity: int, event: str = "sale-1", **kw: Any) -> Movement:
    return movement(MovementType.SALE, quantity, event, **kw)


def fulfil(quantity: int, order_id: str, line_id: str | None, event: str = "ship-1", **kw: Any) -> Movement:
    return movement(MovementType.FULFIL, quantity, event, **{
        "order_id": order_id, "order_line_id": line_id, "source_system": SourceSystem.ECOM,
        "channel": Channel.WEB, **kw})


def ret(quantity: int, event: str = "return-1", **kw: Any) -> Movement:
    return movement(MovementType.RETURN, quantity, event, **kw)


def reserve(quantity: int, order_id: str, line_id: str, event: str = "created-1", **kw: Any) -> Movement:
    return movement(MovementType.RESERVE, quantity, event, **{
        "order_id": order_id, "order_line_id": line_id, "source_system": SourceSystem.ECOM,
        "source_line": line_id, "channel": Channel.WEB, "expires_at": T0 + timedelta(hours=72), **kw})


def release(quantity: int, order_id: str, line_id: str | None, event: str = "cancelled-1",
            **kw: Any) -> Movement:
    return movement(MovementType.RELEASE, quantity, event, **{
        "order_id": order_id, "order_line_id": line_id, "source_system": SourceSystem.ECOM,
        "source_line": line_id or "1", "channel": Channel.WEB, **kw})


def wms(movement_type: MovementType, quantity: int, event: str, **kw: Any) -> Movement:
    return movement(movement_type, quantity, event, **{
        "source_system": SourceSystem.WMS, "channel": Channel.INTERNAL, "unit_price": None,
        "tax": Decimal("0"), **kw})


def receipt(quantity: int, unit_cost: str, event: str = "receipt-1", **kw: Any) -> Movement:
    return wms(MovementType.RECEIPT, quantity, event, unit_cost=Decimal(unit_cost), **kw)


def count(counted: int, event: str = "count-1", **kw: Any) -> Movement:
    return wms(MovementType.COUNT, counted, event, **kw)


def adjust(quantity: int, reason: str, event: str = "adjust-1", **kw: Any) -> Movement:
    return wms(MovementType.ADJUST, quantity, event, reason=reason, **kw)


def disposition(quantity: int, reason: str, event: str = "insp-1", **kw: Any) -> Movement:
    return movement(MovementType.DISPOSITION, quantity, event, **{
        "reason": reason, "source_system": SourceSystem.INSPECTIONS, "channel": Channel.INTERNAL,
        "unit_price": None, **kw})


def transfer_out(quantity: int, event: str = "ship-T1", **kw: Any) -> Movement:
    fields: dict[str, Any] = {"role": Role.ORIGIN, "location_id": "DC01", "counterparty_location": "S042",
                              "transfer_id": "T1"}
    fields.update(kw)
    return wms(MovementType.TRANSFER_OUT, quantity, event, **fields)


def transfer_in(quantity: int, event: str = "recv-T1", **kw: Any) -> Movement:
    fields: dict[str, Any] = {"transfer_id": "T1", "counterparty_location": "DC01"}
    fields.update(kw)
    return wms(MovementType.TRANSFER_IN, quantity, event, **fields)


def position(**buckets: Any) -> Position:
    """SKU-1001 at S042 with the given buckets; its reservations' totals are kept consistent."""
    p = Position(sku="SKU-1001", location_id=buckets.pop("location_id", "S042"), **buckets)
    p.reserved = sum(r.quantity for r in p.reservations.values())
    return p


def held(order_id: str, line_id: str | None, quantity: int, expires_at: datetime | None = None) -> dict:
    return {reservation_key(order_id, line_id): OpenReservation(order_id=order_id, line_id=line_id,
                                                                quantity=quantity, expires_at=expires_at)}


def run(p: Position, *movements: Movement, ctx: PositionContext = CTX) -> tuple[Position, list[Outcome]]:
    outcomes = []
    for m in movements:
        outcome = apply(p, m, ctx)
        outcomes.append(outcome)
        p = outcome.position
    return p, outcomes


def applied(p: Position, m: Movement, ctx: PositionContext = CTX) -> Outcome:
    outcome = apply(p, m, ctx)
    assert outcome.applied is not None and outcome.rejection is None and not outcome.duplicate
    return outcome


# --- SALE ------------------------------------------------------------------------------------------

def test_sale_takes_units_off_on_hand_at_average_cost():
    outcome = applied(position(on_hand=10, avg_cost=Decimal("7.10")), sale(3))

    assert outcome.position.on_hand == 7
    assert outcome.applied.on_hand_delta == -3
    assert outcome.applied.unit_cost == Decimal("7.10")
    assert outcome.applied.on_hand_after == 7
    assert outcome.position.avg_cost == Decimal("7.10")  # an outflow never moves the average


def test_sale_before_any_receipt_is_valued_at_standard_cost():
    outcome = applied(position(on_hand=5), sale(1))

    assert outcome.applied.unit_cost == Decimal("7.00")
    assert outcome.position.avg_cost is None


def test_sale_of_stock_the_books_say_is_gone_still_applies_goes_negative_and_available_floors_at_zero():
    outcome = applied(position(on_hand=1), sale(3))

    assert outcome.position.on_hand == -2
    assert outcome.position.negative
    assert outcome.position.available == 0
    record = availability_record(outcome.position, outcome.previous_available, outcome.applied.movement, T0)
    assert record.negative and record.available == 0 and record.previous_available == 1


# --- FULFIL ----------------------------------------------------------------------------------------

def test_fulfil_consumes_the_reservation_of_its_order_line():
    start = position(on_hand=10,
                     reservations={**held("W1", "1", 2), **held("W1", "2", 1), **held("W2", "1", 4)})

    outcome = applied(start, fulfil(2, "W1", "1"))

    assert outcome.position.on_hand == 8
    assert outcome.position.reserved == 5
    assert set(outcome.position.reservations) == {reservation_key("W1", "2"), reservation_key("W2", "1")}
    assert outcome.applied.on_hand_delta == -2
    assert outcome.applied.unmatched_quantity == 0


def test_pos_pickup_by_order_without_line_id_consumes_that_orders_reservations():
    start = position(on_hand=10,
                     reservations={**held("W1", "1", 1), **held("W1", "2", 2), **held("W2", "1", 4)})
    pickup = movement(MovementType.FULFIL, 3, "S042-R1-000001", order_id="W1", order_line_id=None)

    outcome = applied(start, pickup)

    assert outcome.position.reserved == 4
    assert set(outcome.position.reservations) == {reservation_key("W2", "1")}
    assert outcome.position.on_hand == 7
    assert outcome.applied.unmatched_quantity == 0


def test_fulfil_without_reservation_still_takes_the_units_and_reports_them_unmatched():
    outcome = applied(position(on_hand=10, reservations=held("W2", "1", 4)), fulfil(2, "W1", "1"))

    assert outcome.position.on_hand == 8
    assert outcome.position.reserved == 4
    assert outcome.applied.unmatched_quantity == 2
    assert outcome.applied.on_hand_delta == -2


def test_partial_fulfil_leaves_the_rest_of_the_line_reserved():
    outcome = applied(position(on_hand=10, reservations=held("W1", "1", 3)), fulfil(1, "W1", "1"))

    assert outcome.position.on_hand == 9
    assert outcome.position.reserved == 2
    assert outcome.position.reservations[reservation_key("W1", "1")].quantity == 2


def test_fulfil_beyond_its_reservation_consumes_it_and_reports_the_excess_unmatched():
    outcome = applied(position(on_hand=10, reservations=held("W1", "1", 2)), fulfil(5, "W1", "1"))

    assert outcome.position.reserved == 0
    assert outcome.position.reservations == {}
    assert outcome.position.on_hand == 5
    assert outcome.applied.unmatched_quantity == 3


# --- RETURN ----------------------------------------------------------------------------------------

def test_return_without_inspection_puts_units_back_on_hand_and_sellable():
    outcome = applied(position(on_hand=4, avg_cost=Decimal("7.10")), ret(2, inspection_required=False))

    assert outcome.position.on_hand == 6
    assert outcome.position.quality_control == 0
    assert outcome.position.available == 6
    assert outcome.applied.on_hand_delta == 2


def test_return_requiring_inspection_holds_the_units_in_quality_control():
    outcome = applied(position(on_hand=4, avg_cost=Decimal("7.10")), ret(2, inspection_required=True))

    assert outcome.position.on_hand == 6
    assert outcome.position.quality_control == 2
    assert outcome.position.available == 4


def test_return_is_valued_at_the_original_sales_cost_and_moves_the_average():
    ctx = PositionContext(now_epoch=NOW_EPOCH, dedupe_retention=WEEK, standard_cost=Decimal("7.00"),
                          original_sale_cost=Decimal("8.00"))

    outcome = applied(position(on_hand=10, avg_cost=Decimal("7.00")), ret(2), ctx)

    assert outcome.applied.unit_cost == Decimal("8.00")
    # (10 x 7.00 + 2 x 8.00) / 12 = 7.16666.. -> 7.1667
    assert outcome.position.avg_cost == Decimal("7.1667")


def test_return_without_known_original_cost_is_valued_at_the_average():
    outcome = applied(position(on_hand=10, avg_cost=Decimal("7.10")), ret(2))

    assert outcome.applied.unit_cost == Decimal("7.10")
    assert outcome.position.avg_cost == Decimal("7.10")


# --- RESERVE / RELEASE -----------------------------------------------------------------------------

def test_reserve_holds_units_for_the_order_line_until_its_expiry():
    expires = T0 + timedelta(hours=72)

    outcome = applied(position(on_hand=10), reserve(3, "W1", "1", expires_at=expires))

    assert outcome.position.reserved == 3
    assert outcome.position.available == 7
    assert outcome.position.on_hand == 10
    assert outcome.position.reservations[reservation_key("W1", "1")] == OpenReservation(
        order_id="W1", line_id="1", quantity=3, expires_at=expires)
    assert outcome.applied.on_hand_delta == 0


def test_reserving_the_same_order_line_twice_holds_it_once():
    p, outcomes = run(position(on_hand=10), reserve(3, "W1", "1", event="created-1"),
                      reserve(3, "W1", "1", event="created-1-resent-by-connector"))

    assert p.reserved == 3
    assert len(p.reservations) == 1
    assert all(o.rejection is None for o in outcomes)


def test_release_frees_what_is_still_reserved_for_the_line():
    # Two of three units already left; the cancel names the original quantity.
    p, _ = run(position(on_hand=10, reservations=held("W1", "1", 3)), fulfil(2, "W1", "1"),
               release(3, "W1", "1"))

    assert p.reserved == 0
    assert p.reservations == {}
    assert p.on_hand == 8


def test_cancelling_one_line_of_two_keeps_the_other_reserved():
    p, _ = run(position(on_hand=10), reserve(2, "W1", "1", event="created-1"),
               reserve(3, "W1", "2", event="created-1"), release(2, "W1", "1", event="cancel-line-1"))

    assert p.reserved == 3
    assert set(p.reservations) == {reservation_key("W1", "2")}
    assert p.available == 7


def test_release_of_unknown_reservation_is_rejected_and_leaves_the_stock_unchanged():
    start = position(on_hand=10, reservations=held("W2", "1", 4))
    early = release(1, "W1", "1")

    outcome = apply(start, early, CTX)

    assert outcome.rejection is not None
    assert outcome.rejection.error_code is ErrorCode.UNKNOWN_RESERVATION
    assert outcome.applied is None
    assert outcome.position.model_copy(update={"rejected": {}}) == start
    assert outcome.position.rejected == {mark_of(early.movement_id): NOW_EPOCH}   # the answer is remembered
    assert start.rejected == {}


def test_a_rejected_release_delivered_again_is_rejected_again_even_once_its_reserve_arrived():
    # A worker dies after the rejection, before its commit: the RELEASE comes again after the
    # RESERVE. Applying it now would make the outcome depend on when the worker died.
    early = release(2, "W1", "1")
    p, outcomes = run(position(on_hand=10), early, reserve(2, "W1", "1"), early)

    assert outcomes[0].rejection is not None
    assert outcomes[2].rejection is not None and outcomes[2].rejection.error_code is ErrorCode.UNKNOWN_RESERVATION
    assert "replay it from the DLQ" in outcomes[2].rejection.error_detail
    assert outcomes[2].position is outcomes[1].position   # nothing to store
    assert p.reserved == 2


def test_release_that_raced_ahead_of_its_reserve_applies_when_replayed_from_the_dlq():
    early = release(2, "W1", "1")
    p, outcomes = run(position(on_hand=10), early, reserve(2, "W1", "1"))
    replayed = apply(p, early, replace(CTX, dlq_replay=True))

    assert outcomes[0].rejection is not None
    assert replayed.applied is not None
    assert replayed.position.reserved == 0
    assert replayed.position.rejected == {}
    assert apply(replayed.position, early, replace(CTX, dlq_replay=True)).duplicate   # replayed twice


def test_a_dlq_replay_that_still_finds_no_reservation_is_rejected_again():
    early = release(2, "W1", "1")
    p, _ = run(position(on_hand=10), early)
    again = apply(p, early, replace(CTX, dlq_replay=True))

    assert again.rejection is not None
    assert mark_of(early.movement_id) in again.position.rejected


def test_expiry_of_a_reservation_the_position_no_longer_holds_is_ignored():
    start = position(on_hand=10)
    expiry = release(1, "W1", "1", role=Role.EXPIRY, source_system=SourceSystem.PIPELINE, event="expiry:W1:1")

    outcome = apply(start, expiry, CTX)

    assert outcome.rejection is None
    assert outcome.applied is None
    assert outcome.position == start


# --- RECEIPT and moving average cost ---------------------------------------------------------------

@pytest.mark.parametrize(("on_hand", "avg", "quantity", "cost", "expected"), [
    (10, "7.10", 5, "7.25", "7.1500"),   # (10 x 7.10 + 5 x 7.25) / 15
    (3, "7.10", 4, "7.00", "7.0429"),    # 49.30 / 7 = 7.042857.. rounded half-up to 4 decimals
    (1, "1.00", 2, "1.00005", "1.0000"),  # 3.0001 / 3 = 1.00003..
    (0, "7.10", 4, "8.00", "8.0000"),    # nothing on hand: the average becomes c
    (-3, "7.10", 5, "8.00", "8.0000"),   # negative stock carries no value: max(on_hand, 0) = 0
])
def test_receipt_adds_units_and_moves_the_average_by_the_spec_formula(on_hand, avg, quantity, cost, expected):
    outcome = applied(position(on_hand=on_hand, avg_cost=Decimal(avg)), receipt(quantity, cost))

    assert outcome.position.on_hand == on_hand + quantity
    assert outcome.position.avg_cost == Decimal(expected)
    assert outcome.position.avg_cost.as_tuple().exponent == -4
    assert outcome.applied.unit_cost == Decimal(cost)
    assert outcome.applied.avg_cost_after == Decimal(expected)


def test_first_receipt_with_nothing_on_hand_sets_the_average_to_its_cost():
    outcome = applied(new_position("SKU-1001", "S042"), receipt(6, "7.10"))

    assert outcome.position.on_hand == 6
    assert outcome.position.avg_cost == Decimal("7.1000")


def test_first_receipt_onto_stock_held_at_standard_cost_averages_with_the_standard_cost():
    # 10 units were found at the standard cost 7.00 before any receipt: (10 x 7.00 + 10 x 8.00) / 20
    p, _ = run(position(), adjust(10, "FOUND"), receipt(10, "8.00"))

    assert p.avg_cost == Decimal("7.5000")


# --- TRANSFERS -------------------------------------------------------------------------------------

def test_transfer_out_ships_units_and_derives_the_destination_in_transit_leg_at_origin_cost():
    origin = position(location_id="DC01", on_hand=20, avg_cost=Decimal("6.80"))
    shipment = transfer_out(5)

    outcome = applied(origin, shipment)

    assert outcome.position.on_hand == 15
    assert outcome.applied.unit_cost == Decimal("6.80")
    [leg] = outcome.follow_ups
    assert leg.movement_type is MovementType.TRANSFER_OUT
    assert leg.role is Role.DESTINATION
    assert leg.location_id == "S042" and leg.counterparty_location == "DC01"
    assert leg.quantity == 5 and leg.unit_cost == Decimal("6.80") and leg.transfer_id == "T1"
    assert leg.movement_id == "wms:ship-T1:1:destination" != shipment.movement_id
    assert applied(origin, shipment).follow_ups == [leg]  # deterministic: a resend derives the same leg


def in_transit_leg() -> Movement:
    """The destination leg DC01 derives when it ships 5 units to S042 at its average cost 6.80."""
    origin = position(location_id="DC01", on_hand=20, avg_cost=Decimal("6.80"))
    return applied(origin, transfer_out(5)).follow_ups[0]


def test_destination_leg_puts_the_units_in_transit_without_touching_on_hand():
    leg = in_transit_leg()

    outcome = applied(position(on_hand=2), leg)

    assert outcome.position.in_transit == 5
    assert outcome.position.on_hand == 2
    assert outcome.position.transfers["T1"] == InTransitTransfer(quantity=5, unit_cost=Decimal("6.80"))


def test_transfer_in_consumes_in_transit_and_brings_the_carried_cost():
    leg = in_transit_leg()
    p, outcomes = run(position(on_hand=5, avg_cost=Decimal("7.20")), leg, transfer_in(5))

    assert p.in_transit == 0
    assert p.transfers == {}
    assert p.on_hand == 10
    assert outcomes[1].applied.unit_cost == Decimal("6.80")
    assert p.avg_cost == Decimal("7.0000")  # (5 x 7.20 + 5 x 6.80) / 10


def test_transfer_in_before_its_in_transit_leg_leaves_in_transit_negative_until_the_leg_arrives():
    leg = in_transit_leg()
    start = position(on_hand=0)

    early = applied(start, transfer_in(5))
    assert early.position.in_transit == -5
    assert early.position.on_hand == 5

    settled = applied(early.position, leg)
    assert settled.position.in_transit == 0
    assert settled.position.transfers == {}
    assert settled.position.on_hand == 5


# --- CYCLE COUNT and the late-event rule -----------------------------------------------------------

def test_cycle_count_sets_on_hand_and_records_the_difference():
    outcome = applied(position(on_hand=10, avg_cost=Decimal("7.10")), count(7))

    assert outcome.position.on_hand == 7
    assert outcome.applied.count_difference == -3
    assert outcome.applied.on_hand_delta == -3
    assert outcome.applied.unit_cost == Decimal("7.10")
    assert outcome.position.last_count_at == T0


@pytest.mark.parametrize(("late", "signed_quantity"), [
    (sale(2, occurred_at=T0 - timedelta(minutes=5)), -2),
    (receipt(4, "7.50", occurred_at=T0 - timedelta(minutes=5)), 4),
    (adjust(3, "SHRINK", occurred_at=T0 - timedelta(minutes=5)), -3),
], ids=["sale", "receipt", "shrink"])
def test_late_movement_before_count_leaves_on_hand_and_reports_late_quantity(late, signed_quantity):
    counted, _ = run(position(on_hand=10, avg_cost=Decimal("7.10")), count(7))

    outcome = applied(counted, late)

    assert outcome.position.on_hand == 7
    assert outcome.applied.on_hand_delta == 0
    assert outcome.applied.late_quantity == signed_quantity
    assert outcome.position.avg_cost == Decimal("7.10")
    assert outcome.position.version == counted.version + 1  # still recorded


def test_late_shrink_before_count_leaves_on_hand():
    counted, _ = run(position(on_hand=10), count(7))

    outcome = applied(counted, adjust(2, "SHRINK", occurred_at=T0 - timedelta(seconds=1)))

    assert outcome.position.on_hand == 7


def test_movement_after_the_count_changes_on_hand_as_usual():
    counted, _ = run(position(on_hand=10), count(7))

    outcome = applied(counted, sale(2, occurred_at=T0 + timedelta(minutes=1)))

    assert outcome.position.on_hand == 5
    assert outcome.applied.late_quantity == 0


def test_movement_at_the_same_instant_as_the_count_is_not_late():
    # SPEC §3: only a movement *earlier* than the count was already seen by it.
    counted, _ = run(position(on_hand=10), count(7))

    outcome = applied(counted, sale(2, occurred_at=T0))

    assert outcome.position.on_hand == 5
    assert outcome.applied.late_quantity == 0


def test_count_older_than_the_last_applied_count_changes_no_stock():
    counted, _ = run(position(on_hand=10), count(7))

    outcome = applied(counted, count(12, event="count-0", occurred_at=T0 - timedelta(hours=1)))

    assert outcome.position.on_hand == 7
    assert outcome.position.last_count_at == T0
    assert outcome.applied.count_difference == 0
    assert outcome.applied.on_hand_delta == 0


# --- ADJUST and DISPOSITION ------------------------------------------------------------------------

def test_shrink_adjustment_takes_units_off_on_hand():
    outcome = applied(position(on_hand=10), adjust(3, "SHRINK"))

    assert outcome.position.on_hand == 7
    assert outcome.applied.on_hand_delta == -3


def test_found_adjustment_adds_units_to_on_hand():
    outcome = applied(position(on_hand=10), adjust(3, "FOUND"))

    assert outcome.position.on_hand == 13
    assert outcome.applied.on_hand_delta == 3


def test_damaged_adjustment_keeps_units_on_the_books_but_not_sellable():
    outcome = applied(position(on_hand=10), adjust(3, "DAMAGED"))

    assert outcome.position.on_hand == 10
    assert outcome.position.damaged == 3
    assert outcome.position.available == 7


def test_restock_disposition_releases_inspected_units_for_sale():
    outcome = applied(position(on_hand=10, quality_control=2), disposition(2, "RESTOCK"))

    assert outcome.position.quality_control == 0
    assert outcome.position.on_hand == 10
    assert outcome.position.available == 10


def test_damaged_disposition_moves_units_from_quality_control_to_damaged():
    outcome = applied(position(on_hand=10, quality_control=2), disposition(2, "DAMAGED"))

    assert outcome.position.quality_control == 0
    assert outcome.position.damaged == 2
    assert outcome.position.on_hand == 10
    assert outcome.position.available == 8


def test_scrap_disposition_takes_inspected_units_off_on_hand():
    start = position(on_hand=10, quality_control=2, avg_cost=Decimal("7.10"))

    outcome = applied(start, disposition(2, "SCRAP"))

    assert outcome.position.quality_control == 0
    assert outcome.position.on_hand == 8
    assert outcome.position.available == 8
    assert outcome.applied.on_hand_delta == -2
    assert outcome.applied.unit_cost == Decimal("7.10")


# --- Idempotency, versions, availability -----------------------------------------------------------

@pytest.mark.parametrize("resent", [sale(2), receipt(5, "7.10"), reserve(2, "W1", "1"), count(3),
                                    adjust(1, "FOUND"), ret(1, inspection_required=True)],
                         ids=lambda m: m.movement_type.value)
def test_a_resent_movement_is_ignored(resent):
    first = applied(position(on_hand=10, avg_cost=Decimal("7.00")), resent)

    again = apply(first.position, resent, CTX)

    assert again.duplicate
    assert again.applied is None and again.rejection is None and again.follow_ups == []
    assert again.position == first.position


def test_version_grows_by_one_per_applied_movement_only():
    p, outcomes = run(position(on_hand=10), receipt(5, "7.10"), sale(1), sale(1), release(1, "W9", "1"),
                      reserve(2, "W1", "1"))

    assert [o.applied.version if o.applied else None for o in outcomes] == [1, 2, None, None, 3]
    assert p.version == 3


def test_available_subtracts_quality_control_damaged_reserved_and_safety_stock():
    ctx = PositionContext(now_epoch=NOW_EPOCH, dedupe_retention=WEEK, safety_stock=2)
    start = position(on_hand=20, quality_control=3, damaged=1, reservations=held("W1", "1", 4))

    outcome = applied(start, sale(1), ctx)

    assert outcome.position.safety_stock == 2
    assert outcome.position.available == 19 - 3 - 1 - 4 - 2
    assert outcome.previous_available == 20 - 3 - 1 - 4


def test_available_floors_at_zero_when_safety_stock_exceeds_what_is_left():
    ctx = PositionContext(now_epoch=NOW_EPOCH, dedupe_retention=WEEK, safety_stock=5)

    outcome = applied(position(on_hand=4), receipt(1, "7.00"), ctx)

    assert outcome.position.available == 0


def test_dedupe_mark_is_forgotten_after_the_retention():
    first = receipt(5, "7.10", event="receipt-old")
    later = PositionContext(now_epoch=NOW_EPOCH + WEEK + 1, dedupe_retention=WEEK)

    p, _ = run(position(), first)
    p, _ = run(p, receipt(1, "7.10", event="receipt-new"), ctx=later)

    assert first.movement_id not in p.applied
    assert set(p.applied) == {mark_of(receipt(1, "7.10", event="receipt-new").movement_id)}


def test_dedupe_mark_within_the_retention_is_kept():
    first = receipt(5, "7.10", event="receipt-old")
    later = PositionContext(now_epoch=NOW_EPOCH + WEEK, dedupe_retention=WEEK)

    p, _ = run(position(), first)
    p, _ = run(p, receipt(1, "7.10", event="receipt-new"), ctx=later)

    assert apply(p, first, later).duplicate


def test_on_hand_as_of_takes_back_the_movements_that_happened_after_it():
    p, _ = run(position(),
               receipt(10, "7.10", event="r1", occurred_at=T0),
               sale(3, event="s1", occurred_at=T0 + timedelta(hours=1)),
               count(5, event="c1", occurred_at=T0 + timedelta(hours=2)),
               sale(1, event="s2", occurred_at=T0 + timedelta(hours=3)))

    assert p.on_hand == 4
    assert on_hand_as_of(p, T0 - timedelta(seconds=1)) == 0
    assert on_hand_as_of(p, T0) == 10
    assert on_hand_as_of(p, T0 + timedelta(hours=1, minutes=30)) == 7
    assert on_hand_as_of(p, T0 + timedelta(hours=2)) == 5
    assert on_hand_as_of(p, T0 + timedelta(hours=4)) == 4


# --- Reservation expiry ----------------------------------------------------------------------------

@pytest.mark.parametrize("encode", [json_bytes, compact_json])
def test_the_expiry_sweep_parses_exactly_the_positions_holding_a_reservation(encode):
    empty = position(on_hand=10)
    holding = position(on_hand=10, reservations=held("W1", "1", 2, expires_at=T0))

    assert not may_hold_reservations(encode(empty))
    assert may_hold_reservations(encode(holding))
    assert Position.model_validate_json(encode(holding)) == holding



def test_expiry_movements_release_only_expired_reservations_with_deterministic_ids():
    now = T0 + timedelta(hours=72)
    start = position(on_hand=10, reservations={
        **held("W1", "1", 2, expires_at=now - timedelta(seconds=1)),
        **held("W2", "1", 3, expires_at=now),
        **held("W3", "1", 4, expires_at=now + timedelta(seconds=1)),
        **held("W4", "1", 1, expires_at=None),
    })

    expiries = expiry_movements(start, now)

    assert sorted(m.order_id for m in expiries) == ["W1", "W2"]
    assert all(m.movement_type is MovementType.RELEASE and m.role is Role.EXPIRY for m in expiries)
    assert all(m.sku == "SKU-1001" and m.location_id == "S042" for m in expiries)
    assert expiry_movements(start, now) == expiries
    assert len({m.movement_id for m in expiries}) == 2

    p, outcomes = run(start, *expiries, *expiries)
    assert p.reserved == 5
    assert set(p.reservations) == {reservation_key("W3", "1"), reservation_key("W4", "1")}
    assert [o.duplicate for o in outcomes] == [False, False, True, True]


def test_a_line_reserved_again_after_its_expiry_expires_again():
    first_expiry = T0 + timedelta(hours=72)
    p, _ = run(position(on_hand=10), reserve(2, "W1", "1", expires_at=first_expiry))
    p, _ = run(p, *expiry_movements(p, first_expiry))
    assert p.reserved == 0
    # The OMS sources the same order line here again later; that reservation must lapse in its turn.
    second_expiry = first_expiry + timedelta(hours=72)
    p, _ = run(p, reserve(2, "W1", "1", event="oms-7", source_system=SourceSystem.OMS, role=Role.TO,
                          expires_at=second_expiry))
    assert p.reserved == 2

    p, outcomes = run(p, *expiry_movements(p, second_expiry))

    assert [o.duplicate for o in outcomes] == [False]
    assert p.reserved == 0


# --- replays: the same Kafka record again after a stop (see Emitted) -------------------------------

def at(record: str, ctx: PositionContext = CTX, **kw: Any) -> PositionContext:
    return PositionContext(**{**ctx.__dict__, "source_record": record, **kw})


def test_the_same_record_again_emits_exactly_what_it_emitted_even_after_later_movements():
    first = apply(position(on_hand=10), sale(2, "sale-1"), at("3@100"))
    later = apply(first.position, receipt(5, "7.00", "receipt-9"), at("3@101"))
    replay = apply(later.position, sale(2, "sale-1"), at("3@100"))
    assert replay.replay and replay.duplicate
    assert replay.position is later.position  # nothing applied twice
    assert replay.applied == first.applied
    assert replay.previous_available == first.previous_available
    emitted_then = availability_record(first.as_emitted, first.previous_available, sale(2, "sale-1"), T0)
    emitted_again = availability_record(replay.as_emitted, replay.previous_available, sale(2, "sale-1"), T0)
    assert emitted_again == emitted_then
    assert (emitted_again.version, emitted_again.on_hand) == (1, 8)


def test_the_same_movement_from_another_record_is_a_producer_resend_and_emits_nothing():
    first = apply(position(on_hand=10), sale(2, "sale-1"), at("3@100"))
    again = apply(first.position, sale(2, "sale-1"), at("3@250"))
    assert again.duplicate and not again.replay and again.applied is None and again.follow_ups == []


def test_a_replayed_transfer_out_derives_the_same_in_transit_leg_at_the_same_cost():
    origin = position(on_hand=10, location_id="DC01", avg_cost=Decimal("6.5000"))
    first = apply(origin, transfer_out(4), at("1@7"))
    replay = apply(first.position, transfer_out(4), at("1@7"))
    assert replay.replay and replay.follow_ups == first.follow_ups
    assert replay.follow_ups[0].unit_cost == Decimal("6.5000")


def test_what_a_movement_emitted_is_forgotten_after_the_replay_window():
    first = apply(position(on_hand=10), sale(1, "sale-1"), at("3@100"))
    later = apply(first.position, sale(1, "sale-2"), at("3@101", now_epoch=NOW_EPOCH + 601))
    assert list(later.position.emitted) == [mark_of(later.applied.movement.movement_id)]
    again = apply(later.position, sale(1, "sale-1"), at("3@100", now_epoch=NOW_EPOCH + 602))
    assert again.duplicate and not again.replay


def test_a_hot_position_keeps_at_most_replay_keep_emitted_movements():
    p = position(on_hand=100)
    for i in range(40):
        p = apply(p, sale(1, f"sale-{i}"), at(f"3@{i}")).position
    assert len(p.emitted) == CTX.replay_keep
    assert p.version == 40 and len(p.applied) == 40  # dedupe marks are not capped


# --- What an applied movement publishes (outputs_of: the position stage and the bench's Quix peer) --

def test_an_applied_sale_publishes_one_availability_record_and_a_ledger_record_that_agree_and_keeps_its_cost():
    m = sale(3, event="S042-R3-000777")
    outcome = applied(position(on_hand=10, avg_cost=Decimal("7.10")), m)

    out = outputs_of(outcome, m, CTX, T0)

    assert (out.record.on_hand, out.record.version, out.record.previous_available) == \
        (7, outcome.position.version, 10)
    assert out.record.cause.movement_id == m.movement_id and out.record.emitted_at == T0
    assert out.entry.applied is outcome.applied
    trace = out.entry.applied_trace
    assert (trace.key, trace.version, trace.available, trace.on_hand, trace.previous_available, trace.at) == \
        ("SKU-1001@S042", out.record.version, out.record.available, 7, 10, T0)
    # A later return names the POS transaction and is valued at this sale's unit cost.
    assert out.sale_reference == "S042-R3-000777"
    assert parse_sale_cost(out.sale_cost) == (Decimal("7.10"), NOW_EPOCH)


def test_a_receipt_publishes_its_records_but_keeps_no_sale_cost():
    m = receipt(5, "4.00")
    out = outputs_of(applied(position(), m), m, CTX, T0)

    assert out.record.on_hand == 5 and out.entry.applied.unit_cost == Decimal("4.00")
    assert out.sale_reference is None and out.sale_cost is None


# --- A position as the table keeps it (compact_json) -------------------------------------------------

_STEP = st.one_of(
    st.builds(lambda q, n: sale(q, f"sale-{n}"), st.integers(0, 5), st.integers(0, 9)),
    st.builds(lambda q, n: ret(q, f"ret-{n}"), st.integers(1, 3), st.integers(0, 9)),
    st.builds(lambda q, c, n: receipt(q, c, f"rcv-{n}"), st.integers(1, 20), st.sampled_from(["0", "0.00", "7.10"]),
              st.integers(0, 9)),
    st.builds(lambda q, o, n: reserve(q, f"W{o}", "1", f"res-{n}"), st.integers(1, 4), st.integers(0, 3),
              st.integers(0, 9)),
    st.builds(lambda q, o, n: fulfil(q, f"W{o}", "1", f"ful-{n}"), st.integers(1, 4), st.integers(0, 3),
              st.integers(0, 9)),
    st.builds(lambda q, o, n: release(q, f"W{o}", "1", f"rel-{n}"), st.integers(1, 4), st.integers(0, 3),
              st.integers(0, 9)),
    st.builds(lambda q, n: count(q, f"cnt-{n}"), st.integers(0, 30), st.integers(0, 9)),
    st.builds(lambda q, r, n: adjust(q, r, f"adj-{n}"), st.integers(1, 3), st.sampled_from(["SHRINK", "FOUND", "DAMAGED"]),
              st.integers(0, 9)),
    st.builds(lambda q, n: transfer_in(q, f"tin-{n}"), st.integers(1, 5), st.integers(0, 9)),
)


@settings(max_examples=150, deadline=None)
@given(st.lists(_STEP, max_size=25))
def test_a_position_kept_without_its_defaults_reads_back_equal_and_applies_the_next_movement_the_same(steps):
    p = new_position("SKU-1001", "S042")
    for step in steps:
        kept = Position.model_validate_json(compact_json(p))
        assert kept == p
        assert len(compact_json(p)) <= len(json_bytes(p))
        original, read_back = apply(p, step, CTX), apply(kept, step, CTX)
        assert read_back == original
        p = original.position
