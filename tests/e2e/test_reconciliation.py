"""Reconciliation through the real broker: ERP snapshots against positions as of, drift, corrections."""
from __future__ import annotations

import asyncio
import csv
import io
import os
import shutil
import subprocess
import sys
import time

import orjson
import pytest

from app import topics as t
from app.kafka_io import read_topic
from app.settings import REPO_ROOT
from tests.e2e.harness import (
    WorkerProcess, api, declare_changelogs, group_caught_up, read, send, wait_for_api, wait_for_master,
    wait_for_versions,
)
from tests.e2e.scenario import Scenario

pytestmark = pytest.mark.e2e


def snapshot(s: Scenario, loc: str, snapshot_id: str, as_of: float, balances: dict[str, int]):
    return (t.ERP_SNAPSHOTS, loc, {"snapshot_id": snapshot_id, "location_id": loc, "as_of": s.at(as_of),
                                   "balances": [{"sku": k, "on_hand": v} for k, v in balances.items()]})


def reconciliation(bootstrap: str, loc: str, snapshot_id: str, summaries: int = 1) -> tuple[list[dict], list[dict]]:
    """(summaries, drift records) of one snapshot, once `summaries` summaries are on the topic."""
    records = read(bootstrap, t.RECONCILIATION, expect=summaries, timeout=120, settle=3.0,
                   where=lambda r: r.key == loc and r.value.get("snapshot_id") == snapshot_id
                   and r.value.get("kind") == "SUMMARY")
    assert len(records) >= summaries, f"no summary for {snapshot_id} at {loc}"
    # Drift records precede their summary on the location's partition: all are there by now.
    drifts = [r.value for r in asyncio.run(read_topic(bootstrap, t.RECONCILIATION, until_idle=0.5, timeout=20))
              if r.key == loc and r.value.get("snapshot_id") == snapshot_id and r.value.get("kind") != "SUMMARY"]
    return [r.value for r in records], drifts


def wait_applied(worker: WorkerProcess, loc: str, versions: dict[str, int], timeout: float = 90.0) -> None:
    """Wait until the worker's positions (what reconciliation reads) reached these versions, by SKU."""
    for sku, version in versions.items():
        wait_for_api(worker, f"/v1/positions/{sku}/{loc}", timeout=timeout,
                     until=lambda a, v=version: a.status == 200 and a.json["version"] >= v)


def counts(summary: dict) -> tuple[int, int, int, int, int]:
    return (summary["compared"], summary["matched"], summary["drifted"], summary["missing_in_pipeline"],
            summary["missing_in_erp"])


def test_snapshot_matching_positions_reports_no_drift_while_movements_are_in_flight(bootstrap, pipeline):
    s = Scenario("recon-match")
    store, a, b = s.loc("S1"), s.sku(1), s.sku(2)
    send(bootstrap, [s.item(1), s.item(2), s.location("S1")])
    wait_for_master(pipeline, skus=[a, b], locations=[store])
    send(bootstrap, [s.receipt(store, [(a, 10, "7.00"), (b, 5, "7.00")], at=0)])
    wait_applied(pipeline, store, {a: 1, b: 1})

    # After the snapshot's as_of: a sale already applied before the check, a receipt racing with it.
    send(bootstrap, [s.pos(store, "SALE", [{"sku": a, "quantity": 3, "unit_price": "19.99"}], at=60)])
    wait_applied(pipeline, store, {a: 2})
    snap_id = s.id("SNAP")
    send(bootstrap, [snapshot(s, store, snap_id, 5, {a: 10, b: 5}), s.receipt(store, [(b, 4, "7.00")], at=61)])

    [summary], drifts = reconciliation(bootstrap, store, snap_id)
    assert counts(summary) == (2, 2, 0, 0, 0)
    assert summary["complete"] and summary["net_difference"] == 0 and summary["movement_backlog"] == 0
    assert drifts == []


def test_injected_differences_are_reported_exactly_and_once(bootstrap, pipeline):
    s = Scenario("recon-drift")
    store = s.loc("S1")
    sku1, sku2, sku3, sku4 = (s.sku(n) for n in range(1, 5))
    send(bootstrap, [*(s.item(n) for n in range(1, 5)), s.location("S1")])
    wait_for_master(pipeline, skus=[sku1, sku2, sku3, sku4], locations=[store])
    send(bootstrap, [s.receipt(store, [(sku1, 10, "7.00"), (sku2, 4, "7.00"), (sku3, 6, "7.00")], at=0)])
    wait_applied(pipeline, store, {sku1: 1, sku2: 1, sku3: 1})

    snap_id = s.id("SNAP")
    erp = snapshot(s, store, snap_id, 5, {sku1: 8, sku2: 4, sku4: 7})  # sku3 absent, sku4 unknown to the pipeline
    send(bootstrap, [erp])
    send(bootstrap, [erp])  # ERP resends: nothing may be counted or reported twice

    [summary], drifts = reconciliation(bootstrap, store, snap_id)
    assert counts(summary) == (4, 1, 1, 1, 1)
    assert summary["net_difference"] == 2 - 7 + 6
    assert sorted((d["sku"], d["kind"], d["erp_on_hand"], d["pipeline_on_hand"], d["difference"]) for d in drifts) == [
        (sku1, "DRIFT", 8, 10, 2),
        (sku3, "MISSING_IN_ERP", None, 6, 6),
        (sku4, "MISSING_IN_PIPELINE", 7, None, -7),
    ]
    assert all(d["as_of"].startswith(s.at(5)[:19]) and d["checked_at"] for d in drifts)

    env = {**os.environ, "KAFKA_BOOTSTRAP": bootstrap}
    cli = [sys.executable, "-m", "app.cli", "recon-report", store, "--timeout", "30"]
    table = subprocess.run(cli, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert table.returncode == 0, table.stderr
    assert snap_id in table.stdout and "compared 4" in table.stdout
    assert all(sku in table.stdout for sku in (sku1, sku3, sku4)) and sku2 not in table.stdout
    rows = list(csv.DictReader(io.StringIO(subprocess.run(
        [*cli, "--csv"], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120, check=True).stdout)))
    assert {(r["sku"], r["difference"]) for r in rows} == {(sku1, "2"), (sku3, "6"), (sku4, "-7")}


# --- Correction mode: a second worker of its own (a new app id reads every topic from the start) ---

@pytest.fixture
def correcting_worker(bootstrap, pipeline):
    data = pipeline.data_dir.parent / "recon-corrections"
    shutil.rmtree(data, ignore_errors=True)
    app_id = "e2e-recon-corrections"
    declare_changelogs(bootstrap, app_id)  # avoids the fresh-app-id changelog metadata race
    worker = WorkerProcess(bootstrap, data, web_port=pipeline.web_port + 11, app_id=app_id,
                           RECON_CORRECTIONS="true", RECON_SETTLE="1",
                           # Snapshots of earlier tests that this new app id replays are older than this:
                           # it reports them but corrects none.
                           RECON_MAX_SNAPSHOT_AGE="8")
    yield worker
    worker.stop()


def test_correction_mode_adjusts_confirmed_drift_and_posts_it_to_finance(bootstrap, pipeline, correcting_worker):
    s = Scenario("recon-fix")
    store, sku1, sku2 = s.loc("S1"), s.sku(1), s.sku(2)
    send(bootstrap, [s.item(1, standard_cost="7.00"), s.item(2, standard_cost="7.00"), s.location("S1")])
    wait_for_master(pipeline, skus=[sku1, sku2], locations=[store])
    send(bootstrap, [s.receipt(store, [(sku1, 10, "7.00")], at=0)])
    wait_applied(pipeline, store, {sku1: 1})

    worker = correcting_worker.start()
    wait_for_master(worker, skus=[sku1, sku2], locations=[store])
    group_caught_up(bootstrap, worker.app_id, [*t.RAW_TOPICS, t.MOVEMENTS])

    snap_id = s.id("SNAP")
    send(bootstrap, [snapshot(s, store, snap_id, 5, {sku1: 7, sku2: 4})])

    ids = {sku1: f"pipeline:recon:{snap_id}:{sku1}:recon", sku2: f"pipeline:recon:{snap_id}:{sku2}:recon"}
    movements = read(bootstrap, t.MOVEMENTS, expect=2, timeout=120,
                     where=lambda r: r.value.get("movement_id") in ids.values())
    by_id = {r.value["movement_id"]: r.value for r in movements}
    assert set(by_id) == set(ids.values())
    loss, gain = by_id[ids[sku1]], by_id[ids[sku2]]
    assert (loss["movement_type"], loss["reason"], loss["quantity"], loss["role"]) == ("ADJUST", "RECON_LOSS", 3, "recon")
    assert (gain["movement_type"], gain["reason"], gain["quantity"]) == ("ADJUST", "RECON_GAIN", 4)
    assert loss["occurred_at"].startswith(s.at(5)[:19])

    for applier in (pipeline, worker):  # both app ids apply what reaches inventory.movements
        wait_applied(applier, store, {sku1: 2, sku2: 1})
        assert [api(applier, f"/v1/positions/{sku}/{store}").json["on_hand"] for sku in (sku1, sku2)] == [7, 4]
    latest = wait_for_versions(bootstrap, {f"{sku1}@{store}": 2, f"{sku2}@{store}": 1})
    assert latest[f"{sku1}@{store}"]["on_hand"] == 7 and latest[f"{sku2}@{store}"]["on_hand"] == 4

    postings = read(bootstrap, t.POSTINGS, expect=2, timeout=90,
                    where=lambda r: r.value.get("movement_id") in ids.values())
    journal = {p.value["movement_id"]: p.value for p in postings}
    assert {p["kind"] for p in journal.values()} == {"SHRINK"}
    lines = lambda p: {(ln["account"], ln["debit"], ln["credit"]) for ln in p["lines"]}  # noqa: E731
    assert lines(journal[ids[sku1]]) == {("5100", "21.00", "0.00"), ("1200", "0.00", "21.00")}
    assert lines(journal[ids[sku2]]) == {("1200", "28.00", "0.00"), ("5100", "0.00", "28.00")}

    audit = read(bootstrap, t.AUDIT, expect=2, timeout=60,
                 where=lambda r: r.value.get("detail", {}).get("snapshot_id") == snap_id)
    assert {a.value["detail"]["movement_id"] for a in audit} == set(ids.values())
    assert all(a.key == "reconciliation" and a.value["action"] == "recon_correction" for a in audit)
    logged = [orjson.loads(line) for line in (worker.data_dir / "audit.log").read_text().splitlines()]
    assert {e["detail"]["movement_id"] for e in logged if e["detail"].get("snapshot_id") == snap_id} == set(ids.values())

    # The next snapshot finds nothing left to correct, in either worker.
    snap2 = s.id("SNAP")
    send(bootstrap, [snapshot(s, store, snap2, 6, {sku1: 7, sku2: 4})])
    summaries, drifts = reconciliation(bootstrap, store, snap2, summaries=2)
    assert [counts(x) for x in summaries] == [(2, 2, 0, 0, 0)] * len(summaries)
    assert drifts == []
