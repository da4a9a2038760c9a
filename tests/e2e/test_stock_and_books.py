"""Issue 15 on the real broker: a store and a DC through a day of the stock-and-books rules, then a
worker SIGKILLed while a channel value waits to be published (SPEC §3, §5.1, §5.2)."""
from __future__ import annotations

import time
from decimal import Decimal

import pytest

from app import topics as t
from tests.e2e.harness import read, send, wait_for_master, wait_for_versions
from tests.e2e.scenario import Scenario

pytestmark = pytest.mark.e2e


def entries(posting: dict) -> dict[str, tuple[str, str]]:
    return {line["account"]: (line["debit"], line["credit"]) for line in posting["lines"]}


def test_store_and_dc_day_keeps_stock_and_books_right(bootstrap, pipeline):
    s = Scenario("books")
    sku, store, dc = s.sku(1), s.loc("S1"), s.loc("D1")
    send(bootstrap, [s.item(1, standard_cost="7.00"), s.location("S1"),
                     s.location("D1", kind="DC", channels=("web",))])
    wait_for_master(pipeline, skus=[sku], locations=[store, dc])
    at_store, at_dc = f"{sku}@{store}", f"{sku}@{dc}"
    transfer = f"{s.name}-T1"
    line = {"sku": sku, "unit_price": "19.99", "tax": "0.00"}

    def step(events, versions):
        send(bootstrap, events)
        return wait_for_versions(bootstrap, versions)

    step([s.receipt(dc, [(sku, 10, "5.00")], at=0)], {at_dc: 1})
    # The store sells 2 it has not received (at standard 7.00), then receives 4 at 8.00: COST_ADJUSTMENT 2.00.
    step([s.pos(store, "SALE", [{**line, "quantity": 2}], at=10)], {at_store: 1})
    step([s.receipt(store, [(sku, 4, "8.00")], at=20)], {at_store: 2})
    # 3 shipped from the DC at 5.00, 2 arrive, the transfer closes: 1 lost in transit.
    step([s.wms(dc, "TRANSFER_OUT", [{"sku": sku, "quantity": 3}], at=30, transfer_id=transfer,
                destination_id=store)], {at_dc: 2, at_store: 3})
    step([s.wms(store, "TRANSFER_IN", [{"sku": sku, "quantity": 2}], at=40, transfer_id=transfer)], {at_store: 4})
    step([s.wms(store, "TRANSFER_CLOSE", [{"sku": sku}], at=50, transfer_id=transfer)], {at_store: 5})
    # avg (2 x 8.00 + 2 x 5.00) / 4 = 6.50. 2 damaged, 1 written off, 3 "repaired" (only 1 left).
    step([s.wms(store, "ADJUSTMENT", [{"sku": sku, "quantity": 2, "reason": "DAMAGED"}], at=60)], {at_store: 6})
    step([s.wms(store, "ADJUSTMENT", [{"sku": sku, "quantity": 1, "reason": "WRITE_OFF"}], at=70)], {at_store: 7})
    latest = step([s.wms(store, "ADJUSTMENT", [{"sku": sku, "quantity": 3, "reason": "REPAIRED"}], at=80)],
                  {at_store: 8})
    assert (latest[at_store]["damaged"], latest[at_store]["unmatched_quantity"]) == (0, 2)
    # Two lines with the same line_no: two movements (on_hand 3 -> 1).
    dup_sale = s.pos(store, "SALE", [{**line, "quantity": 1}, {**line, "quantity": 1}], at=90,
                     transaction_id=f"{s.name}-DUP")
    for row in dup_sale[2]["lines"]:
        row["line_no"] = 1
    step([dup_sale], {at_store: 10})
    # A sale in EUR at a USD store: revenue held, COGS posted (on_hand 1 -> 0).
    eur_sale = s.pos(store, "SALE", [{**line, "quantity": 1}], at=100, transaction_id=f"{s.name}-EUR")
    eur_sale[2]["currency"] = "EUR"
    step([eur_sale], {at_store: 11})
    # A web order ships from the DC without a reservation (flagged), and comes back at the store.
    latest = step([s.ecom("order_fulfilled", f"{s.name}-W1", dc, [{"sku": sku, "quantity": 1}], at=110)],
                  {at_dc: 3})
    assert (latest[at_dc]["on_hand"], latest[at_dc]["unmatched_quantity"]) == (6, 1)
    latest = step([s.pos(store, "RETURN", [{**line, "quantity": 1, "original_transaction_id": f"{s.name}-W1"}],
                         at=120)], {at_store: 12})
    final = latest[at_store]
    assert (final["on_hand"], final["damaged"], final["in_transit"], final["quality_control"]) == (1, 0, 0, 0)

    postings = read(bootstrap, t.POSTINGS, where=lambda r: r.value.get("location_id") == store, expect=13)
    by_kind: dict[str, list[dict]] = {}
    for r in postings:
        by_kind.setdefault(r.value["kind"], []).append(entries(r.value))
    assert by_kind["COST_ADJUSTMENT"] == [{"5000": ("2.00", "0.00"), "1200": ("0.00", "2.00")}]
    assert by_kind["LOST_IN_TRANSIT"] == [{"5100": ("5.00", "0.00"), "1210": ("0.00", "5.00")}]
    assert by_kind["WRITE_OFF"] == [{"5100": ("6.50", "0.00"), "1200": ("0.00", "6.50")}]
    assert sorted(p["5000"][0] for p in by_kind["COGS"]) == ["14.00", "6.50", "6.50", "6.50"]
    assert len(by_kind["SALE_REVENUE"]) == 3          # the first sale and both duplicate lines, not EUR
    assert by_kind["RETURN_COGS"] == [{"1200": ("5.00", "0.00"), "5000": ("0.00", "5.00")}]  # the FULFIL's cost
    inventory = sum(Decimal(x["debit"]) - Decimal(x["credit"]) for r in postings for x in r.value["lines"]
                    if x["account"] == "1200")
    assert inventory == Decimal("5.00") == final["on_hand"] * Decimal("5.00")  # 1200 == on_hand x avg

    exceptions = read(bootstrap, t.FINANCE_EXCEPTIONS,
                      where=lambda r: r.value.get("source_event_id") == f"{s.name}-EUR", expect=1)
    assert [e.value["reason_code"] for e in exceptions] == ["CURRENCY_MISMATCH"]


def test_a_pending_channel_value_is_published_after_the_worker_is_killed(bootstrap, pipeline):
    s = Scenario("books-kill")
    sku, store = s.sku(1), s.loc("S1")
    send(bootstrap, [s.item(1), s.location("S1", channels=("store",))])
    wait_for_master(pipeline, skus=[sku], locations=[store])
    interval = pipeline.env["CHANNEL_PUBLISH_INTERVAL"]
    pipeline.stop()
    # A minute-long interval: the second value waits long after its offsets are committed.
    pipeline.env["CHANNEL_PUBLISH_INTERVAL"] = "60"
    try:
        pipeline.start()
        send(bootstrap, [s.receipt(store, [(sku, 5, "1.00")], at=0)])
        wait_for_versions(bootstrap, {f"{sku}@{store}": 1})
        key = f"store:{sku}"
        first = read(bootstrap, t.CHANNEL_AVAILABILITY, where=lambda r: r.key == key, expect=1)
        assert [r.value["available"] for r in first] == [5]
        send(bootstrap, [s.receipt(store, [(sku, 2, "1.00")], at=10)])
        wait_for_versions(bootstrap, {f"{sku}@{store}": 2})
        time.sleep(8)  # past the commit interval: the channel stage's input offset is committed
        assert [r.value["available"] for r in read(bootstrap, t.CHANNEL_AVAILABILITY,
                                                   where=lambda r: r.key == key, settle=0.5)] == [5]
        pipeline.kill()
        pipeline.start()
        final = read(bootstrap, t.CHANNEL_AVAILABILITY, where=lambda r: r.key == key and r.value["available"] == 7,
                     expect=1, timeout=90)
        assert [r.value["version"] for r in final] and final[-1].value["available"] == 7
    finally:
        pipeline.stop()
        pipeline.env["CHANNEL_PUBLISH_INTERVAL"] = interval
        pipeline.start()
