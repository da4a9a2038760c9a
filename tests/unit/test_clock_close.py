"""SPEC §5.3: days of locations without a POS close by the clock, in the location's time zone."""
from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import orjson
import pytest
from hypothesis import given, strategies as st
from pydantic import ValidationError

from app.domain.day_batches import (
    close_after_grace_due, close_day, due_to_close_by_clock, due_to_forget, end_of_business_date,
    late_batch_due, open_day, reopen_day, status_of,
)
from app.models.records import json_bytes
from app.domain.master import InMemoryMasterData
from app.domain.sources import SOURCES, Mapped, MappingContext, map_raw
from app.models.raw import Location, LocationType
from tests.factories import make_item, make_location

DAY = date(2026, 11, 27)
TWO_HOURS = 7200.0
WEEK = 604800.0


def test_a_utc_day_is_due_two_hours_after_its_midnight():
    ledger = open_day("US01", "DC1", DAY)
    assert not due_to_close_by_clock(ledger, "UTC", datetime(2026, 11, 28, 1, 59, 59, tzinfo=UTC), TWO_HOURS)
    assert due_to_close_by_clock(ledger, "UTC", datetime(2026, 11, 28, 2, 0, tzinfo=UTC), TWO_HOURS)


def test_the_locations_time_zone_moves_the_close():
    ledger = open_day("US01", "DC1", DAY)
    # New York is UTC-5 in November: its 27th ends at 05:00 UTC on the 28th, the close is due at 07:00 UTC.
    assert end_of_business_date(DAY, "America/New_York") == datetime(2026, 11, 28, 5, tzinfo=UTC)
    assert not due_to_close_by_clock(ledger, "America/New_York", datetime(2026, 11, 28, 6, 59, tzinfo=UTC), TWO_HOURS)
    assert due_to_close_by_clock(ledger, "America/New_York", datetime(2026, 11, 28, 7, 0, tzinfo=UTC), TWO_HOURS)
    # Tokyo (UTC+9) closes earlier in UTC terms: its 27th ended at 15:00 UTC on the 27th.
    assert due_to_close_by_clock(ledger, "Asia/Tokyo", datetime(2026, 11, 27, 17, 0, tzinfo=UTC), TWO_HOURS)


def test_a_closed_day_or_one_whose_close_is_on_its_way_is_not_due_again():
    later = datetime(2026, 12, 1, tzinfo=UTC)
    closed, _batch = close_day(open_day("US01", "DC1", DAY), later)
    assert not due_to_close_by_clock(closed, "UTC", later, TWO_HOURS)
    requested = open_day("US01", "DC1", DAY).model_copy(update={"close_requested_at": later})
    assert not due_to_close_by_clock(requested, "UTC", later, TWO_HOURS)


def test_closed_days_are_forgotten_after_the_retention_and_open_ones_never():
    closed_at = datetime(2026, 11, 28, 2, tzinfo=UTC)
    closed, _batch = close_day(open_day("US01", "DC1", DAY), closed_at)
    assert not due_to_forget(closed, closed_at + timedelta(seconds=WEEK - 1), WEEK)
    assert due_to_forget(closed, closed_at + timedelta(seconds=WEEK), WEEK)
    assert not due_to_forget(open_day("US01", "S1", DAY), closed_at + timedelta(days=365), WEEK)


def test_a_stores_day_closes_once_its_grace_after_the_day_close_has_passed():
    requested = datetime(2026, 11, 27, 22, tzinfo=UTC)
    day = open_day("US01", "S1", DAY).model_copy(update={"close_requested_at": requested})
    assert not close_after_grace_due(day, requested + timedelta(seconds=4.9), 5.0)
    assert close_after_grace_due(day, requested + timedelta(seconds=5), 5.0)
    assert not close_after_grace_due(open_day("US01", "S1", DAY), requested + timedelta(days=1), 5.0)
    closed, _batch = close_day(day, requested + timedelta(seconds=5))
    assert not close_after_grace_due(closed, requested + timedelta(days=1), 5.0)


moments = st.none() | st.datetimes(min_value=datetime(2026, 11, 27), max_value=datetime(2026, 12, 10),
                                   timezones=st.just(UTC))


@given(closed=st.booleans(), closed_at=moments, requested=moments, late_since=moments,
       listed=st.integers(min_value=0, max_value=1000), now=moments.filter(lambda m: m is not None))
def test_a_days_status_answers_every_close_rule_as_its_ledger_does_in_a_few_hundred_bytes(
        closed, closed_at, requested, late_since, listed, now):
    ledger = open_day("US01", "DC1", DAY).model_copy(update={
        "closed": closed, "closed_at": closed_at, "close_requested_at": requested, "late_since": late_since,
        "posting_ids": [f"POSTING-{n:06d}" for n in range(listed)], "posting_count": listed})
    status = status_of(ledger)
    assert close_after_grace_due(status, now, 5.0) == close_after_grace_due(ledger, now, 5.0)
    assert late_batch_due(status, now, 60.0) == late_batch_due(ledger, now, 60.0)
    assert due_to_close_by_clock(status, "America/New_York", now, TWO_HOURS) == \
        due_to_close_by_clock(ledger, "America/New_York", now, TWO_HOURS)
    assert due_to_forget(status, now, WEEK) == due_to_forget(ledger, now, WEEK)
    assert len(json_bytes(status)) < 300   # what the timers read each second, whatever the day sold
    assert status_of(None) is None


def test_a_posting_for_a_forgotten_day_reopens_it_closed_with_batch_ids_that_cannot_collide():
    recent = reopen_day("US01", "DC1", DAY, "USD", datetime(2026, 11, 29, tzinfo=UTC), WEEK)
    assert not recent.closed and recent.sequence == 0
    now = datetime(2026, 12, 20, tzinfo=UTC)
    old = reopen_day("US01", "DC1", DAY, "USD", now, WEEK)
    assert old.closed and old.sequence == int(now.timestamp())


def test_a_location_has_a_known_iana_time_zone_utc_by_default():
    base = {"location_id": "DC1", "type": "DC", "legal_entity": "US01"}
    assert Location.model_validate(base).timezone == "UTC"
    assert Location.model_validate({**base, "timezone": "Europe/Berlin"}).timezone == "Europe/Berlin"
    with pytest.raises(ValidationError, match="unknown IANA time zone"):
        Location.model_validate({**base, "timezone": "Mars/Olympus"})


def test_a_movement_is_dated_where_it_happened_and_a_till_keeps_its_own_date():
    master = InMemoryMasterData(items=[make_item()], locations=[
        make_location(location_id="DCNY", type=LocationType.DC, timezone="America/New_York"),
        make_location(location_id="S042", timezone="America/New_York")])
    evening = datetime(2026, 11, 28, 2, 30, tzinfo=UTC)  # 21:30 on the 27th in New York
    ctx = MappingContext(master=master, reservation_ttl=timedelta(hours=72), now=evening)
    receipt = {"event_id": "R1", "location_id": "DCNY", "type": "RECEIPT", "occurred_at": "2026-11-28T02:30:00Z",
               "reference": "PO1", "lines": [{"sku": "SKU-1001", "quantity": 5, "uom": "EACH", "unit_cost": "7.00"}]}
    result = map_raw(SOURCES["wms.events"], orjson.dumps(receipt), ctx)
    assert isinstance(result, Mapped)
    assert [m.business_date for m in result.movements] == [DAY]

    sale = {"transaction_id": "T1", "store_id": "S042", "register_id": "R1", "type": "SALE",
            "business_date": "2026-11-28", "occurred_at": "2026-11-28T02:30:00Z", "currency": "USD",
            "order_id": None, "tenders": [{"type": "CARD", "amount": "10.00"}],
            "lines": [{"line_no": 1, "sku": "SKU-1001", "quantity": 1, "unit_price": "10.00"}]}
    result = map_raw(SOURCES["pos.transactions"], orjson.dumps(sale), ctx)
    assert isinstance(result, Mapped)
    assert [m.business_date for m in result.movements] == [date(2026, 11, 28)]
