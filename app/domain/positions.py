"""Position rules (SPEC §3): what one canonical movement does to one SKU@LOCATION position."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from app.domain.availability import availability_record
from app.domain.costing import average_after_inflow, current_cost
from app.domain.keys import position_key
from app.domain.marks import forget_oldest, mark_of
from app.domain.sale_costs import sale_cost_value
from app.domain.sources.common import build_movement
from app.models.canonical import (
    Applied, Emitted, InTransitTransfer, LocationChange, Movement, MovementType, OpenReservation, Position, Role,
    SourceSystem, working_copy,
)
from app.models.finance_ledger import AppliedTrace, LedgerEntry
from app.models.records import AvailabilityRecord, ErrorCode, Rejection, holds_entries

# Movement types whose on_hand change a later-dated cycle count has already seen (the late rule).
_DELTA_TYPES = {
    MovementType.SALE, MovementType.FULFIL, MovementType.RETURN, MovementType.RECEIPT,
    MovementType.TRANSFER_OUT, MovementType.TRANSFER_IN, MovementType.ADJUST, MovementType.DISPOSITION,
}

# The buckets that are part of on_hand and never go below 0 (SPEC §3 "Damaged stock leaves the books").
_FLOORED_BUCKETS = ("quality_control", "damaged")
# Closed transfers a position remembers, so units turning up after a close are told from a receipt
# that overtook its in-transit leg; a transfer arrives within days, so a few dozen is plenty.
CLOSED_TRANSFERS_KEPT = 50


@dataclass(frozen=True)
class PositionContext:
    """Facts from outside the position that a rule may need, looked up by the caller."""

    now_epoch: int
    dedupe_retention: int
    safety_stock: int = 0
    standard_cost: Decimal | None = None
    original_sale_cost: Decimal | None = None  # RETURN: unit cost of the original sale, when known
    legal_entity: str | None = None
    source_record: str | None = None  # "partition@offset" of the movement's Kafka record, when read from one
    replay_window: int = 600          # seconds an Emitted is kept for a replay of its record
    replay_keep: int = 32             # at most this many Emitted per position (hot keys)
    applied_keep: int = 2000          # at most this many applied marks per position (~90 KB)
    rejected_keep: int = 100
    reservations_bytes: int = 96 * 1024   # open reservations of one position, estimated as stored
    dlq_replay: bool = False          # the record was re-sent from the DLQ by an operator (app/replay.py)


@dataclass
class Outcome:
    position: Position                # to store
    applied: Applied | None = None
    duplicate: bool = False
    rejection: Rejection | None = None
    follow_ups: list[Movement] = field(default_factory=list)
    previous_available: int = 0
    replay: bool = False              # the same record again: emit `applied` and `as_emitted` again
    as_emitted: Position | None = None  # the position right after the movement: what availability shows


def sale_reference_of(movement: Movement) -> str | None:
    """What a later return names to find this sale's unit cost (the `sale-costs` table, SPEC §5.2):
    the store transaction for a POS sale or pickup, the order for a web or marketplace FULFIL."""
    if movement.movement_type not in (MovementType.SALE, MovementType.FULFIL):
        return None
    if movement.source_system is SourceSystem.POS:
        return movement.source_event_id
    return movement.order_id


@dataclass(frozen=True, slots=True)
class MovementOutputs:
    """What an applied movement publishes and keeps beside its position."""

    record: AvailabilityRecord        # to inventory.availability
    entry: LedgerEntry                # to the finance stage; it carries the "applied" trace fact
    sale_reference: str | None        # a sale: what a later return names to find its unit cost ...
    sale_cost: bytes | None           # ... and that cost as the `sale-costs` table holds it


def outputs_of(outcome: Outcome, movement: Movement, ctx: PositionContext, now: datetime) -> MovementOutputs:
    """Everything an applied movement (not a duplicate, not a rejection) produces, built before any
    of it is kept or sent, so that a record failing here leaves nothing behind."""
    applied = outcome.applied
    sale_reference = sale_reference_of(movement)
    sale_cost = None
    if sale_reference is not None and applied.unit_cost is not None:
        sale_cost = sale_cost_value(applied.unit_cost, ctx.now_epoch)
    record = availability_record(outcome.as_emitted, outcome.previous_available, movement, now,
                                 applied.unmatched_quantity)
    entry = LedgerEntry(applied=applied, applied_trace=AppliedTrace(
        key=position_key(movement.sku, movement.location_id), version=record.version, available=record.available,
        on_hand=record.on_hand, previous_available=record.previous_available, replay=outcome.replay, at=now))
    return MovementOutputs(record, entry, sale_reference, sale_cost)


def reservation_key(order_id: str, line_id: str | None) -> str:
    return f"{order_id}#{line_id or ''}"


@dataclass
class _Change:
    """The mutable working copy of one application; turned into a Position and Applied at the end."""

    p: Position
    m: Movement
    ctx: PositionContext
    on_hand_delta: int = 0
    late_quantity: int = 0
    count_difference: int = 0
    unit_cost: Decimal | None = None
    unmatched: int = 0
    lost_in_transit: int = 0
    found_after_close: int = 0
    revalued_quantity: int = 0
    cost_adjustment: Decimal = Decimal(0)
    follow_ups: list[Movement] = field(default_factory=list)

    def move_on_hand(self, delta: int) -> None:
        """Change on_hand unless a cycle count taken after this movement already saw it."""
        if self.is_late():
            self.late_quantity += delta
        else:
            self.p.on_hand += delta
            self.on_hand_delta += delta

    def is_late(self) -> bool:
        last = self.p.last_count_at
        return last is not None and self.m.movement_type in _DELTA_TYPES and self.m.occurred_at < last

    def outflow_cost(self) -> Decimal | None:
        return current_cost(self.p.avg_cost, self.ctx.standard_cost)

    def inflow(self, quantity: int, unit_cost: Decimal | None) -> None:
        """Units come in at a cost: value them and move the average like a receipt (SPEC §5.1)."""
        held_cost = self.outflow_cost()  # before any receipt, stock on hand is held at standard cost
        cost = unit_cost if unit_cost is not None else held_cost
        self.unit_cost = cost
        before = self.p.on_hand
        self.move_on_hand(quantity)
        if cost is not None and self.on_hand_delta > 0:
            self.p.avg_cost = average_after_inflow(before, held_cost, quantity, cost)
            self.revalue_negative(before, held_cost, cost)

    def revalue_negative(self, before: int, held_cost: Decimal | None, cost: Decimal) -> None:
        """Units that cover a negative on_hand left at `held_cost` but are now known to cost `cost`.

        The inventory account was credited at `held_cost` when they left (nothing at all when no cost
        was known) and is debited at `cost` now; the average restarts at `cost` (negative stock carries
        no value), so the difference goes to cost of goods sold to keep 1200 == on_hand x avg. An
        inflow too small to cover all of it leaves the rest negative at the new average too, so every
        unit that was negative is revalued, not only the covered ones.
        """
        covered = max(-before, 0)
        if covered == 0:
            return
        difference = cost - (held_cost if held_cost is not None else Decimal(0))
        if difference:
            self.revalued_quantity = covered
            self.cost_adjustment = covered * difference

    def taken(self, held: int, quantity: int) -> int:
        """How many of `quantity` units a floored bucket holding `held` gives; flag what it did not hold."""
        taken = min(max(held, 0), quantity)
        self.unmatched += quantity - taken
        return taken


def _sale(c: _Change) -> None:
    c.unit_cost = c.outflow_cost()
    c.move_on_hand(-c.m.quantity)


def _fulfil(c: _Change) -> None:
    remaining = c.m.quantity
    for key in _matching_reservations(c.p, c.m):
        open_reservation = c.p.reservations[key]
        taken = min(open_reservation.quantity, remaining)
        remaining -= taken
        c.p.reserved -= taken
        if taken == open_reservation.quantity:
            del c.p.reservations[key]
        else:
            c.p.reservations[key] = open_reservation.model_copy(update={"quantity": open_reservation.quantity - taken})
        if remaining == 0:
            break
    # The goods left the building whether or not we knew of the order: never reject a physical event.
    c.unmatched = remaining
    _sale(c)


def _matching_reservations(p: Position, m: Movement) -> list[str]:
    if m.order_id is None:
        return []
    if m.order_line_id is not None:
        key = reservation_key(m.order_id, m.order_line_id)
        return [key] if key in p.reservations else []
    # POS pickups know the order but not its line ids: consume that order's lines for this SKU.
    return [k for k, r in p.reservations.items() if r.order_id == m.order_id]


def _return(c: _Change) -> None:
    cost = c.ctx.original_sale_cost if c.ctx.original_sale_cost is not None else None
    c.inflow(c.m.quantity, cost)
    if c.m.inspection_required:
        c.p.quality_control += c.m.quantity


def _reserve(c: _Change) -> None:
    key = reservation_key(c.m.order_id or c.m.source_event_id, c.m.order_line_id)
    if key in c.p.reservations:
        return  # the order was re-sent under another event id: a reservation is held once
    c.p.reservations[key] = OpenReservation(order_id=c.m.order_id or c.m.source_event_id,
                                            line_id=c.m.order_line_id, quantity=c.m.quantity,
                                            expires_at=c.m.expires_at)
    c.p.reserved += c.m.quantity


def _release(c: _Change) -> None:
    keys = _matching_reservations(c.p, c.m)
    for key in keys:
        c.p.reserved -= c.p.reservations.pop(key).quantity


def _receipt(c: _Change) -> None:
    c.inflow(c.m.quantity, c.m.unit_cost)


def _transfer_out(c: _Change) -> None:
    if c.m.role is Role.DESTINATION:
        _arrive_in_transit(c)
        return
    c.unit_cost = c.outflow_cost()
    c.move_on_hand(-c.m.quantity)
    c.follow_ups.extend(_derived_movements(c.m, c.unit_cost))


def _derived_movements(m: Movement, unit_cost: Decimal | None) -> list[Movement]:
    """The destination's in-transit leg of a transfer out: derived at the origin, the only one that knows the cost."""
    if m.movement_type is not MovementType.TRANSFER_OUT or m.role is Role.DESTINATION or not m.counterparty_location:
        return []
    return [m.model_copy(update={
        "movement_id": m.movement_id.rsplit(":", 1)[0] + ":" + Role.DESTINATION.value,
        "role": Role.DESTINATION,
        "location_id": m.counterparty_location,
        "counterparty_location": m.location_id,
        "unit_cost": unit_cost,
    })]


def _transfer_key(m: Movement) -> str:
    return m.transfer_id or m.correlation_id


def _arrive_in_transit(c: _Change) -> None:
    key = _transfer_key(c.m)
    transit = c.p.transfers.get(key, InTransitTransfer(quantity=0))
    _set_transit(c.p, key, InTransitTransfer(quantity=transit.quantity + c.m.quantity, unit_cost=c.m.unit_cost))
    c.p.in_transit += c.m.quantity
    c.unit_cost = c.m.unit_cost


def _transfer_in(c: _Change) -> None:
    key = _transfer_key(c.m)
    closed = mark_of(key)
    if key not in c.p.transfers and closed in c.p.closed_transfers:
        # The transfer was closed and its remainder written off: these units are found, at the cost
        # they were written off at; nothing is in transit any more (SPEC silent; README decisions).
        c.inflow(c.m.quantity, c.p.closed_transfers[closed])
        c.found_after_close = c.m.quantity
        return
    transit = c.p.transfers.get(key, InTransitTransfer(quantity=0))
    # A receipt that overtakes its in-transit leg leaves the transit negative until the leg arrives.
    _set_transit(c.p, key, transit.model_copy(update={"quantity": transit.quantity - c.m.quantity}))
    c.p.in_transit -= c.m.quantity
    carried = transit.unit_cost if transit.unit_cost is not None else c.m.unit_cost
    c.inflow(c.m.quantity, carried)


def _set_transit(p: Position, key: str, transit: InTransitTransfer) -> None:
    if transit.quantity == 0:
        p.transfers.pop(key, None)
    else:
        p.transfers[key] = transit


def _count(c: _Change) -> None:
    c.unit_cost = c.outflow_cost()
    if c.p.last_count_at is not None and c.m.occurred_at < c.p.last_count_at:
        return  # an older count than one already applied says nothing about today's shelf
    c.count_difference = c.m.quantity - c.p.on_hand
    c.on_hand_delta = c.count_difference
    c.p.on_hand = c.m.quantity
    c.p.last_count_at = c.m.occurred_at


_ADJUST_SIGN = {"FOUND": 1, "RECON_GAIN": 1, "SHRINK": -1, "RECON_LOSS": -1}


def _adjust(c: _Change) -> None:
    c.unit_cost = c.outflow_cost()
    if c.m.reason == "DAMAGED":
        c.p.damaged += c.m.quantity  # still on the books, no longer sellable
        return
    if c.m.reason == "WRITE_OFF":
        # Damaged units leave the books. The units physically left even when fewer were known as
        # damaged (never reject a physical event): on_hand moves by all of them, the excess is flagged.
        c.p.damaged -= c.taken(c.p.damaged, c.m.quantity)
        c.move_on_hand(-c.m.quantity)
        return
    if c.m.reason == "REPAIRED":
        c.p.damaged -= c.taken(c.p.damaged, c.m.quantity)  # sellable again; on_hand already counted them
        return
    c.move_on_hand(_ADJUST_SIGN.get(c.m.reason or "", 0) * c.m.quantity)


def _disposition(c: _Change) -> None:
    c.unit_cost = c.outflow_cost()
    c.p.quality_control -= c.taken(c.p.quality_control, c.m.quantity)
    if c.m.reason == "DAMAGED":
        c.p.damaged += c.m.quantity
    elif c.m.reason == "SCRAP":
        c.move_on_hand(-c.m.quantity)


def _transfer_close(c: _Change) -> None:
    """The transfer is over: what is still in transit to this location was lost on the way.

    A remainder of 0 or less (everything arrived, or a receipt overtook its in-transit leg) loses
    nothing. The transfer is forgotten either way, which keeps `transfers` bounded.
    """
    key = _transfer_key(c.m)
    transit = c.p.transfers.pop(key, None)
    if transit is None:
        c.unmatched = c.m.quantity
        return
    c.unit_cost = transit.unit_cost if transit.unit_cost is not None else c.outflow_cost()
    # Forgotten with its whole share of in_transit: a negative remainder (a receipt that overtook
    # the leg) left in_transit below the sum of the open transfers for good.
    c.p.in_transit -= transit.quantity
    if transit.quantity > 0:
        c.lost_in_transit = transit.quantity
    forget_oldest(c.p.closed_transfers, lambda _: 0, 0, room_for=CLOSED_TRANSFERS_KEPT)
    c.p.closed_transfers[mark_of(key)] = c.unit_cost


_RULES = {
    MovementType.SALE: _sale,
    MovementType.FULFIL: _fulfil,
    MovementType.RETURN: _return,
    MovementType.RESERVE: _reserve,
    MovementType.RELEASE: _release,
    MovementType.RECEIPT: _receipt,
    MovementType.TRANSFER_OUT: _transfer_out,
    MovementType.TRANSFER_IN: _transfer_in,
    MovementType.COUNT: _count,
    MovementType.ADJUST: _adjust,
    MovementType.DISPOSITION: _disposition,
    MovementType.TRANSFER_CLOSE: _transfer_close,
}


def new_position(sku: str, location_id: str) -> Position:
    return Position(sku=sku, location_id=location_id)


def apply(position: Position, movement: Movement, ctx: PositionContext) -> Outcome:
    """Apply one movement; idempotent by movement id, never rejects a physical event."""
    previous_available = position.available
    mark = mark_of(movement.movement_id)
    if mark in position.applied:
        return _duplicate_or_replay(position, movement, mark, ctx)

    if mark in position.rejected and not ctx.dlq_replay:
        return _unknown_reservation(position, movement, previous_available, again=True)
    p = working_copy(position)
    if movement.movement_type is MovementType.RELEASE and not _matching_reservations(p, movement):
        if movement.role is Role.EXPIRY:
            return Outcome(position, duplicate=True, previous_available=previous_available)
        # It may have raced ahead of its RESERVE from another topic: dead-letter it for replay. The
        # answer is remembered: the same movement delivered again (a crash before the commit, a
        # producer's re-send) must not find the RESERVE that arrived meanwhile and apply after all,
        # or the outcome would depend on when a worker died.
        forget_oldest(p.rejected, lambda rejected_at: rejected_at, ctx.now_epoch - ctx.dedupe_retention,
                      room_for=ctx.rejected_keep)
        p.rejected[mark] = ctx.now_epoch
        return _unknown_reservation(p, movement, previous_available)
    if movement.movement_type is MovementType.RESERVE and not _room_for_reservation(p, movement, ctx):
        return Outcome(position, previous_available=previous_available, rejection=Rejection(
            error_code=ErrorCode.TOO_LARGE,
            error_detail=f"{movement.sku} at {movement.location_id} holds {len(p.reservations)} open reservations, "
                         f"their limit ({ctx.reservations_bytes} bytes): release or fulfil some, then replay this"))
    p.rejected.pop(mark, None)   # a DLQ replay that now finds its reservation

    p.safety_stock = ctx.safety_stock
    change = _Change(p, movement, ctx)
    _RULES[movement.movement_type](change)
    p.version += 1
    _remember(p, mark, movement.occurred_at, change.on_hand_delta, ctx)

    applied = Applied(
        movement=movement, legal_entity=ctx.legal_entity, version=p.version,
        on_hand_delta=change.on_hand_delta, late_quantity=change.late_quantity,
        count_difference=change.count_difference, unit_cost=change.unit_cost,
        avg_cost_after=p.avg_cost, on_hand_after=p.on_hand, unmatched_quantity=change.unmatched,
        lost_in_transit=change.lost_in_transit, found_after_close=change.found_after_close,
        revalued_quantity=change.revalued_quantity,
        cost_adjustment=change.cost_adjustment,
    )
    _keep_emitted(p, mark, previous_available, ctx, {name: getattr(applied, name) for name in _KEPT_FOR_REPLAY})
    return Outcome(p, applied=applied, follow_ups=change.follow_ups, previous_available=previous_available,
                   as_emitted=p)


def apply_location_change(position: Position, change: LocationChange, ctx: PositionContext) -> Outcome:
    """The position's location changed its safety stock or channels (SPEC §3 "Master data changes
    reach the channels"): show the position again, with a new version and the new safety stock, so
    the channel sums follow without waiting for the SKU's next movement.

    Nothing moved: no bucket but safety_stock changes, no Applied (nothing to post). The change id is
    remembered like a movement id, so a redelivered control record bumps no version twice; a replay
    of the very record that applied it emits the same record again (see Emitted).
    """
    mark = mark_of(change.change_id)
    if mark in position.applied:
        kept = _kept_for_replay(position, mark, ctx)
        if kept is None:
            return Outcome(position, duplicate=True, previous_available=position.available)
        return Outcome(position, duplicate=True, replay=True, as_emitted=_as_emitted(position, kept),
                       previous_available=kept.previous_available)
    previous_available = position.available
    p = working_copy(position)
    p.safety_stock = change.safety_stock
    p.version += 1
    _remember(p, mark, change.occurred_at, 0, ctx)
    _keep_emitted(p, mark, previous_available, ctx, {"version": p.version, "on_hand_delta": 0})
    return Outcome(p, previous_available=previous_available, as_emitted=p)


# The fields of Applied that an Emitted keeps, to rebuild the same Applied for a replay.
_KEPT_FOR_REPLAY = ("version", "on_hand_delta", "late_quantity", "count_difference", "unit_cost", "avg_cost_after",
                    "unmatched_quantity", "lost_in_transit", "found_after_close", "revalued_quantity",
                    "cost_adjustment")


def _keep_emitted(p: Position, mark: str, previous_available: int, ctx: PositionContext, kept: dict) -> None:
    """Keep what this movement (or location change) emits, for a replay of its record (see Emitted);
    forget old ones. `kept` holds the Emitted fields of _KEPT_FOR_REPLAY the record needs."""
    if ctx.source_record is None:
        return
    forget_oldest(p.emitted, lambda kept: kept.at, ctx.now_epoch - ctx.replay_window, room_for=ctx.replay_keep)
    p.emitted[mark] = Emitted(
        record=ctx.source_record, at=ctx.now_epoch, previous_available=previous_available,
        buckets=(p.on_hand, p.reserved, p.quality_control, p.damaged, p.in_transit, p.safety_stock), **kept)


def _unknown_reservation(position: Position, movement: Movement, previous_available: int, *,
                         again: bool = False) -> Outcome:
    detail = (f"no open reservation for order {movement.order_id!r} line {movement.order_line_id!r} "
              f"of {movement.sku} at {movement.location_id}")
    if again:
        detail += " when this movement first arrived; replay it from the DLQ to look again"
    return Outcome(position, previous_available=previous_available,
                   rejection=Rejection(error_code=ErrorCode.UNKNOWN_RESERVATION, error_detail=detail))


def _duplicate_or_replay(position: Position, movement: Movement, mark: str, ctx: PositionContext) -> Outcome:
    """An applied movement again. From another Kafka record: a producer's re-send, nothing to do.
    From the very record that applied it: the worker stopped after saving the position but maybe
    before Kafka had its outputs, so everything it emitted is rebuilt, exactly, to be emitted again."""
    kept = _kept_for_replay(position, mark, ctx)
    if kept is None:
        return Outcome(position, duplicate=True, previous_available=position.available)
    as_emitted = _as_emitted(position, kept)
    applied = Applied(movement=movement, legal_entity=ctx.legal_entity, on_hand_after=as_emitted.on_hand,
                      **{name: getattr(kept, name) for name in _KEPT_FOR_REPLAY})
    return Outcome(position, applied=applied, duplicate=True, replay=True, as_emitted=as_emitted,
                   follow_ups=_derived_movements(movement, kept.unit_cost), previous_available=kept.previous_available)


def _kept_for_replay(position: Position, mark: str, ctx: PositionContext) -> Emitted | None:
    """What an applied record emitted, when the record now delivered is the very one that applied it."""
    kept = position.emitted.get(mark)
    if kept is None or ctx.source_record is None or kept.record != ctx.source_record:
        return None
    return kept


def _as_emitted(position: Position, kept: Emitted) -> Position:
    on_hand, reserved, quality_control, damaged, in_transit, safety_stock = kept.buckets
    return position.model_copy(update={
        "on_hand": on_hand, "reserved": reserved, "quality_control": quality_control, "damaged": damaged,
        "in_transit": in_transit, "safety_stock": safety_stock, "version": kept.version})


def _remember(p: Position, mark: str, occurred_at: datetime, on_hand_delta: int, ctx: PositionContext) -> None:
    """Mark the movement applied (with its on_hand effect, for reconciliation) and forget old marks:
    a re-send is recognised for DEDUPE_RETENTION or the key's last `applied_keep` movements."""
    forget_oldest(p.applied, lambda kept: kept[0], ctx.now_epoch - ctx.dedupe_retention, room_for=ctx.applied_keep)
    p.applied[mark] = [ctx.now_epoch, int(occurred_at.timestamp()), on_hand_delta]


def _reservation_bytes(key: str, reservation: OpenReservation) -> int:
    # As stored: the key, the order and line ids again in the value, and ~90 bytes of JSON around them.
    return len(key) + len(reservation.order_id) + len(reservation.line_id or "") + 90


def _room_for_reservation(p: Position, m: Movement, ctx: PositionContext) -> bool:
    """Open reservations are business state, not a cache: none is forgotten to make room. A position
    whose reservations fill their budget refuses one more (a dead letter, replayable once some close)."""
    key = reservation_key(m.order_id or m.source_event_id, m.order_line_id)
    if key in p.reservations:
        return True
    held = sum(_reservation_bytes(k, r) for k, r in p.reservations.items())
    wanted = _reservation_bytes(key, OpenReservation(order_id=m.order_id or m.source_event_id,
                                                     line_id=m.order_line_id, quantity=m.quantity))
    return held + wanted <= ctx.reservations_bytes


def on_hand_as_of(position: Position, as_of: datetime) -> int:
    """on_hand as it stood at `as_of`: take back the remembered movements that happened after it."""
    cutoff = as_of.timestamp()
    return position.on_hand - sum(delta for _, occurred, delta in position.applied.values() if occurred > cutoff)


# Whether a position's stored JSON may hold a reservation: most positions hold none, and the
# expiry sweep reads every one.
may_hold_reservations = holds_entries("reservations")


def expiry_movements(position: Position, now: datetime) -> list[Movement]:
    """RELEASE movements for reservations past their expiry (RESERVATION_TTL after the order)."""
    return [
        build_movement(
            # The expiry time is part of the id: a line reserved here again later must lapse again.
            source=SourceSystem.PIPELINE,
            source_event_id=f"expiry:{r.order_id}:{r.line_id or ''}:{int(r.expires_at.timestamp())}",
            line=position.location_id, role=Role.EXPIRY, movement_type=MovementType.RELEASE,
            sku=position.sku, location_id=position.location_id, quantity=r.quantity,
            correlation_id=r.order_id, occurred_at=r.expires_at, order_id=r.order_id,
            order_line_id=r.line_id, reason="EXPIRED",
        )
        for r in position.reservations.values()
        if r.expires_at is not None and r.expires_at <= now
    ]
