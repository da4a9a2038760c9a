"""Every row of the SPEC §3 movement table through the real broker, across locations and channels."""
from __future__ import annotations

import pytest

from app import topics as t
from tests.e2e.harness import latest_by_key, read, send, wait_for_master, wait_for_versions
from tests.e2e.scenario import Scenario

pytestmark = pytest.mark.e2e


def test_every_movement_type_across_two_stores_a_dc_and_two_channels(bootstrap, pipeline):
    s = Scenario("core")
    sku1, sku2 = s.sku(1), s.sku(2)
    dc, s1, s2 = s.loc("DC"), s.loc("S1"), s.loc("S2")
    upc = f"{s.name}-UPC1"
    alias = f"{s.name}-AMZ1"
    key = lambda sku, loc: f"{sku}@{loc}"  # noqa: E731
    first_sale = f"{s.name}-FIRST-SALE"

    master = [s.item(1, case_pack=6, upc=upc, alias=alias), s.item(2),
              s.location("DC", kind="DC", channels=("web", "amazon")),
              s.location("S1", safety_stock=1), s.location("S2")]
    send(bootstrap, master)
    wait_for_master(pipeline, skus=[sku1, sku2], locations=[dc, s1, s2])

    # Opening stock: a case receipt at the DC (cost per case), eaches elsewhere.
    receipts = [s.receipt(dc, [(sku1, 2, "60.00")], uom="CASE", at=0), s.receipt(dc, [(sku2, 20, "5.00")], at=0),
                s.receipt(s1, [(sku1, 10, "11.00")], at=0)]
    send(bootstrap, receipts)
    wait_for_versions(bootstrap, {key(sku1, dc): 1, key(sku2, dc): 1, key(sku1, s1): 1})

    # Sales by UPC, web and marketplace reservations, an order that will expire, one OMS will release.
    send(bootstrap, [
        s.pos(s1, "SALE", [{"upc": upc, "sku": None, "quantity": 2, "unit_price": "19.99"}], at=100,
              transaction_id=first_sale),
        s.ecom("order_created", "W1", dc, [{"sku": sku1, "quantity": 3}, {"sku": sku2, "quantity": 2}], at=110),
        s.marketplace("ACCEPTED", "AMZ-1", dc, [{"seller_sku": alias, "qty": 2}], at=120),
        s.ecom("order_created", "W2", dc, [{"sku": sku1, "quantity": 1}], at=130),
        s.ecom("order_created", "W4", s2, [{"sku": sku2, "quantity": 1}], at=140),
        s.ecom("order_created", "W3", s1, [{"sku": sku2, "quantity": 1}], at=-4 * 86400),  # long expired
    ])
    wait_for_versions(bootstrap, {key(sku1, s1): 2, key(sku1, dc): 4, key(sku2, dc): 2, key(sku2, s2): 1,
                                  key(sku2, s1): 2})  # W3: reserved, then released by the expiry sweep

    # Partial cancel, fulfilment, partial shipment, OMS release and OMS re-sourcing to a store.
    send(bootstrap, [
        s.ecom("order_cancelled", "W1", dc, [{"line_id": "2", "sku": sku2, "quantity": 2}], at=200),
        s.ecom("order_fulfilled", "W1", dc, [{"line_id": "1", "sku": sku1, "quantity": 3}], at=210),
        s.marketplace("SHIPPED", "AMZ-1", dc, [{"seller_sku": alias, "qty": 1}], at=220),
        s.oms("reservation_released", "W4", "1", sku2, 1, s2, at=230),
        s.oms("reservation_reassigned", "W2", "1", sku1, 1, dc, s1, at=240),
    ])
    wait_for_versions(bootstrap, {key(sku1, dc): 7, key(sku2, dc): 3, key(sku2, s2): 2, key(sku1, s1): 3})

    # The rest of the marketplace order is cancelled; click-and-collect pickup; a transfer ships.
    send(bootstrap, [
        s.marketplace("CANCELLED", "AMZ-1", dc, [{"seller_sku": alias, "qty": 1}], at=300),
        s.pos(s1, "SALE", [{"sku": sku1, "quantity": 1, "unit_price": "19.99"}], at=310, order_id="W2"),
        s.wms(dc, "TRANSFER_OUT", [{"sku": sku1, "quantity": 4}], at=320, transfer_id="T1",
              destination_id=s2),
    ])
    wait_for_versions(bootstrap, {key(sku1, dc): 9, key(sku1, s1): 4, key(sku1, s2): 1})

    # The transfer arrives; a cycle count at S1; adjustments at S2; a return needing inspection.
    send(bootstrap, [
        s.wms(s2, "TRANSFER_IN", [{"sku": sku1, "quantity": 4}], at=400, transfer_id="T1"),
        s.wms(s1, "CYCLE_COUNT", [{"sku": sku1, "counted_quantity": 5}], at=500),
        s.wms(s2, "ADJUSTMENT", [{"sku": sku1, "quantity": 1, "reason": "SHRINK"},
                                 {"sku": sku1, "quantity": 2, "reason": "FOUND"},
                                 {"sku": sku1, "quantity": 1, "reason": "DAMAGED"}], at=410),
    ])
    wait_for_versions(bootstrap, {key(sku1, s2): 5, key(sku1, s1): 5})

    # A sale that happened before the count arrives late; returns at S2 and their inspection.
    send(bootstrap, [
        s.pos(s1, "SALE", [{"sku": sku1, "quantity": 1, "unit_price": "19.99"}], at=450),
        s.pos(s2, "RETURN", [{"sku": sku1, "quantity": 1, "unit_price": "19.99", "inspection_required": True,
                              "original_transaction_id": first_sale}], at=600),
    ])
    wait_for_versions(bootstrap, {key(sku1, s1): 6, key(sku1, s2): 6})
    send(bootstrap, [s.inspection(s2, [(sku1, 1, "DAMAGED")], at=700),
                     s.pos(s2, "RETURN", [{"sku": sku1, "quantity": 2, "unit_price": "19.99",
                                           "inspection_required": True}], at=710)])
    wait_for_versions(bootstrap, {key(sku1, s2): 8})
    send(bootstrap, [s.inspection(s2, [(sku1, 1, "SCRAP"), (sku1, 1, "RESTOCK")], at=800),
                     s.pos(s2, "SALE", [{"sku": sku2, "quantity": 1, "unit_price": "9.99"}], at=810)])
    final = wait_for_versions(bootstrap, {key(sku1, s2): 10, key(sku2, s2): 3})

    # A producer re-sends earlier events: nothing changes.
    send(bootstrap, receipts)

    records = read(bootstrap, t.AVAILABILITY, where=lambda r: r.key and r.key.startswith(s.name), expect=0)
    final = latest_by_key(records)

    def bucket(k: str) -> dict:
        v = final[k]
        return {f: v[f] for f in ("on_hand", "reserved", "quality_control", "damaged", "in_transit", "available",
                                  "version", "negative")}

    assert bucket(key(sku1, dc)) == dict(on_hand=4, reserved=0, quality_control=0, damaged=0, in_transit=0,
                                         available=4, version=9, negative=False)
    assert bucket(key(sku2, dc)) == dict(on_hand=20, reserved=0, quality_control=0, damaged=0, in_transit=0,
                                         available=20, version=3, negative=False)
    # Count set on_hand to 5; the late sale (before the count) did not take it further down.
    assert bucket(key(sku1, s1)) == dict(on_hand=5, reserved=0, quality_control=0, damaged=0, in_transit=0,
                                         available=4, version=6, negative=False)
    assert bucket(key(sku2, s1)) == dict(on_hand=0, reserved=0, quality_control=0, damaged=0, in_transit=0,
                                         available=0, version=2, negative=False)
    assert bucket(key(sku1, s2)) == dict(on_hand=7, reserved=0, quality_control=0, damaged=2, in_transit=0,
                                         available=5, version=10, negative=False)
    # A store sale of stock the books say is gone still applies: on_hand goes negative, flagged.
    assert bucket(key(sku2, s2)) == dict(on_hand=-1, reserved=0, quality_control=0, damaged=0, in_transit=0,
                                         available=0, version=3, negative=True)

    # Versions are contiguous per key and each was emitted once: the resent receipts changed nothing.
    by_key: dict[str, list[int]] = {}
    for r in records:
        by_key.setdefault(r.key, []).append(r.value["version"])
    for k, versions in by_key.items():
        assert sorted(versions) == list(range(1, len(versions) + 1)), (k, versions)

    # Network availability per channel, summed over the locations that serve it.
    channel = latest_by_key(read(bootstrap, t.CHANNEL_AVAILABILITY,
                                 where=lambda r: r.key and s.name in r.key, expect=5))
    assert channel[f"web:{sku1}"]["available"] == 4 + 4 + 5
    assert channel[f"store:{sku1}"]["available"] == 4 + 5
    assert channel[f"amazon:{sku1}"]["available"] == 4
    assert channel[f"web:{sku2}"]["available"] == 20
    assert channel[f"amazon:{sku2}"]["available"] == 20
    assert channel[f"web:{sku1}"]["by_location"] == {dc: 4, s1: 4, s2: 5}


def test_a_changed_master_record_applies_to_the_next_movement(bootstrap, pipeline):
    """Workers keep parsed master records in memory: an update must replace the one already read."""
    from urllib.parse import quote

    from tests.e2e.harness import wait_for_api
    s = Scenario("masterchange")
    sku, store = s.sku(1), s.loc("S1")
    key = f"{sku}@{store}"
    send(bootstrap, [s.item(1, case_pack=6), s.location("S1", safety_stock=0)])
    wait_for_master(pipeline, skus=[sku], locations=[store])
    send(bootstrap, [s.receipt(store, [(sku, 1, "60.00")], uom="CASE", at=0)])
    first = wait_for_versions(bootstrap, {key: 1})[key]
    assert (first["on_hand"], first["safety_stock"], first["available"]) == (6, 0, 6)

    # Case pack 6 → 12 (read by ingest), safety stock 0 → 2 (read by the position stage).
    send(bootstrap, [s.item(1, case_pack=12), s.location("S1", safety_stock=2)])
    wait_for_api(pipeline, f"/v1/master/items/{quote(sku, safe='')}",
                 until=lambda a: a.status == 200 and a.json["case_pack"] == 12)
    wait_for_api(pipeline, f"/v1/master/locations/{quote(store, safe='')}",
                 until=lambda a: a.status == 200 and a.json["safety_stock"] == 2)
    # The new safety stock re-emits the position at once (SPEC §3 "Master data changes reach the channels").
    changed = wait_for_versions(bootstrap, {key: 2})[key]
    assert (changed["cause"]["movement_type"], changed["safety_stock"], changed["available"]) == ("MASTER_CHANGE", 2, 4)
    send(bootstrap, [s.receipt(store, [(sku, 1, "120.00")], uom="CASE", at=10)])
    second = wait_for_versions(bootstrap, {key: 3})[key]
    assert (second["on_hand"], second["safety_stock"], second["available"]) == (18, 2, 16)
