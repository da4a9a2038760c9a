"""A worker on an empty data dir restores its tables in bulk (tables/restore.py) and carries on exactly
where the last owner left off: same positions, same versions, same master data, the next movement
applied on top."""
from __future__ import annotations

import shutil
import subprocess
import time

import pytest

from app.domain.positions import new_position
from tables.restore import EXIT_WRONG_LAYOUT
from tests.e2e.harness import (
    WorkerProcess, api, declare_changelogs, send, wait_for_api, wait_for_master, wait_for_versions,
)
from tests.e2e.scenario import Scenario

pytestmark = pytest.mark.e2e


@pytest.fixture
def first_owner(bootstrap, pipeline):
    app_id = "e2e-bulk-restore"
    declare_changelogs(bootstrap, app_id)
    data = pipeline.data_dir.parent / "bulk-restore-a"
    shutil.rmtree(data, ignore_errors=True)
    worker = WorkerProcess(bootstrap, data, web_port=pipeline.web_port + 102, app_id=app_id).start()
    yield worker
    worker.stop()


def test_an_empty_data_dir_restores_positions_and_master_data_in_bulk_and_goes_on_from_there(
        bootstrap, pipeline, first_owner):
    s = Scenario("bulk")
    skus = [s.sku(n) for n in range(1, 41)]
    store = s.loc("S1")
    send(bootstrap, [s.item(n) for n in range(1, 41)] + [s.location("S1")])
    wait_for_master(first_owner, skus=skus, locations=[store])
    send(bootstrap, [s.receipt(store, [(sku, 10 + n, "5.00")]) for n, sku in enumerate(skus)])
    sales = [s.pos(store, "SALE", [{"sku": sku, "quantity": 1, "unit_price": "9.99"}], at=60) for sku in skus]
    send(bootstrap, sales)
    wait_for_versions(bootstrap, {f"{sku}@{store}": 2 for sku in skus})
    sale_id = sales[-1][2]["transaction_id"]
    traced = wait_for_api(first_owner, f"/v1/trace/pos/{sale_id}", until=lambda a: a.status == 200 and a.json["postings"])
    while True:   # every fact of the sale in: the answer holds still for a second
        time.sleep(1.0)
        settled = api(first_owner, f"/v1/trace/pos/{sale_id}")
        if settled.json == traced.json:
            break
        traced = settled
    first_owner.stop()

    data = first_owner.data_dir.parent / "bulk-restore-b"
    shutil.rmtree(data, ignore_errors=True)
    successor = WorkerProcess(bootstrap, data, web_port=first_owner.web_port, app_id=first_owner.app_id).start()
    try:
        for n, sku in enumerate(skus):
            answer = wait_for_api(successor, f"/v1/positions/{sku}/{store}")
            assert (answer.json["on_hand"], answer.json["version"]) == (10 + n - 1, 2), answer.json
        # The trace table has no changelog: it is folded again from internal.lineage, every fact once.
        wait_for_api(successor, f"/v1/trace/pos/{sale_id}", until=lambda a: a.status == 200 and a.json == traced.json)
        log = successor.log_path.read_text()
        restored = [line for line in log.splitlines() if "bulk restore of " in line]
        assert any("bulk restore of positions:" in line and "changelog records" in line for line in restored), restored
        assert any("bulk restore of master-items:" in line and "changelog records" in line for line in restored), restored
        assert any("bulk restore of traces:" in line and "records of internal.lineage folded" in line
                   for line in restored), restored
        # The item master came from the bulk restore too: a sale by SKU maps and applies on version 3.
        send(bootstrap, [s.pos(store, "SALE", [{"sku": skus[0], "quantity": 2, "unit_price": "9.99"}], at=120)])
        wait_for_versions(bootstrap, {f"{skus[0]}@{store}": 3})
        final = wait_for_api(successor, f"/v1/positions/{skus[0]}/{store}", until=lambda a: a.json["version"] == 3)
        assert final.json["on_hand"] == 7, final.json
    finally:
        successor.stop()


def test_a_worker_on_positions_laid_out_by_the_whole_key_stops_before_it_applies_a_movement(bootstrap, pipeline):
    """A changelog written by a version before inventory.movements was partitioned by SKU: its
    positions sit in the partitions of the whole key, where this version would never read them."""
    app_id = "e2e-old-layout"
    declare_changelogs(bootstrap, app_id)
    s = Scenario("layout")
    store = s.loc("S1")
    # The harness's producer hashes a changelog record's whole key: the layout before the change.
    send(bootstrap, [(f"{app_id}-positions-changelog", f"{s.sku(n)}@{store}",
                      new_position(s.sku(n), store).model_copy(update={"on_hand": 5}).model_dump_json())
                     for n in range(1, 41)])
    data = pipeline.data_dir.parent / "old-layout"
    shutil.rmtree(data, ignore_errors=True)
    worker = WorkerProcess(bootstrap, data, web_port=pipeline.web_port + 104, app_id=app_id).start(wait_ready=0)
    try:
        worker.proc.wait(timeout=120)
    except subprocess.TimeoutExpired:
        worker.kill()
        raise AssertionError(f"the worker went on:\n{worker.log_tail()}") from None
    assert worker.proc.returncode == EXIT_WRONG_LAYOUT, worker.log_tail()
    assert "was written under another layout" in worker.log_path.read_text(), worker.log_tail()
