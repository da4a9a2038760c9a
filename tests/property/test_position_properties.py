"""Properties every position keeps (SPEC §3), over random histories of one SKU@LOCATION in any order."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from app.domain.marks import mark_of
from app.domain.positions import PositionContext, apply, new_position
from app.models.canonical import Movement, MovementType, Position, Role, SourceSystem
from tests.factories import make_movement

T0 = datetime(2026, 11, 27, 8, 0, tzinfo=timezone.utc)
START_EPOCH = int(T0.timestamp())
ORDERS = ["W1", "W2", "W3"]
LINES = ["1", "2"]
TRANSFERS = ["T1", "T2"]

KINDS = ["receipt", "sale", "return", "reserve", "release", "expiry", "fulfil", "pickup", "adjust", "count",
         "disposition", "transfer_out", "transit_leg", "transfer_in", "transfer_close"]


def movement(index: int, kind: str, quantity: int, minute: int, pick: int, cents: int | None) -> Movement:
    """One movement of `kind` for SKU-1001@S042; `index` makes its source event, hence its id, unique.

    `pick` chooses the order line, transfer, reason or flag the kind needs, `cents` a unit cost (or none).
    """
    occurred_at = T0 + timedelta(minutes=minute)
    fields: dict = {"source_event_id": f"evt-{index}", "quantity": quantity, "occurred_at": occurred_at}
    order = {"order_id": ORDERS[pick % 3], "order_line_id": LINES[pick // 3 % 2],
             "source_system": SourceSystem.ECOM}
    transfer = {"transfer_id": TRANSFERS[pick % 2], "source_system": SourceSystem.WMS,
                "counterparty_location": "DC01"}
    cost = None if cents is None else Decimal(cents).scaleb(-2)
    if kind == "receipt":
        fields.update(movement_type=MovementType.RECEIPT, unit_cost=cost or Decimal("7.35"),
                      source_system=SourceSystem.WMS)
    elif kind == "sale":
        fields.update(movement_type=MovementType.SALE)
    elif kind == "return":
        fields.update(movement_type=MovementType.RETURN, inspection_required=pick % 2 == 0)
    elif kind == "reserve":
        fields.update(movement_type=MovementType.RESERVE, expires_at=occurred_at + timedelta(hours=72),
                      **order)
    elif kind == "release":
        fields.update(movement_type=MovementType.RELEASE, **order)
    elif kind == "expiry":
        fields.update(movement_type=MovementType.RELEASE, role=Role.EXPIRY, **order)
    elif kind == "fulfil":
        fields.update(movement_type=MovementType.FULFIL, **order)
    elif kind == "pickup":  # POS click-and-collect: knows the order, not its line ids
        fields.update(movement_type=MovementType.FULFIL, order_id=order["order_id"])
    elif kind == "adjust":
        fields.update(movement_type=MovementType.ADJUST, source_system=SourceSystem.WMS,
                      reason=["SHRINK", "FOUND", "DAMAGED"][pick % 3])
    elif kind == "count":
        fields.update(movement_type=MovementType.COUNT, source_system=SourceSystem.WMS,
                      quantity=quantity * pick % 41)
    elif kind == "disposition":
        fields.update(movement_type=MovementType.DISPOSITION, source_system=SourceSystem.INSPECTIONS,
                      reason=["RESTOCK", "DAMAGED", "SCRAP"][pick % 3])
    elif kind == "transfer_out":
        fields.update(movement_type=MovementType.TRANSFER_OUT, role=Role.ORIGIN, **transfer)
    elif kind == "transit_leg":
        fields.update(movement_type=MovementType.TRANSFER_OUT, role=Role.DESTINATION, unit_cost=cost,
                      **transfer)
    elif kind == "transfer_close":
        fields.update(movement_type=MovementType.TRANSFER_CLOSE, role=Role.DESTINATION, **transfer)
    else:
        fields.update(movement_type=MovementType.TRANSFER_IN, unit_cost=cost, **transfer)
    return make_movement(**fields)


# Producers deliver out of order: occurred_at is independent of arrival order, so late events happen.
steps = st.tuples(st.sampled_from(KINDS), st.integers(1, 12), st.integers(0, 600), st.integers(0, 11),
                  st.none() | st.integers(100, 2000))
# Lengths are drawn first so long histories (several counts, late events, racing releases) are common.
histories = st.integers(1, 25).flatmap(lambda n: st.lists(steps, min_size=n, max_size=n)).map(
    lambda drawn: [movement(i, *step) for i, step in enumerate(drawn)])


@dataclass
class Replay:
    """A history applied in arrival order, with what each application reported."""

    ctx: PositionContext
    position: Position
    applied: list[Movement] = field(default_factory=list)
    on_hand_deltas: list[int] = field(default_factory=list)
    # (index into `applied` of the count that last set on_hand, its quantity)
    last_count: tuple[int, int] | None = None


def replay(history: list[Movement], safety_stock: int, check_each_step=lambda p: None) -> Replay:
    ctx = PositionContext(now_epoch=START_EPOCH, dedupe_retention=10**9, safety_stock=safety_stock,
                          standard_cost=Decimal("7.00"))
    run = Replay(ctx, new_position("SKU-1001", "S042"))
    for m in history:
        counted_before = run.position.last_count_at
        outcome = apply(run.position, m, ctx)
        run.position = outcome.position
        check_each_step(run.position)
        if outcome.applied is None:
            continue
        assert outcome.applied.version == len(run.applied) + 1
        run.applied.append(m)
        run.on_hand_deltas.append(outcome.applied.on_hand_delta)
        # A count takes effect unless an applied count already saw a later shelf.
        takes_effect = counted_before is None or m.occurred_at >= counted_before
        if m.movement_type is MovementType.COUNT and takes_effect:
            run.last_count = (len(run.applied) - 1, m.quantity)
    return run


def _available_formula_holds(p: Position) -> None:
    assert p.available == max(0, p.on_hand - p.quality_control - p.damaged - p.reserved - p.safety_stock)
    assert p.available >= 0


def _reservations_add_up(p: Position) -> None:
    assert p.reserved == sum(r.quantity for r in p.reservations.values())
    assert p.reserved >= 0
    assert all(r.quantity > 0 for r in p.reservations.values())
    assert p.in_transit == sum(t.quantity for t in p.transfers.values())


safety_stocks = st.integers(0, 3)
SETTINGS = settings(max_examples=200, deadline=None)


@SETTINGS
@given(histories, safety_stocks, st.data())
def test_reapplying_already_applied_movements_in_any_order_changes_nothing(history, safety_stock, data):
    run = replay(history, safety_stock)
    if not run.applied:
        return
    resent = data.draw(st.lists(st.sampled_from(run.applied), max_size=3 * len(run.applied)), label="resent")
    final = run.position.model_copy(deep=True)

    p = run.position
    for m in resent:
        outcome = apply(p, m, run.ctx)
        assert outcome.duplicate and outcome.applied is None and outcome.rejection is None
        assert outcome.follow_ups == []
        p = outcome.position

    assert p == final


@SETTINGS
@given(histories, safety_stocks)
def test_applying_a_movement_never_changes_the_position_it_was_given(history, safety_stock):
    """A batch keeps the position it read and applies to it; a record rejected after `apply` must
    leave that position as it was (agents/positions.py), so `apply` works on a copy, whatever it does."""
    ctx = PositionContext(now_epoch=START_EPOCH, dedupe_retention=10**9, safety_stock=safety_stock,
                          standard_cost=Decimal("7.00"))
    position = new_position("SKU-1001", "S042")
    for m in history:
        before = position.model_copy(deep=True)
        outcome = apply(position, m, ctx)
        assert position == before
        position = outcome.position


@SETTINGS
@given(histories, safety_stocks)
def test_available_is_on_hand_less_unsellable_reserved_and_safety_stock_never_negative(history, safety_stock):
    replay(history, safety_stock, check_each_step=_available_formula_holds)


@SETTINGS
@given(histories, safety_stocks)
def test_on_hand_is_the_last_count_plus_the_deltas_applied_after_it(history, safety_stock):
    run = replay(history, safety_stock)

    assert run.position.on_hand == sum(run.on_hand_deltas)
    if run.last_count is not None:
        index, counted = run.last_count
        assert run.position.on_hand == counted + sum(run.on_hand_deltas[index + 1:])


@SETTINGS
@given(histories, safety_stocks)
def test_reserved_is_the_sum_of_open_reservations_and_never_negative(history, safety_stock):
    replay(history, safety_stock, check_each_step=_reservations_add_up)


@SETTINGS
@given(histories, safety_stocks)
def test_version_counts_the_distinct_movements_applied(history, safety_stock):
    run = replay(history, safety_stock)

    assert run.position.version == len(run.applied)
    assert len({m.movement_id for m in run.applied}) == len(run.applied)
    assert set(run.position.applied) == {mark_of(m.movement_id) for m in run.applied}

