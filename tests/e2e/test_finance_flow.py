"""A store day through the real broker: postings, a finance exception, the day batch and a late batch."""
from __future__ import annotations

from decimal import Decimal

import pytest

from app import topics as t
from tests.e2e.harness import read, send, wait_for_master, wait_for_versions
from tests.e2e.scenario import Scenario

pytestmark = pytest.mark.e2e
D = Decimal


def entries(posting: dict) -> dict[str, tuple[str, str]]:
    return {line["account"]: (line["debit"], line["credit"]) for line in posting["lines"]}


def test_store_day_postings_batch_controls_and_a_tender_mismatch(bootstrap, pipeline):
    s = Scenario("fin")
    sku = s.sku(1)
    s1, s2 = s.loc("S1"), s.loc("S2")
    send(bootstrap, [s.item(1), s.location("S1"), s.location("S2")])
    wait_for_master(pipeline, skus=[sku], locations=[s1, s2])

    # Two receipts at different costs move the average to 7.50; a shrink and a transfer at 7.50.
    send(bootstrap, [s.receipt(s1, [(sku, 10, "7.00")], at=0), s.receipt(s1, [(sku, 10, "8.00")], at=10)])
    wait_for_versions(bootstrap, {f"{sku}@{s1}": 2})
    sale_id = f"{s.name}-SALE-1"
    send(bootstrap, [s.pos(s1, "SALE", [{"sku": sku, "quantity": 2, "unit_price": "19.99", "discount": "1.00",
                                         "tax": "3.04"}], at=20, transaction_id=sale_id)])
    wait_for_versions(bootstrap, {f"{sku}@{s1}": 3})
    send(bootstrap, [
        s.pos(s2, "RETURN", [{"sku": sku, "quantity": 1, "unit_price": "19.99", "tax": "1.52",
                              "original_transaction_id": sale_id}], at=30, transaction_id=f"{s.name}-RET-1"),
        s.wms(s1, "TRANSFER_OUT", [{"sku": sku, "quantity": 3}], at=40, transfer_id=f"{s.name}-T1",
              destination_id=s2),
        s.wms(s1, "ADJUSTMENT", [{"sku": sku, "quantity": 1, "reason": "SHRINK"}], at=50),
        # Tenders short of the basket: the revenue is held as a finance exception, stock still moves.
        s.pos(s1, "SALE", [{"sku": sku, "quantity": 1, "unit_price": "19.99"}], at=60,
              transaction_id=f"{s.name}-SALE-2", tenders=[{"type": "CASH", "amount": "10.00"}]),
    ])
    wait_for_versions(bootstrap, {f"{sku}@{s1}": 6, f"{sku}@{s2}": 2})
    send(bootstrap, [s.wms(s2, "TRANSFER_IN", [{"sku": sku, "quantity": 3}], at=70, transfer_id=f"{s.name}-T1")])
    wait_for_versions(bootstrap, {f"{sku}@{s2}": 3})

    postings = read(bootstrap, t.POSTINGS, where=lambda r: r.value.get("location_id") in (s1, s2), expect=11)
    by_kind: dict[tuple[str, str], list[dict]] = {}
    for r in postings:
        by_kind.setdefault((r.value["location_id"], r.value["kind"]), []).append(r.value)

    receipts = sorted(by_kind[(s1, "RECEIPT")], key=lambda p: entries(p)["1200"][0])
    assert [entries(p) for p in receipts] == [{"1200": ("70.00", "0.00"), "2000": ("0.00", "70.00")},
                                              {"1200": ("80.00", "0.00"), "2000": ("0.00", "80.00")}]
    (revenue,) = by_kind[(s1, "SALE_REVENUE")]
    assert entries(revenue) == {"1000": ("42.02", "0.00"), "4000": ("0.00", "38.98"), "2100": ("0.00", "3.04")}
    cogs = sorted(entries(p)["5000"][0] for p in by_kind[(s1, "COGS")])
    assert cogs == ["15.00", "7.50"]  # the sale of 2, and the held-revenue sale of 1, both at 7.50
    (transfer_out,) = by_kind[(s1, "TRANSFER_OUT")]
    assert entries(transfer_out) == {"1210": ("22.50", "0.00"), "1200": ("0.00", "22.50")}
    (shrink,) = by_kind[(s1, "SHRINK")]
    assert entries(shrink) == {"5100": ("7.50", "0.00"), "1200": ("0.00", "7.50")}
    # The return at the other store is valued at the original sale's cost and clears the tender.
    (return_revenue,) = by_kind[(s2, "RETURN_REVENUE")]
    assert entries(return_revenue) == {"4100": ("19.99", "0.00"), "2100": ("1.52", "0.00"),
                                       "1000": ("0.00", "21.51")}
    (return_cogs,) = by_kind[(s2, "RETURN_COGS")]
    assert entries(return_cogs) == {"1200": ("7.50", "0.00"), "5000": ("0.00", "7.50")}
    (transfer_in,) = by_kind[(s2, "TRANSFER_IN")]
    assert entries(transfer_in) == {"1200": ("22.50", "0.00"), "1210": ("0.00", "22.50")}
    for r in postings:
        assert sum(D(x["debit"]) for x in r.value["lines"]) == sum(D(x["credit"]) for x in r.value["lines"])

    exceptions = read(bootstrap, t.FINANCE_EXCEPTIONS, where=lambda r: r.value.get("source_event_id")
                      == f"{s.name}-SALE-2", expect=1)
    assert [e.value["reason_code"] for e in exceptions] == ["TENDER_MISMATCH"]

    # Day close: one batch with every S1 posting of the day, balanced, with the control totals.
    send(bootstrap, [s.pos(s1, "DAY_CLOSE", [], at=90, transaction_id=f"{s.name}-CLOSE")])
    batches = read(bootstrap, t.JOURNAL_BATCHES, where=lambda r: r.value.get("location_id") == s1, expect=1,
                   timeout=60)
    (batch,) = [b.value for b in batches]
    s1_ids = {p.value["posting_id"] for p in postings if p.value["location_id"] == s1}
    assert set(batch["posting_ids"]) == s1_ids and batch["late"] is False
    totals = {acct: (v["debit"], v["credit"]) for acct, v in batch["totals"].items()}
    assert totals == {"1000": ("42.02", "0.00"), "1200": ("150.00", "52.50"), "1210": ("22.50", "0.00"),
                      "2000": ("0.00", "150.00"), "2100": ("0.00", "3.04"), "4000": ("0.00", "38.98"),
                      "5000": ("22.50", "0.00"), "5100": ("7.50", "0.00")}
    assert sum(D(d) for d, _ in totals.values()) == sum(D(c) for _, c in totals.values())
    assert batch["control"]["pos_units_sold"] == "3" and batch["control"]["cogs_units"] == "3"
    # The POS took 62.01 at the tills; 19.99 of it is held back by the tender exception.
    assert batch["control"]["pos_gross"] == "62.01" and batch["control"]["revenue_gross"] == "42.02"
    assert batch["control"]["gross_difference"] == "19.99"

    # A sale of the closed day that arrives afterwards goes into a late batch: never lost.
    send(bootstrap, [s.pos(s1, "SALE", [{"sku": sku, "quantity": 1, "unit_price": "19.99"}], at=95,
                           transaction_id=f"{s.name}-SALE-LATE")])
    batches = read(bootstrap, t.JOURNAL_BATCHES, where=lambda r: r.value.get("location_id") == s1, expect=2,
                   timeout=60)
    late = [b.value for b in batches if b.value["late"]]
    assert len(late) == 1  # its revenue and its COGS, together: LATE_BATCH_AFTER after the first of them
    assert all(b["sequence"] >= 1 for b in late)
    late_ids = {pid for b in late for pid in b["posting_ids"]}
    assert late_ids.isdisjoint(batch["posting_ids"]) and len(late_ids) == 2
