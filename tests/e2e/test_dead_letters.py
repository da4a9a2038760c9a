"""Bad input never stops the pipeline and is never lost: DLQ codes, valid neighbours, replay."""
from __future__ import annotations

import asyncio

import pytest

from app import topics as t
from app.replay import replay_dead_letters
from tests.e2e.harness import read, send, wait_for_master, wait_for_versions
from tests.e2e.scenario import Scenario

pytestmark = pytest.mark.e2e


def test_bad_records_are_dead_lettered_with_their_code_while_neighbours_flow(bootstrap, pipeline):
    s = Scenario("dlq")
    store, sku = s.loc("S1"), s.sku(1)
    send(bootstrap, [s.item(1, case_pack=None), s.location("S1")])
    wait_for_master(pipeline, skus=[sku], locations=[store])

    unknown_item = s.pos(store, "SALE", [{"sku": s.sku(9), "quantity": 1, "unit_price": "5.00"}], at=5,
                         transaction_id=f"{s.name}-UNKNOWN-ITEM")
    burst = [
        s.receipt(store, [(sku, 10, "4.00")], at=0),
        (t.POS, store, b'{"transaction_id": "' + s.name.encode() + b'-BROKEN", "store_id": '),
        (t.WMS, store, {"event_id": f"{s.name}-NO-TYPE", "location_id": store, "occurred_at": s.at(1),
                        "lines": [{"sku": sku, "quantity": 1}]}),
        unknown_item,
        s.pos(s.loc("NOWHERE"), "SALE", [{"sku": sku, "quantity": 1, "unit_price": "5.00"}], at=6,
              transaction_id=f"{s.name}-UNKNOWN-STORE"),
        s.receipt(store, [(sku, 1, "40.00")], at=7, uom="CASE", event_id=f"{s.name}-CASE-NO-PACK"),
        s.wms(store, "RECEIPT", [{"sku": sku, "quantity": 1, "uom": "PALLET"}], at=8, event_id=f"{s.name}-PALLET"),
        s.ecom("order_cancelled", f"{s.name}-NEVER-RESERVED", store, [{"sku": sku, "quantity": 1}], at=9),
        s.pos(store, "SALE", [{"sku": sku, "quantity": 3, "unit_price": "9.00"}], at=10),
    ]
    send(bootstrap, burst)

    # The valid records around the bad ones were processed, in order.
    latest = wait_for_versions(bootstrap, {f"{sku}@{store}": 2})
    assert latest[f"{sku}@{store}"]["on_hand"] == 7

    letters = read(bootstrap, t.DLQ, where=lambda r: s.name in r.value.get("raw_value", ""), expect=7)
    codes = {(r.value.get("source_event_id") or "?"): r.value["error_code"] for r in letters}
    assert sorted(codes.values()) == sorted(["MALFORMED_JSON", "SCHEMA_INVALID", "UNKNOWN_ITEM", "UNKNOWN_LOCATION",
                                             "UNIT_OF_MEASURE", "UNIT_OF_MEASURE", "UNKNOWN_RESERVATION"])
    assert codes[f"{s.name}-UNKNOWN-ITEM"] == "UNKNOWN_ITEM"
    assert codes[f"{s.name}-UNKNOWN-STORE"] == "UNKNOWN_LOCATION"
    assert codes[f"{s.name}-CASE-NO-PACK"] == "UNIT_OF_MEASURE"
    for letter in letters:
        value = letter.value
        assert value["error_detail"] and value["received_at"] and value["offset"] is not None
        assert value["source_topic"] in (t.POS, t.WMS, t.ECOM, t.MOVEMENTS)
    broken = next(r.value for r in letters if r.value["error_code"] == "MALFORMED_JSON")
    assert broken["raw_value"].endswith('"store_id": ')  # kept whole, byte for byte


def test_replay_after_a_master_data_fix_applies_once_even_when_replayed_twice(bootstrap, pipeline):
    s = Scenario("replay")
    store, late_sku = s.loc("S1"), s.sku(2)
    send(bootstrap, [s.location("S1")])
    wait_for_master(pipeline, locations=[store])
    receipt_id = f"{s.name}-RCPT-UNKNOWN"
    send(bootstrap, [s.receipt(store, [(late_sku, 6, "3.00")], at=0, event_id=receipt_id)])
    read(bootstrap, t.DLQ, where=lambda r: r.value.get("source_event_id") == receipt_id, expect=1)

    # The item master catches up; the operator replays the dead letter, twice by mistake.
    send(bootstrap, [s.item(2)])
    wait_for_master(pipeline, skus=[late_sku])
    assert asyncio.run(replay_dead_letters(bootstrap, source_event_ids={receipt_id})) == 1
    wait_for_versions(bootstrap, {f"{late_sku}@{store}": 1})
    assert asyncio.run(replay_dead_letters(bootstrap, source_event_ids={receipt_id})) == 1

    records = read(bootstrap, t.AVAILABILITY, where=lambda r: r.key == f"{late_sku}@{store}", expect=1, settle=3)
    assert [(r.value["version"], r.value["on_hand"]) for r in records] == [(1, 6)]
