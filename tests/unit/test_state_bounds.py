"""State stays bounded in bytes whatever the traffic on one key (SPEC §4): 20,000 movements through
one position and 20,000 postings through one store day, with ids at the length limit."""
from __future__ import annotations

from decimal import Decimal

from app.domain.marks import MARK_CHARS
from app.domain.day_batches import COUNTED_KEEP, LISTED_POSTING_IDS, add_pos_totals, add_posting, close_day
from app.domain.positions import PositionContext, apply, new_position
from app.domain.sale_costs import parse_sale_cost, sale_cost_expired, sale_cost_value
from app.models.records import ErrorCode
from tests.unit.test_day_batches import CLOSED_AT, balanced, sale_postings, store_day
from tests.unit.test_positions import (
    NOW_EPOCH, WEEK, adjust, count, fulfil, receipt, release, reserve, ret, sale,
)

LIMIT = 256 * 1024
LONG = "X" * 100   # ids near the 128-character limit make the worst case


def _size(model) -> int:
    return len(model.model_dump_json())


def _traffic(n: int):
    """A hot key's day and more: receipts, sales, returns, counts, adjustments, orders that are fulfilled
    or released, orders that stay open, and releases of orders never seen (remembered as rejected)."""
    for i in range(n):
        event = f"{LONG}-{i}"
        match i % 10:
            case 0: yield receipt(50, "7.10", event=event)
            case 1 | 2: yield sale(1, event=event)
            case 3: yield reserve(1, f"{LONG}-order-{i}", "1", event=event)
            case 4: yield fulfil(1, f"{LONG}-order-{i - 1}", "1", event=event)
            case 5: yield reserve(1, f"{LONG}-open-{i}", "1", event=event)   # never closed
            case 6: yield release(1, f"{LONG}-unknown-{i}", "1", event=event)
            case 7: yield ret(1, event=event)
            case 8: yield adjust(1, "SHRINK", event=event)
            case 9: yield count(100, event=event) if i % 1000 == 9 else sale(1, event=event)


def test_a_position_stays_under_256_kib_through_20000_movements_and_still_recognises_recent_resends():
    position = new_position("SKU-1001", "S042")
    largest, refused_reservations, sizes = 0, 0, []
    recent = []
    for n, movement in enumerate(_traffic(20_000)):
        # One movement a minute: the dedupe window (7 days) never forgets by time here, only by count.
        ctx = PositionContext(now_epoch=NOW_EPOCH + 60 * n, dedupe_retention=WEEK, standard_cost=Decimal("7.00"),
                              legal_entity="US01", source_record=f"0@{n}")
        outcome = apply(position, movement, ctx)
        if outcome.rejection is not None and outcome.rejection.error_code is ErrorCode.TOO_LARGE:
            refused_reservations += 1
        position = outcome.position
        if outcome.applied is not None:
            recent = [*recent[-99:], (movement, ctx)]
        if n % 250 == 0 or n > 19_900:
            sizes.append(_size(position))
            largest = max(largest, sizes[-1])
    print(f"\nposition after 20,000 movements: {_size(position):,} bytes, largest seen {largest:,} bytes; "
          f"{len(position.applied)} applied marks, {len(position.reservations)} open reservations, "
          f"{len(position.rejected)} rejected marks, {len(position.emitted)} kept for replay; "
          f"{refused_reservations} reservations refused as TOO_LARGE")
    assert largest < LIMIT
    assert refused_reservations > 0   # 2,000 orders left open: the budget was reached and said so
    for movement, ctx in recent:      # a producer re-sends the last 100 movements: nothing changes
        again = apply(position, movement, ctx.__class__(**{**ctx.__dict__, "source_record": "9@9"}))
        assert again.duplicate and not again.replay and again.position is position


def test_a_resend_within_the_last_2000_movements_of_a_key_is_a_duplicate_and_older_ones_are_forgotten():
    position = new_position("SKU-1001", "S042")
    ctx = PositionContext(now_epoch=NOW_EPOCH, dedupe_retention=WEEK, applied_keep=2000)
    first = receipt(1, "7.10", event="first")
    position = apply(position, first, ctx).position
    for i in range(1998):
        position = apply(position, sale(1, event=f"s-{i}"), ctx).position
    assert apply(position, first, ctx).duplicate          # 1,999 movements later: still known
    position = apply(position, sale(1, event="one-more"), ctx).position
    position = apply(position, sale(1, event="and-another"), ctx).position
    assert not apply(position, first, ctx).duplicate      # 2,001 later: beyond the documented bound
    assert len(position.applied) == 2000


def test_a_store_day_with_20000_postings_stays_under_256_kib_and_its_batch_covers_them_all():
    ledger = store_day()
    largest = 0
    ids = []
    for i in range(10_000):
        for posting in sale_postings(line=f"{LONG}-{i}", quantity=1, source_event_id=f"{LONG}-T{i}"):
            ledger = add_posting(ledger, posting)
            ids.append(posting.posting_id)
        ledger = add_pos_totals(ledger, 1, Decimal("21.59"), f"{LONG}-T{i}")
        if i % 500 == 0:
            largest = max(largest, _size(ledger))
    largest = max(largest, _size(ledger))
    again = add_posting(ledger, sale_postings(line=f"{LONG}-9999", quantity=1, source_event_id=f"{LONG}-T9999")[0])
    assert again is ledger                                   # a recent re-delivery counts once
    closed, batch = close_day(ledger, CLOSED_AT)
    print(f"\nday ledger with {len(ids):,} postings: {_size(ledger):,} bytes (largest {largest:,}); "
          f"batch {len(batch.model_dump_json()):,} bytes listing {len(batch.posting_ids)} ids of {batch.posting_count}")
    assert largest < LIMIT and len(batch.model_dump_json()) < LIMIT
    assert len(ledger.counted_postings) == COUNTED_KEEP * MARK_CHARS
    assert batch.posting_count == 20_000 and batch.posting_ids == ids[:LISTED_POSTING_IDS]
    from app.domain.day_batches import posting_digest_of
    assert batch.posting_digest == posting_digest_of(list(reversed(ids)))   # order-free
    assert balanced(batch) and batch.control["units_difference"] == "0"
    assert _size(closed) < LIMIT


# --- bulk restore: which changelog range a partition still needs ---------------------------------------

def test_a_bulk_restore_reads_from_after_the_persisted_offset_to_the_end_and_skips_what_is_current():
    from tables.restore import RestorePlan, plan_restore
    ends = {"p0": 100, "p1": 50, "p2": 10, "p3": 0}
    persisted = {"p0": 39, "p1": 49, "p2": None}
    earliest = {"p0": 0, "p1": 0, "p2": 4, "p3": 0}   # p2's first records were compacted or deleted away
    assert plan_restore(persisted, earliest, ends) == {"p0": RestorePlan(40, 100), "p2": RestorePlan(4, 10)}


def test_a_sale_cost_is_kept_for_the_return_window_then_forgotten():
    written = NOW_EPOCH
    value = sale_cost_value(Decimal("7.1234"), written)
    assert parse_sale_cost(value) == (Decimal("7.1234"), written)
    ninety_days = 90 * 86400
    assert not sale_cost_expired(value, written + ninety_days - 1, ninety_days)
    assert sale_cost_expired(value, written + ninety_days, ninety_days)


def test_a_sale_cost_written_without_its_time_is_forgotten_at_the_first_sweep():
    # Values from before the time was kept: still read as a cost, and forgotten by the next sweep.
    assert parse_sale_cost(b"6.50") == (Decimal("6.50"), 0)
    assert sale_cost_expired(b"6.50", NOW_EPOCH, 90 * 86400)
    assert parse_sale_cost(b"garbage") == (None, 0)
