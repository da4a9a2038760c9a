"""The operator views' own logic, without a broker: lineage entries, the DLQ index, replay requests."""
from __future__ import annotations

from datetime import UTC, datetime, timedelta

from decimal import Decimal

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from app.models.records import TraceFact, TraceStage
from app.web.dlq import INDEX_RAW_CHARS, DeadLetterIndex, ReplayRequest
from app.web.trace import trace_view
from app.domain.lineage import append_fact, fact_line, last_fact_at, read_entry

T0 = datetime(2026, 11, 27, 10, 0, tzinfo=UTC)


def fact(stage: TraceStage, n: int = 0, **detail) -> bytes:
    return TraceFact(source_system="pos", source_event_id="TX-1", stage=stage, at=T0 + timedelta(seconds=n),
                     detail=detail).to_json()


def entry_of(*facts: bytes, limit: int = 200) -> bytes:
    entry = None
    for f in facts:
        entry = append_fact(entry, f, limit)
    return entry


# --- lineage entries -----------------------------------------------------------------------------

def test_facts_are_kept_in_arrival_order():
    facts, dropped = read_entry(entry_of(fact(TraceStage.RECEIVED, 0, movements=1),
                                         fact(TraceStage.MOVEMENT, 1, movement_id="m1"),
                                         fact(TraceStage.APPLIED, 2, movement_id="m1", version=3)))
    assert [f.stage for f in facts] == [TraceStage.RECEIVED, TraceStage.MOVEMENT, TraceStage.APPLIED]
    assert dropped == 0 and facts[2].detail["version"] == 3


detail_values = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-2**70, max_value=2**70) | st.text()
    | st.decimals(allow_nan=False, allow_infinity=False) | st.sampled_from(TraceStage)
    | st.floats(allow_nan=False, allow_infinity=False) | st.datetimes(timezones=st.sampled_from([UTC, None])),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=8)


@settings(max_examples=300, deadline=None)
@given(system=st.text(min_size=1), event_id=st.text(min_size=1), stage=st.sampled_from(TraceStage),
       at=st.datetimes(timezones=st.sampled_from([UTC, None])),
       detail=st.dictionaries(st.text(max_size=10), detail_values, max_size=5))
def test_a_fact_line_is_the_bytes_the_model_writes(system, event_id, stage, at, detail):
    # The stages encode facts without the model (app/domain/lineage.py); the trace view reads them
    # back through it, so both must agree byte for byte, whatever a stage puts in the detail.
    expected = TraceFact(source_system=system, source_event_id=event_id, stage=stage, at=at,
                         detail=detail).model_dump_json().encode()
    assert fact_line(system, event_id, stage, at, detail) == expected


def test_a_fact_line_with_an_int_beyond_64_bits_is_still_written():
    line = fact_line("pos", "TX-1", TraceStage.MOVEMENT, T0, {"quantity": 2**70, "cost": Decimal("1.50")})
    assert orjson.loads(line)["detail"] == {"quantity": 2**70, "cost": "1.50"}


def test_an_entry_is_bounded_and_keeps_the_received_fact_and_the_newest():
    facts, dropped = read_entry(entry_of(fact(TraceStage.RECEIVED, 0),
                                         *(fact(TraceStage.POSTING, n, posting_id=f"p{n}") for n in range(1, 11)),
                                         limit=4))
    assert dropped == 7
    assert facts[0].stage == TraceStage.RECEIVED
    assert [f.detail["posting_id"] for f in facts[1:]] == ["p8", "p9", "p10"]


def test_last_fact_time_drives_retention():
    assert last_fact_at(entry_of(fact(TraceStage.RECEIVED, 0), fact(TraceStage.APPLIED, 30))) == T0 + timedelta(
        seconds=30)


def test_trace_view_answers_the_operators_questions():
    facts, dropped = read_entry(entry_of(
        fact(TraceStage.RECEIVED, 0, movements=1),
        fact(TraceStage.MOVEMENT, 1, movement_id="m1", key="SKU@S1"),
        fact(TraceStage.APPLIED, 2, movement_id="m1", key="SKU@S1", version=4, available=6, on_hand=8),
        fact(TraceStage.DUPLICATE, 3, movement_id="m1", key="SKU@S1"),
        fact(TraceStage.POSTING, 4, posting_id="p1", kind="COGS"),
        fact(TraceStage.FINANCE_EXCEPTION, 5, reason_code="TENDER_MISMATCH")))
    view = trace_view("pos", "TX-1", facts, dropped)
    assert view["received"] is True and view["received_at"].startswith("2026-11-27T10:00:00")
    assert view["availability_records"] == [{"key": "SKU@S1", "version": 4, "available": 6, "on_hand": 8,
                                             "movement_id": "m1"}]
    assert len(view["duplicates_ignored"]) == 1 and view["postings"][0]["kind"] == "COGS"
    assert view["finance_exceptions"][0]["reason_code"] == "TENDER_MISMATCH" and view["dead_letters"] == []


def test_a_dead_lettered_event_is_not_received():
    facts, _ = read_entry(entry_of(fact(TraceStage.DEAD_LETTER, 0, error_code="UNKNOWN_ITEM")))
    view = trace_view("pos", "TX-1", facts, 0)
    assert view["received"] is False and view["dead_letters"][0]["error_code"] == "UNKNOWN_ITEM"


# --- the DLQ index -------------------------------------------------------------------------------

def letter(n: int, code: str = "UNKNOWN_ITEM", topic: str = "pos.transactions") -> dict:
    return {"error_code": code, "source_topic": topic, "source_event_id": f"E{n}", "raw_value": "{}"}


def test_index_counts_everything_but_holds_only_the_newest_window():
    index = DeadLetterIndex(window=3)
    for n in range(5):
        index.add(letter(n, "UNKNOWN_ITEM" if n % 2 else "MALFORMED_JSON"))
    summary = index.summary()
    assert summary["total"] == 5 and summary["by_code"] == {"MALFORMED_JSON": 3, "UNKNOWN_ITEM": 2}
    assert summary["window"] == {"held": 3, "bound": 3}
    records, matched = index.query(limit=10)
    assert [r["source_event_id"] for r in records] == ["E4", "E3", "E2"] and matched == 3


def test_index_filters_by_code_topic_and_event_and_limits():
    index = DeadLetterIndex()
    for n in range(6):
        index.add(letter(n, topic="wms.events" if n < 3 else "pos.transactions"))
    records, matched = index.query(source_topic="wms.events", limit=2)
    assert [r["source_event_id"] for r in records] == ["E2", "E1"] and matched == 3
    assert index.query(code="MALFORMED_JSON")[1] == 0
    assert [r["source_event_id"] for r in index.query(source_event_id="E4")[0]] == ["E4"]


def test_index_holds_only_the_start_of_a_big_raw_value_so_its_window_stays_small():
    index = DeadLetterIndex()
    big = {**letter(1, "TOO_LARGE"), "raw_value": "x" * (256 * 1024), "raw_size": 1_000_000}
    index.add(big)
    index.add(letter(2))
    records, _ = index.query()
    assert records[1]["raw_value"] == "x" * INDEX_RAW_CHARS and records[1]["raw_value_cut_in_view"]
    assert records[1]["raw_size"] == 1_000_000 and big["raw_value"] == "x" * (256 * 1024)  # the letter is not changed
    assert records[0]["raw_value"] == "{}" and "raw_value_cut_in_view" not in records[0]


def test_index_reset_starts_over():
    index = DeadLetterIndex()
    index.add(letter(1))
    index.caught_up = True
    index.reset()
    assert index.summary()["total"] == 0 and not index.caught_up


# --- replay requests -----------------------------------------------------------------------------

@pytest.mark.parametrize("body", [b"{}", b'{"limit": 5}', b'{"error_code": "NOPE"}', b'{"source_event_ids": []}',
                                  b'{"error_code": "UNKNOWN_ITEM", "everything": true}', b'{"source_topic": ""}',
                                  b'{"error_code": "UNKNOWN_ITEM", "limit": 0}', b"not json"])
def test_replay_request_must_select_something_valid(body):
    with pytest.raises(ValidationError):
        ReplayRequest.model_validate_json(body)


def test_replay_request_selection_is_what_replay_takes():
    request = ReplayRequest.model_validate_json(orjson.dumps(
        {"error_code": "UNKNOWN_ITEM", "source_event_ids": ["a", "b", "a"], "limit": 10}))
    assert request.selection() == {"error_code": "UNKNOWN_ITEM", "source_topic": None,
                                   "source_event_ids": {"a", "b"}, "limit": 10}
    assert request.dry_run is False
