"""The `sale-costs` table forgets sales past SALE_COST_RETENTION (SPEC §4: state stays bounded).

The table is partitioned like inventory.movements (by SKU: tables/sale_costs.py): a sale's cost goes
into the changelog partition of the movement that wrote it, and the owner of that partition sends
the tombstone there and deletes the cost from its own store.
"""
from __future__ import annotations

import shutil
from decimal import Decimal

import pytest

from tests.conftest import TEST_HOME, _free_web_ports
from tests.e2e.harness import WorkerProcess, declare_changelogs, read, send, wait_for_master
from tests.e2e.scenario import Scenario

pytestmark = pytest.mark.e2e
APP_ID = "e2e-salecost"


@pytest.fixture(scope="module")
def worker(bootstrap):
    declare_changelogs(bootstrap, APP_ID)
    data = TEST_HOME / "workers" / "salecost"
    shutil.rmtree(data, ignore_errors=True)
    process = WorkerProcess(bootstrap, data, web_port=_free_web_ports(17266), app_id=APP_ID,
                            SALE_COST_RETENTION="5").start(wait_ready=180)
    yield process
    process.stop()


def test_a_sale_cost_is_written_then_forgotten_after_the_retention(bootstrap, worker):
    s = Scenario("salecost")
    sku, store = s.sku(1), s.loc("S1")
    send(bootstrap, [s.item(1), s.location("S1")])
    wait_for_master(worker, skus=[sku], locations=[store])
    sale = f"{s.name}-SALE-1"
    send(bootstrap, [s.receipt(store, [(sku, 10, "7.00")], at=0),
                     s.pos(store, "SALE", [{"sku": sku, "quantity": 2, "unit_price": "19.99"}], at=10,
                           transaction_id=sale)])

    changelog = f"{APP_ID}-sale-costs-changelog"
    key = f"{sale}|{sku}"
    # This group reads the session's backlog first: allow it time.
    (written,) = read(bootstrap, changelog, where=lambda r: r.key == key and r.value != {}, expect=1, timeout=240)
    assert Decimal(written.value["unit_cost"]) == Decimal("7.00") and written.value["written_at"] > 0
    # SALE_COST_RETENTION=5 s: the sweep (every retention/10, at least 1 s) sends the tombstone into
    # the partition the cost was written to, and nothing else for this key (a sweep that runs before
    # the tombstone came back sends it again: harmless).
    forgotten = read(bootstrap, changelog, where=lambda r: r.key == key and r.offset > written.offset,
                     expect=1, timeout=90)
    assert forgotten and {(r.partition, str(r.value)) for r in forgotten} == {(written.partition, "{}")}
