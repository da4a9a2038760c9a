"""The operators' web views (SPEC §7) of a real worker on a real broker: answers, auth and error codes."""
from __future__ import annotations

import json
import re
import time

import pytest

from app import topics as t
from tests.e2e.harness import (
    ADMIN,
    VIEWER,
    api,
    read,
    send,
    wait_for_api,
    wait_for_master_views,
    wait_for_versions,
)
from tests.e2e.scenario import Scenario

pytestmark = pytest.mark.e2e

V1_VIEWS = ["/v1/positions/A/B", "/v1/positions/A", "/v1/channels/web/availability/A", "/v1/trace/pos/X",
            "/v1/dlq", "/v1/reconciliation/S1", "/v1/master/items/A", "/v1/master/locations/S1", "/v1/stats"]


def metric(text: str, name: str, **labels: str) -> float:
    """Sum of a Prometheus sample over the series whose labels include `labels`."""
    total = 0.0
    for line in text.splitlines():
        match = re.match(rf"^{re.escape(name)}(\{{(.*)\}})?\s+(\S+)$", line)
        if match and all(f'{k}="{v}"' in (match.group(2) or "") for k, v in labels.items()):
            total += float(match.group(3))
    return total


def scrape(worker) -> str:
    answer = api(worker, "/metrics", token=None)
    assert answer.status == 200 and answer.headers["Content-Type"].startswith("text/plain")
    return answer.raw.decode()


@pytest.fixture(scope="module")
def shop(bootstrap, pipeline):
    """A store and a DC with stock, a web reservation, a duplicate resend and a dead-lettered sale."""
    s = Scenario("webv")
    store, dc, sku, sku2 = s.loc("S1"), s.loc("DC"), s.sku(1), s.sku(2)
    send(bootstrap, [s.item(1), s.item(2), s.location("S1", channels=("store", "web")),
                     s.location("DC", kind="DC", channels=("web",))])
    wait_for_master_views(pipeline, [sku, sku2], [store, dc])
    receipt = s.receipt(store, [(sku, 10, "7.00")], at=0, event_id=f"{s.name}-RCPT")
    sale = s.pos(store, "SALE", [{"sku": sku, "quantity": 2, "unit_price": "19.99"}], at=20,
                 transaction_id=f"{s.name}-SALE")
    bad_sale = s.pos(store, "SALE", [{"sku": f"{s.name}-GHOST", "quantity": 1, "unit_price": "5.00"}], at=30,
                     transaction_id=f"{s.name}-GHOST-SALE")
    send(bootstrap, [receipt, s.receipt(dc, [(sku, 4, "8.00")], at=0)])
    wait_for_versions(bootstrap, {f"{sku}@{store}": 1, f"{sku}@{dc}": 1})
    send(bootstrap, [sale, s.ecom("order_created", f"{s.name}-W1", store, [{"sku": sku, "quantity": 3}], at=25),
                     s.pos(dc, "SALE", [{"sku": sku2, "quantity": 1, "unit_price": "9.99"}], at=26), bad_sale])
    send(bootstrap, [sale])  # a producer resends the sale
    wait_for_versions(bootstrap, {f"{sku}@{store}": 3, f"{sku2}@{dc}": 1})
    return {"s": s, "store": store, "dc": dc, "sku": sku, "sku2": sku2, "receipt": receipt, "sale": sale,
            "bad_sale": bad_sale}


# --- auth ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("path", V1_VIEWS)
def test_every_v1_view_needs_a_valid_bearer_token(pipeline, path):
    missing = api(pipeline, path, token=None)
    assert missing.status == 401 and missing.json["error"] == "UNAUTHENTICATED"
    assert missing.headers["WWW-Authenticate"].startswith("Bearer")
    wrong = api(pipeline, path, token="not-a-token")
    assert wrong.status == 401 and wrong.json["status"] == 401


def test_public_endpoints_need_no_token(pipeline):
    assert api(pipeline, "/healthz", token=None).status == 200
    assert api(pipeline, "/readyz", token=None).status == 200
    assert api(pipeline, "/metrics", token=None).status == 200
    page = api(pipeline, "/", token=None)
    assert page.status == 200 and b"Position lookup" in page.raw


def test_a_viewer_may_not_replay_dead_letters(pipeline):
    answer = api(pipeline, "/v1/dlq/replay", VIEWER, method="POST", body={"error_code": "UNKNOWN_ITEM"})
    assert answer.status == 403 and answer.json["error"] == "FORBIDDEN"


@pytest.mark.parametrize("path", ["/table/", "/table/positions/", "/router/", "/graph/", "/stats/", "/assignment/",
                                  "/performance/"])
def test_faust_own_views_are_not_served(pipeline, path):
    """SPEC §10: Faust's table, router, graph and sensor views would serve state without a token."""
    for token in (None, ADMIN):
        answer = api(pipeline, path, token=token)
        assert answer.status == 404, answer


def test_a_body_over_the_limit_is_413_json_not_500(pipeline):
    answer = api(pipeline, "/v1/dlq/replay", ADMIN, method="POST", body=b'{"note": "' + b"x" * (2 << 20) + b'"}')
    assert answer.status == 413 and answer.json["error"] == "BODY_TOO_LARGE", answer
    assert answer.json["limit"] == 1 << 20


# --- positions -----------------------------------------------------------------------------------

def test_position_view_shows_buckets_version_cost_and_open_reservations(pipeline, shop):
    answer = api(pipeline, f"/v1/positions/{shop['sku']}/{shop['store']}")
    assert answer.status == 200, answer
    p = answer.json
    assert (p["on_hand"], p["reserved"], p["available"], p["version"]) == (8, 3, 5, 3)
    assert p["avg_cost"] == "7.0000" and p["negative"] is False
    assert [(r["order_id"], r["quantity"]) for r in p["open_reservations"]] == [(f"{shop['s'].name}-W1", 3)]
    assert p["key"] == f"{shop['sku']}@{shop['store']}" and p["served_by"] == pipeline.url
    assert answer.headers["X-Request-Id"]


def test_a_sale_beyond_stock_shows_the_negative_flag(pipeline, shop):
    p = api(pipeline, f"/v1/positions/{shop['sku2']}/{shop['dc']}").json
    assert p["on_hand"] == -1 and p["negative"] is True and p["available"] == 0


def test_unknown_position_is_404_json_and_blank_key_is_400(pipeline, shop):
    unknown = api(pipeline, f"/v1/positions/{shop['sku']}/NOWHERE")
    assert unknown.status == 404 and unknown.json["error"] == "NOT_FOUND"
    assert api(pipeline, "/v1/positions/%20/S1").status == 400


def test_positions_of_a_sku_cover_every_location(pipeline, shop):
    answer = api(pipeline, f"/v1/positions/{shop['sku']}")
    assert answer.status == 200, answer
    body = answer.json
    assert body["served_by"] == pipeline.url and body["partition"] is not None
    assert {p["location_id"]: p["on_hand"] for p in body["positions"]} == {shop["store"]: 8, shop["dc"]: 4}
    assert body["totals"]["on_hand"] == 12
    assert api(pipeline, "/v1/positions/NO-SUCH-SKU").status == 404


# --- channels ------------------------------------------------------------------------------------

def test_channel_availability_sums_the_locations_of_the_channel(pipeline, shop):
    answer = wait_for_api(pipeline, f"/v1/channels/web/availability/{shop['sku']}",
                          until=lambda a: a.status == 200 and a.json["available"] == 5 + 4)
    assert answer.json["by_location"] == {shop["store"]: 5, shop["dc"]: 4}
    store_only = api(pipeline, f"/v1/channels/store/availability/{shop['sku']}").json
    assert store_only["available"] == 5 and store_only["by_location"] == {shop["store"]: 5}
    assert api(pipeline, f"/v1/channels/amazon/availability/{shop['sku']}").status == 404
    assert api(pipeline, "/v1/channels/web/availability/NO-SUCH-SKU").status == 404


# --- trace ---------------------------------------------------------------------------------------

def test_trace_of_a_valid_event_shows_movements_versions_availability_and_postings(pipeline, shop):
    event_id = shop["receipt"][2]["event_id"]
    answer = wait_for_api(pipeline, f"/v1/trace/wms/{event_id}", until=lambda a: a.status == 200 and a.json["postings"])
    trace = answer.json
    assert trace["received"] is True and trace["dead_lettered"] is False
    assert [m["movement_type"] for m in trace["movements"]] == ["RECEIPT"]
    assert trace["availability_records"] == [{"key": f"{shop['sku']}@{shop['store']}", "version": 1,
                                              "available": 10, "on_hand": 10,
                                              "movement_id": trace["movements"][0]["movement_id"]}]
    assert [p["kind"] for p in trace["postings"]] == ["RECEIPT"]
    assert trace["duplicates_ignored"] == [] and trace["dead_letters"] == []


def test_trace_of_a_resent_event_shows_the_duplicate_ignored(pipeline, shop):
    tx = shop["sale"][2]["transaction_id"]
    # The duplicate's fact comes from the position stage, the applied one with the postings (finance).
    trace = wait_for_api(pipeline, f"/v1/trace/pos/{tx}",
                         until=lambda a: a.status == 200 and a.json["duplicates_ignored"] and a.json["applied"]).json
    assert trace["times_received"] == 2
    # The sale and the web reservation come through different topics: either may be applied first.
    assert len(trace["applied"]) == 1 and trace["applied"][0]["version"] in (2, 3)
    assert trace["duplicates_ignored"][0]["movement_id"] == trace["applied"][0]["movement_id"]


def test_trace_of_a_dead_lettered_event_shows_its_dlq_entry(pipeline, shop):
    tx = shop["bad_sale"][2]["transaction_id"]
    trace = wait_for_api(pipeline, f"/v1/trace/pos/{tx}").json
    assert trace["received"] is False and trace["dead_lettered"] is True
    assert trace["dead_letters"][0]["error_code"] == "UNKNOWN_ITEM"
    assert trace["dead_letters"][0]["source_topic"] == t.POS and trace["movements"] == []


def test_trace_of_an_unknown_event_is_404(pipeline):
    answer = api(pipeline, "/v1/trace/pos/NEVER-SENT")
    assert answer.status == 404 and answer.json["error"] == "NOT_FOUND"


# --- dead letters and replay ---------------------------------------------------------------------

def test_dlq_view_lists_and_filters_dead_letters(pipeline, shop):
    tx = shop["bad_sale"][2]["transaction_id"]
    answer = wait_for_api(pipeline, f"/v1/dlq?code=UNKNOWN_ITEM&source_topic={t.POS}&limit=1000",
                          until=lambda a: a.status == 200
                          and any(r.get("source_event_id") == tx for r in a.json["records"]))
    body = answer.json
    assert body["by_code"]["UNKNOWN_ITEM"] >= 1 and body["total"] >= 1
    assert all(r["error_code"] == "UNKNOWN_ITEM" and r["source_topic"] == t.POS for r in body["records"])
    assert len(api(pipeline, "/v1/dlq?limit=1").json["records"]) == 1


@pytest.mark.parametrize("query", ["code=NOT_A_CODE", "limit=0", "limit=abc", "limit=100000"])
def test_dlq_view_rejects_bad_filters_with_400(pipeline, query):
    answer = api(pipeline, f"/v1/dlq?{query}")
    assert answer.status == 400 and answer.json["error"] == "BAD_REQUEST"


@pytest.mark.parametrize("body", [b"not json", b"{}", b'{"error_code": "NOPE"}', b'{"error_code": "UNKNOWN_ITEM", "x": 1}'])
def test_replay_rejects_bad_requests_with_400(pipeline, body):
    answer = api(pipeline, "/v1/dlq/replay", ADMIN, method="POST", body=body)
    assert answer.status == 400 and answer.json["error"] == "BAD_REQUEST"


def test_replay_after_a_master_fix_processes_the_event_once_and_is_audited(bootstrap, pipeline, shop):
    s, store = shop["s"], shop["store"]
    tx = shop["bad_sale"][2]["transaction_id"]
    ghost = f"{s.name}-GHOST"
    wait_for_api(pipeline, f"/v1/dlq?source_event_id={tx}", until=lambda a: a.json["records"])
    # The item master catches up; the operator replays that one dead letter, twice.
    send(bootstrap, [(t.MASTER_ITEMS, ghost, {"sku": ghost, "description": ghost, "standard_cost": "3.00"})])
    wait_for_master_views(pipeline, [ghost])
    selection = {"source_event_ids": [tx], "source_topic": t.POS}
    dry = api(pipeline, "/v1/dlq/replay", ADMIN, method="POST", body={**selection, "dry_run": True})
    assert dry.status == 200 and dry.json["matched"] >= 1 and dry.json["dry_run"] is True
    first = api(pipeline, "/v1/dlq/replay", ADMIN, method="POST", body=selection)
    assert first.status == 200 and first.json["replayed"] >= 1, first
    trace = wait_for_api(pipeline, f"/v1/trace/pos/{tx}", until=lambda a: a.json["applied"]).json
    assert api(pipeline, "/v1/dlq/replay", ADMIN, method="POST", body=selection).status == 200
    wait_for_api(pipeline, f"/v1/trace/pos/{tx}", until=lambda a: a.json["duplicates_ignored"])
    position = api(pipeline, f"/v1/positions/{ghost}/{store}").json
    assert position["on_hand"] == -1 and position["version"] == 1  # applied once, whatever the replays
    assert trace["dead_letters"][0]["error_code"] == "UNKNOWN_ITEM"

    # Each admin action is in the audit trail (file and topic): role and fingerprint, never the token.
    lines = [json.loads(line) for line in (pipeline.data_dir / "audit.log").read_text().splitlines()]
    ours = [e for e in lines if e["action"].startswith("dlq.replay") and tx in e["detail"]["request"].get(
        "source_event_ids", [])]
    assert [e["detail"]["status"] for e in ours].count("succeeded") == 3
    assert all(e["detail"]["role"] == "admin" and e["detail"]["token_fingerprint"].startswith("sha256:")
               for e in ours)
    assert ADMIN not in (pipeline.data_dir / "audit.log").read_text()
    audited = read(bootstrap, t.AUDIT, expect=6, where=lambda r: tx in json.dumps(r.value))
    assert len(audited) >= 6 and all(ADMIN not in json.dumps(r.value) for r in audited)
    assert ADMIN not in pipeline.log_path.read_text() and VIEWER not in pipeline.log_path.read_text()


# --- reconciliation, master data, stats, metrics ---------------------------------------------------

def test_reconciliation_view_shows_the_latest_summary_of_a_location(bootstrap, pipeline, shop):
    s, store, sku = shop["s"], shop["store"], shop["sku"]
    assert api(pipeline, f"/v1/reconciliation/{store}").status == 404
    snapshot_id = s.id("SNAP")
    send(bootstrap, [(t.ERP_SNAPSHOTS, store, {"snapshot_id": snapshot_id, "location_id": store,
                                               "as_of": s.at(40), "balances": [{"sku": sku, "on_hand": 6}]})])
    summary = wait_for_api(pipeline, f"/v1/reconciliation/{store}", timeout=120,
                           until=lambda a: a.status == 200 and a.json["snapshot_id"] == snapshot_id
                           and a.json.get("complete", True)).json
    assert summary["location_id"] == store and summary["drifted"] >= 1
    assert api(pipeline, "/v1/reconciliation/NOWHERE").status == 404


def test_master_views_show_what_this_worker_knows(pipeline, shop):
    item = api(pipeline, f"/v1/master/items/{shop['sku']}")
    assert item.status == 200 and item.json["sku"] == shop["sku"] and item.json["standard_cost"] == "7.00"
    location = api(pipeline, f"/v1/master/locations/{shop['dc']}").json
    assert location["type"] == "DC" and location["channels"] == ["web"]
    assert api(pipeline, "/v1/master/items/NO-SUCH").status == 404
    assert api(pipeline, "/v1/master/locations/NO-SUCH").status == 404


def test_stats_report_consumer_lag_per_partition(pipeline, shop):
    stats = api(pipeline, "/v1/stats").json
    assert stats["worker"] == pipeline.url
    topics = {row["topic"] for row in stats["consumer_lag"]["partitions"]}
    assert {t.POS, t.MOVEMENTS, t.LINEAGE} <= topics
    assert all(row["highwater"] >= row["committed"] and 0 <= row["unprocessed"] <= row["lag"]
               for row in stats["consumer_lag"]["partitions"])
    assert stats["dead_letters"]["total"] >= 1


def test_metrics_move_with_traffic(bootstrap, pipeline, shop):
    s, store, sku = shop["s"], shop["store"], shop["sku"]
    before = scrape(pipeline)
    send(bootstrap, [s.receipt(store, [(sku, 5, "7.00")], at=100),
                     (t.POS, store, b"{this is not json")])
    wait_for_versions(bootstrap, {f"{sku}@{store}": 4})
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        after = scrape(pipeline)
        if metric(after, "stock_sync_dlq_topic_records", code="MALFORMED_JSON") > metric(
                before, "stock_sync_dlq_topic_records", code="MALFORMED_JSON"):
            break
        time.sleep(0.5)
    assert metric(after, "stock_sync_events_in_total", source="wms") > metric(before, "stock_sync_events_in_total",
                                                                              source="wms")
    assert metric(after, "stock_sync_movements_applied_total", type="RECEIPT") > metric(
        before, "stock_sync_movements_applied_total", type="RECEIPT")
    assert metric(after, "stock_sync_dlq_records_total", code="MALFORMED_JSON") > metric(
        before, "stock_sync_dlq_records_total", code="MALFORMED_JSON")
    assert metric(after, "stock_sync_event_to_availability_seconds_count") > metric(
        before, "stock_sync_event_to_availability_seconds_count")
    assert "stock_sync_worker_lag" in after and "stock_sync_worker_unprocessed" in after
    # The receipt went through the position stage's micro-batches: counted, with their time per phase.
    assert metric(after, "stock_sync_stage_batch_records_count", stage="positions") > metric(
        before, "stock_sync_stage_batch_records_count", stage="positions")
    assert metric(after, "stock_sync_stage_batch_seconds_count", stage="positions", phase="apply") > metric(
        before, "stock_sync_stage_batch_seconds_count", stage="positions", phase="apply")


def test_metrics_say_when_the_worker_has_applied_all_master_data(pipeline, shop):
    # The shop's items and locations were sent before its traffic; the worker reads them back in the
    # background, and says how many changes it still has to apply.
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        text = scrape(pipeline)
        assert "stock_sync_master_data_behind " in text
        if metric(text, "stock_sync_master_data_behind") == 0:
            break
        time.sleep(0.5)
    assert metric(text, "stock_sync_master_data_behind") == 0
