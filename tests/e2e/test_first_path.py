"""The first path through the real broker: a POS sale becomes an availability record."""
from __future__ import annotations

import pytest

from app import topics as t
from tests.e2e.harness import read, send
from tests.e2e.scenario import Scenario

pytestmark = pytest.mark.e2e


def test_pos_sale_yields_availability_record_for_its_sku_at_location(bootstrap, pipeline):
    s = Scenario("first")
    store, sku = s.loc("S1"), s.sku(1)
    send(bootstrap, [s.item(1), s.location("S1")])
    send(bootstrap, [s.receipt(store, [(sku, 10, "7.00")], at=0)])
    send(bootstrap, [s.pos(store, "SALE", [{"sku": sku, "quantity": 2, "unit_price": "19.99"}], at=10)])

    key = f"{sku}@{store}"
    records = read(bootstrap, t.AVAILABILITY, where=lambda r: r.key == key, expect=2, timeout=90)

    assert [r.value["on_hand"] for r in records] == [10, 8]
    sale = records[-1].value
    assert sale["cause"]["movement_type"] == "SALE"
    assert sale["version"] == 2 and sale["previous_available"] == 10 and sale["available"] == 8
