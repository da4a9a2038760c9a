"""Hostile and careless input (SPEC §4): every record is mapped or gets one clear code, never an exception,
and whatever passes the edge can be applied, valued and posted without raising."""
from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.domain.accounts import parse_chart_overrides
from app.domain.availability import availability_record
from app.domain.dead_letters import KEEP_RAW_BYTES, raw_for_letter
from app.domain.positions import PositionContext, apply, new_position
from app.domain.postings import postings_for
from app.domain.reconciliation import parse_snapshot
from app.models.canonical import Applied, Movement
from app.models.records import ErrorCode, Rejection
from tests.unit.test_mapping import (
    ECOM, INSPECTIONS, MARKETPLACE, MASTER, OMS, POS, WMS, ecom_order, inspection, map_, marketplace_order,
    oms_event, pos_line, pos_txn, rejected, wms_event, wms_line,
)

FAR = "9999-12-31T00:00:00Z"


@pytest.mark.parametrize("topic, payload, code", [
    (POS, pos_txn(lines=[pos_line(unit_price="1e30")]), ErrorCode.OUT_OF_RANGE),
    (POS, pos_txn(lines=[pos_line(tax="1E+1000000")], tenders=[]), ErrorCode.OUT_OF_RANGE),
    (POS, pos_txn(lines=[pos_line(discount="0.00001")]), ErrorCode.OUT_OF_RANGE),
    (POS, pos_txn(lines=[pos_line(quantity=1_000_001)]), ErrorCode.OUT_OF_RANGE),
    (POS, pos_txn(lines=[pos_line(line_no=10**12)]), ErrorCode.OUT_OF_RANGE),
    (POS, pos_txn(business_date="1999-12-31"), ErrorCode.OUT_OF_RANGE),
    (ECOM, ecom_order(occurred_at=FAR), ErrorCode.OUT_OF_RANGE),
    (MARKETPLACE, marketplace_order(occurred_at=FAR), ErrorCode.OUT_OF_RANGE),
    (OMS, oms_event(occurred_at=FAR), ErrorCode.OUT_OF_RANGE),
    (WMS, wms_event(lines=[wms_line(unit_cost="1e30")]), ErrorCode.OUT_OF_RANGE),
    (WMS, wms_event(event_id="E" * 8192, lines=[wms_line()] * 150), ErrorCode.TOO_LARGE),
    (WMS, wms_event(lines=[wms_line()] * 1001), ErrorCode.TOO_LARGE),
    (INSPECTIONS, inspection(location_id="L" * 129), ErrorCode.TOO_LARGE),
    (POS, pos_txn(lines=[pos_line(unit_price="NaN")], tenders=[]), ErrorCode.SCHEMA_INVALID),
    (POS, pos_txn(lines=[pos_line(quantity="two")], tenders=[]), ErrorCode.SCHEMA_INVALID),
])
def test_values_beyond_the_limits_get_their_own_code(topic, payload, code):
    assert rejected(topic, payload).error_code is code


def test_a_record_over_the_size_limit_is_too_large_before_it_is_parsed():
    raw = orjson.dumps(pos_txn(register_id="R" * (600 * 1024)))
    rejection = rejected(POS, raw)
    assert rejection.error_code is ErrorCode.TOO_LARGE
    assert "bytes" in rejection.error_detail


def test_an_oversized_event_id_still_names_the_letter_but_cut_to_the_identifier_limit():
    rejection = rejected(WMS, wms_event(event_id="E" * 8192))
    assert rejection.source_event_id == "E" * 128


def test_an_erp_snapshot_dated_year_9999_is_out_of_range():
    raw = orjson.dumps({"snapshot_id": "snap-1", "location_id": "S042", "as_of": FAR, "balances": []})
    snapshot = parse_snapshot(raw)
    assert isinstance(snapshot, Rejection) and snapshot.error_code is ErrorCode.OUT_OF_RANGE


def test_invalid_utf8_is_malformed_json():
    assert rejected(POS, b'{"transaction_id": "\xff\xfe"}').error_code is ErrorCode.MALFORMED_JSON


# --- dead letters always fit ----------------------------------------------------------------------

@pytest.mark.parametrize("raw", [
    b"\x01" * (900 * 1024),            # control characters: 6 bytes each once escaped
    b"\xff" * (1000 * 1024),           # invalid UTF-8: 3 bytes each once replaced
    "é".encode() * 400_000,
])
def test_a_dead_letter_keeps_at_most_256_kib_of_the_raw_value_with_its_size_and_digest(raw):
    kept = raw_for_letter(raw)
    assert kept.truncated
    assert len(orjson.dumps(kept.text)) <= KEEP_RAW_BYTES
    assert kept.size == len(raw)
    import hashlib
    assert kept.sha256 == hashlib.sha256(raw).hexdigest()


def test_a_small_raw_value_is_kept_whole():
    kept = raw_for_letter(b'{"a": 1}')
    assert (kept.text, kept.truncated, kept.size) == ('{"a": 1}', False, 8)


# --- whatever passes the edge goes through every later stage ----------------------------------------

CHARTS = parse_chart_overrides("")
NOW = datetime.now(UTC)
MAX_MONEY = Decimal("999999999999.9999")
money = st.one_of(st.just(MAX_MONEY), st.just(Decimal("0.0001")), st.just(Decimal("0")),
                  st.decimals(min_value=0, max_value=MAX_MONEY, places=4, allow_nan=False))
quantity = st.integers(min_value=1, max_value=1_000_000)
when = st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2035, 12, 31)).map(
    lambda d: d.replace(tzinfo=UTC).isoformat())


def _through_every_stage(movements: list[Movement]) -> None:
    position = None
    for m in movements:
        position = position or new_position(m.sku, m.location_id)
        ctx = PositionContext(now_epoch=int(NOW.timestamp()), dedupe_retention=604800,
                              standard_cost=Decimal("7.00"), legal_entity="US01", source_record="0@1")
        outcome = apply(position, m, ctx)
        position = outcome.position
        if outcome.applied is not None:
            availability_record(outcome.as_emitted, outcome.previous_available, m, NOW)
            postings_for(outcome.applied, MASTER.location(m.location_id), CHARTS, NOW)
            Applied.model_validate_json(outcome.applied.model_dump_json())


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(price=money, tax=money, discount=money, q=quantity, at=when, cost=money,
       kind=st.sampled_from(["SALE", "RETURN"]))
def test_extreme_values_within_the_limits_never_raise_downstream(price, tax, discount, q, at, cost, kind):
    receipt = map_(WMS, wms_event(occurred_at=at, lines=[wms_line(quantity=q, unit_cost=str(cost))]))
    sale = map_(POS, pos_txn(type=kind, occurred_at=at, lines=[pos_line(
        quantity=q, unit_price=str(price), tax=str(tax), discount=str(discount))], tenders=[]))
    for result in (receipt, sale):
        if isinstance(result, Rejection):
            assert result.error_code in set(ErrorCode)
            continue
        _through_every_stage(result.movements)


json_value = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=40),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12)


BASES = {POS: pos_txn(), ECOM: ecom_order(), MARKETPLACE: marketplace_order(), OMS: oms_event(), WMS: wms_event(),
         INSPECTIONS: inspection()}


@settings(max_examples=400, deadline=None)
@given(topic=st.sampled_from(sorted(BASES)), data=st.data(), value=json_value, in_line=st.booleans())
def test_any_field_set_to_any_json_value_maps_or_is_rejected_never_raises(topic, data, value, in_line):
    payload = dict(BASES[topic])
    lines_key = "items" if topic == MARKETPLACE else "lines"
    if in_line and lines_key in payload:
        line = dict(payload[lines_key][0])
        line[data.draw(st.sampled_from(sorted(line)))] = value
        payload[lines_key] = [line]
    else:
        payload[data.draw(st.sampled_from(sorted(payload)))] = value
    # The standard library's encoder: it writes what orjson refuses (integers beyond 64 bits, NaN).
    result = map_(topic, json.dumps(payload).encode())
    if not isinstance(result, Rejection):
        _through_every_stage(result.movements)


def test_a_failed_delivery_stops_the_worker_before_any_commit_passes_it():
    from agents.outputs import EXIT_LOST_DELIVERY, stop_if_lost
    loop = asyncio.new_event_loop()
    try:
        exits: list[int] = []
        failed = loop.create_future()
        failed.set_exception(RuntimeError("TopicAuthorizationFailed"))
        stop_if_lost(failed, "inventory.availability", exit_=exits.append)
        delivered = loop.create_future()
        delivered.set_result(object())
        stop_if_lost(delivered, "inventory.availability", exit_=exits.append)
        cancelled = loop.create_future()
        cancelled.cancel()
        stop_if_lost(cancelled, "inventory.availability", exit_=exits.append)
        assert exits == [EXIT_LOST_DELIVERY]
    finally:
        loop.close()


def test_kafka_trouble_is_retried_but_a_record_too_large_for_kafka_is_the_records_fault():
    from aiokafka.errors import KafkaTimeoutError, MessageSizeTooLargeError

    from agents.streams import is_transient
    assert is_transient(KafkaTimeoutError())
    assert is_transient(ConnectionResetError())
    assert not is_transient(MessageSizeTooLargeError())
    assert not is_transient(ValueError("bad"))
    assert not is_transient(OverflowError("date value out of range"))


# --- replay re-sends only what came in, byte for byte ---------------------------------------------

@pytest.mark.parametrize("raw, whole", [
    (b'{"transaction_id": "T1"}', True),
    ("é".encode() * 10, True),
    (b'{"transaction_id": "\xff\xfe"}', False),      # invalid UTF-8, replaced in the letter
    (b"x" * (300 * 1024), False),                     # cut beyond 256 KiB
])
def test_only_a_letter_that_holds_its_record_byte_for_byte_is_replayable(raw, whole):
    from app.domain.dead_letters import replayable
    kept = raw_for_letter(raw)
    letter = {"raw_value": kept.text, "raw_sha256": kept.sha256, "raw_truncated": kept.truncated}
    assert replayable(letter) is whole
    assert replayable({"raw_value": kept.text}) is True   # older letters without a digest were whole
