"""Day batches posted to a real Tryton server (SPEC §9): once each, whatever happens on the way."""
from __future__ import annotations

import shutil
import time
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo
from decimal import Decimal

import pytest

from app import topics as t
from app.models.records import JournalBatch
from tests.conftest import TEST_HOME, _free_web_ports
from tests.e2e.erp_support import entries_for, set_account_closed, totals_of
from tests.e2e.harness import WorkerProcess, read, send, wait_for_master, wait_for_versions
from tests.e2e.scenario import Scenario

pytestmark = pytest.mark.e2e
D = Decimal
APP_ID = "e2e-erp"
DATA = TEST_HOME / "workers" / "erp"
CLOSED = "5.1.1"   # an expense account of Tryton's chart template that the pipeline's chart never uses


def erp_worker(bootstrap: str, erp, port: int, **env: str) -> WorkerProcess:
    # A DC's day closes as soon as it has ended where the DC is (DAY_CLOSE_AFTER=0), so the DC test
    # needs no two-hour wait; store days close at their POS DAY_CLOSE whatever it says.
    return WorkerProcess(bootstrap, DATA, web_port=port, app_id=APP_ID, ERP_URL=erp.url,
                         ERP_DATABASE=erp.database, **{"DAY_CLOSE_AFTER": "0", **env})


@pytest.fixture(scope="module")
def web_port() -> int:
    return _free_web_ports(17066)


@pytest.fixture(scope="module")
def poster(bootstrap, erp_server, web_port):
    """The one worker group posting to the ERP in this module (tests that need other settings stop
    it and start their own worker of the same group, then start it again)."""
    shutil.rmtree(DATA, ignore_errors=True)
    worker = erp_worker(bootstrap, erp_server, web_port).start()
    yield worker
    worker.stop()


def acks(bootstrap: str, batch_ids: set[str], expect: int, timeout: float = 90.0) -> list[dict]:
    records = read(bootstrap, t.ERP_ACKS, where=lambda r: r.key in batch_ids, expect=expect, timeout=timeout,
                   settle=0.5)
    return [r.value for r in records]


def batch(location: str, sequence: int = 0, totals: dict[str, tuple[str, str]] | None = None) -> JournalBatch:
    totals = totals or {"1000": ("10.00", "0.00"), "4000": ("0.00", "10.00")}
    today = date.today()
    return JournalBatch(
        batch_id=f"US01:{location}:{today.isoformat()}#{sequence}", legal_entity="US01", location_id=location,
        business_date=today, currency="USD", late=sequence > 0, sequence=sequence,
        totals={a: {"debit": D(d), "credit": D(c)} for a, (d, c) in totals.items()}, posting_ids=[],
        control={}, closed_at=datetime.now(UTC))


def send_batches(bootstrap: str, batches: list[JournalBatch]) -> None:
    send(bootstrap, [(t.JOURNAL_BATCHES, f"{b.legal_entity}:{b.location_id}:{b.business_date}",
                      b.model_dump_json()) for b in batches])


def test_a_store_day_is_posted_as_one_entry_per_batch_and_a_replay_is_a_duplicate(bootstrap, erp_server, poster):
    s = Scenario("erpday")
    sku, store = s.sku(1), s.loc("S1")
    send(bootstrap, [s.item(1), s.location("S1")])
    wait_for_master(poster, skus=[sku], locations=[store])
    send(bootstrap, [s.receipt(store, [(sku, 10, "7.00")], at=0)])
    wait_for_versions(bootstrap, {f"{sku}@{store}": 1})
    send(bootstrap, [s.pos(store, "SALE", [{"sku": sku, "quantity": 2, "unit_price": "19.99", "discount": "1.00",
                                            "tax": "3.04"}], at=20, transaction_id=f"{s.name}-SALE-1")])
    wait_for_versions(bootstrap, {f"{sku}@{store}": 2})
    send(bootstrap, [s.pos(store, "DAY_CLOSE", [], at=90, transaction_id=f"{s.name}-CLOSE")])

    (day,) = batches_of(bootstrap, store)
    ack = posted_once(acks(bootstrap, {day["batch_id"]}, expect=1))
    assert ack["erp_reference"]
    (entry,) = entries_for(erp_server.url, day["batch_id"])
    assert entry["state"] == "posted" and str(entry["id"]) == ack["erp_reference"]
    expected = {a: (D(v["debit"]), D(v["credit"])) for a, v in day["totals"].items()}
    assert totals_of(erp_server.url, day["batch_id"]) == expected
    assert expected["1200"] == (D("70.00"), D("14.00")) and expected["4000"] == (D("0"), D("38.98"))

    # A sale of the closed day, arriving late, is posted as an entry of its own.
    send(bootstrap, [s.pos(store, "SALE", [{"sku": sku, "quantity": 1, "unit_price": "19.99"}], at=95,
                           transaction_id=f"{s.name}-SALE-LATE")])
    late = [b for b in batches_of(bootstrap, store, expect=2) if b["late"]]
    assert len(late) == 1 and late[0]["posting_count"] == 2   # its revenue and its COGS, together
    posted_once(acks(bootstrap, {late[0]["batch_id"]}, expect=1))
    assert len(entries_for(erp_server.url, late[0]["batch_id"])) == 1
    assert totals_of(erp_server.url, late[0]["batch_id"]) == {
        a: (D(v["debit"]), D(v["credit"])) for a, v in late[0]["totals"].items()}

    # The day batch replayed onto its topic (a producer re-send, an operator replay): acknowledged as
    # a duplicate, still one entry in the ledger.
    before = len(acks(bootstrap, {day["batch_id"]}, expect=1))
    send_batches(bootstrap, [JournalBatch.model_validate(day)])
    day_acks = acks(bootstrap, {day["batch_id"]}, expect=before + 1)
    posted_once(day_acks)
    assert len(day_acks) == before + 1 and day_acks[-1]["status"] == "DUPLICATE"
    assert len(entries_for(erp_server.url, day["batch_id"])) == 1


def batches_of(bootstrap: str, location: str, expect: int = 1, timeout: float = 60.0) -> list[dict]:
    """The batches of a location, one per batch id, once `expect` distinct ones are there: the
    session's shared pipeline reads the same raw events and publishes the same batches (same ids) on
    the same topic, so two records can be one batch and its twin (a late batch was missed that way)."""
    deadline = time.monotonic() + timeout
    while True:
        records = read(bootstrap, t.JOURNAL_BATCHES, where=lambda r: r.value.get("location_id") == location,
                       expect=expect, timeout=max(1.0, deadline - time.monotonic()))
        distinct = list({r.value["batch_id"]: r.value for r in records}.values())
        if len(distinct) >= expect or time.monotonic() >= deadline:
            return distinct
        time.sleep(1.0)


def posted_once(batch_acks: list[dict]) -> dict:
    """One POSTED ack; any other copy of the batch (the shared pipeline's twin, a replay) a DUPLICATE."""
    statuses = [a["status"] for a in batch_acks]
    assert statuses.count("POSTED") == 1 and set(statuses) <= {"POSTED", "DUPLICATE"}, statuses
    return next(a for a in batch_acks if a["status"] == "POSTED")


def test_a_dc_day_closes_by_the_clock_where_the_dc_is_and_is_posted(bootstrap, erp_server, poster):
    """A DC has no POS and no DAY_CLOSE: its day closes by the clock (SPEC §5.3) in its time zone."""
    s = Scenario("erpdc")
    sku, dc = s.sku(1), s.loc("DC1")
    topic, key, location = s.location("DC1", kind="DC", channels=("web",))
    send(bootstrap, [s.item(1), (topic, key, {**location, "timezone": "America/New_York"})])
    wait_for_master(poster, skus=[sku], locations=[dc])
    yesterday = -86400.0  # a day that has ended in New York, whatever the time now
    order = f"{s.name}-ORDER-1"
    send(bootstrap, [s.receipt(dc, [(sku, 10, "7.00")], at=yesterday)])
    wait_for_versions(bootstrap, {f"{sku}@{dc}": 1})
    send(bootstrap, [s.ecom("order_created", order, dc, [{"sku": sku, "quantity": 2}], at=yesterday + 60)])
    wait_for_versions(bootstrap, {f"{sku}@{dc}": 2})
    send(bootstrap, [s.ecom("order_fulfilled", order, dc, [{"sku": sku, "quantity": 2}], at=yesterday + 120)])

    # The clock timer runs once a minute; nothing else closes this day.
    (day,) = batches_of(bootstrap, dc, timeout=180)
    new_york_date = (s.t0.astimezone(ZoneInfo("America/New_York")) + timedelta(seconds=yesterday)).date()
    assert day["business_date"] == new_york_date.isoformat() and day["late"] is False
    expected = {a: (D(v["debit"]), D(v["credit"])) for a, v in day["totals"].items()}
    # The receipt in at 7.00, two units out at that cost, their revenue (10.00 each) booked.
    assert expected["1200"] == (D("70.00"), D("14.00")) and expected["5000"] == (D("14.00"), D("0"))
    assert expected["4000"] == (D("0"), D("20.00"))
    posted_once(acks(bootstrap, {day["batch_id"]}, expect=1))
    (entry,) = entries_for(erp_server.url, day["batch_id"])
    assert entry["state"] == "posted"
    assert totals_of(erp_server.url, day["batch_id"]) == expected


def test_a_batch_the_erp_refuses_is_rejected_and_the_next_one_still_posts(bootstrap, erp_server, poster):
    location = "ERPREJ-S1"
    # A chart override may name any account of the ERP's chart; this one (from Tryton's own chart
    # template) is closed in the ERP, and no other batch of the session ever posts to it, so it can be.
    refused = batch(location, 0, {CLOSED: ("4.00", "0.00"), "1200": ("0.00", "4.00")})
    following = batch(location, 1, {"5000": ("3.00", "0.00"), "1200": ("0.00", "3.00")})
    set_account_closed(erp_server.url, CLOSED, True)
    try:
        send_batches(bootstrap, [refused, following])
        outcome = {a["batch_id"]: a for a in acks(bootstrap, {refused.batch_id, following.batch_id}, expect=2)}
    finally:
        set_account_closed(erp_server.url, CLOSED, False)
    assert outcome[refused.batch_id]["status"] == "REJECTED" and outcome[refused.batch_id]["erp_reference"] is None
    assert outcome[following.batch_id]["status"] == "POSTED"
    (rejection,) = [r.value for r in read(bootstrap, t.ERP_REJECTIONS, where=lambda r: r.key == refused.batch_id,
                                           expect=1)]
    # Tryton's own words: a closed account falls outside the move line's account domain.
    assert CLOSED in rejection["message"] and "not valid" in rejection["message"]
    assert rejection["location_id"] == location
    assert entries_for(erp_server.url, refused.batch_id) == []
    assert len(entries_for(erp_server.url, following.batch_id)) == 1


@pytest.mark.parametrize("step", ["create", "post"])
def test_a_worker_killed_between_the_erp_commit_and_the_ack_posts_nothing_twice(bootstrap, erp_server, poster,
                                                                                  web_port, step):
    crashing_batch = batch(f"ERPCRASH-{step}", 0, {"1000": ("5.00", "0.00"), "4000": ("0.00", "5.00")})
    poster.stop()
    crashing = erp_worker(bootstrap, erp_server, web_port, ERP_TEST_CRASH_AFTER=step).start()
    try:
        send_batches(bootstrap, [crashing_batch])
        crashing.proc.wait(timeout=90)   # it SIGKILLs itself right after the ERP call returned
        assert crashing.proc.returncode == -9
        assert len(entries_for(erp_server.url, crashing_batch.batch_id)) == 1
        assert acks(bootstrap, {crashing_batch.batch_id}, expect=0, timeout=3) == []
    finally:
        crashing.kill()
        poster.start()
    (ack,) = acks(bootstrap, {crashing_batch.batch_id}, expect=1)
    # Found in draft (killed after create) it is posted now; found posted, it is a duplicate.
    assert ack["status"] == ("POSTED" if step == "create" else "DUPLICATE")
    (entry,) = entries_for(erp_server.url, crashing_batch.batch_id)
    assert entry["state"] == "posted"


def test_an_erp_outage_pauses_posting_and_every_batch_posts_once_after(bootstrap, erp_server, poster):
    waiting = [batch("ERPOUT-S1", n) for n in range(6)]
    send_batches(bootstrap, waiting[:1])
    acks(bootstrap, {waiting[0].batch_id}, expect=1)
    erp_server.stop()
    outage_began = time.monotonic()
    try:
        send_batches(bootstrap, waiting[1:])
        time.sleep(5)
        assert acks(bootstrap, {b.batch_id for b in waiting[1:]}, expect=0, timeout=2) == []
        view = poster_view(poster)
        assert view["erp_reachable"] is False and view["last_error"]
        time.sleep(max(0.0, 20 - (time.monotonic() - outage_began)))
    finally:
        erp_server.start()
    done = acks(bootstrap, {b.batch_id for b in waiting}, expect=len(waiting))
    assert sorted(a["batch_id"] for a in done) == sorted(b.batch_id for b in waiting)
    assert {a["status"] for a in done} == {"POSTED"}
    for b in waiting:
        assert len(entries_for(erp_server.url, b.batch_id)) == 1
    assert poster_view(poster)["erp_reachable"] is True
    import urllib.request
    with urllib.request.urlopen(f"{poster.url}/metrics", timeout=5) as response:
        exposed = response.read().decode()
    assert 'stock_sync_erp_posts_total{status="POSTED"}' in exposed
    for gauge in ("stock_sync_erp_batches_waiting ", "stock_sync_erp_oldest_waiting_seconds ",
                  "stock_sync_erp_call_seconds_bucket{"):
        assert gauge in exposed


def poster_view(worker: WorkerProcess) -> dict:
    import json
    import urllib.request
    request = urllib.request.Request(f"{worker.url}/v1/erp", headers={"Authorization": "Bearer viewer-token"})
    with urllib.request.urlopen(request, timeout=5) as response:
        return json.loads(response.read())


def test_erp_max_rps_paces_a_queue_of_fifty_batches(bootstrap, erp_server, poster, web_port, tmp_path):
    """ERP_MAX_RPS=2 with 50 batches queued: ≥ 24 s, and no one-second window holds more than 2 calls
    (each batch takes 3 calls — look-up, create, post — so about 75 s here)."""
    queued = [batch("ERPRATE-S1", n) for n in range(50)]
    calls = tmp_path / "calls.log"
    poster.stop()
    send_batches(bootstrap, queued)
    paced = erp_worker(bootstrap, erp_server, web_port, ERP_MAX_RPS="2", ERP_TEST_CALL_LOG=str(calls))
    began = time.monotonic()
    paced.start()
    try:
        done = acks(bootstrap, {b.batch_id for b in queued}, expect=50, timeout=240)
        elapsed = time.monotonic() - began
    finally:
        paced.stop()
        poster.start()
    assert len({a["batch_id"] for a in done}) == 50 and {a["status"] for a in done} == {"POSTED"}
    assert elapsed >= 24
    starts = sorted(float(line.split()[0]) for line in calls.read_text().splitlines())
    assert len(starts) >= 150
    # Any three consecutive calls span at least a second (timer resolution allowance: 20 ms).
    assert min(c - a for a, c in zip(starts, starts[2:])) >= 1.0 - 0.02
    assert starts[-1] - starts[0] >= 74


def test_erp_reconcile_lists_only_what_the_erp_refused(bootstrap, erp_server, poster):
    """Run last in this module: every batch sent here is posted except the refused one."""
    import subprocess
    import sys
    from app.settings import REPO_ROOT
    env = {**__import__("os").environ, "KAFKA_BOOTSTRAP": bootstrap, "ERP_URL": erp_server.url,
           "ERP_DATABASE": erp_server.database}
    result = subprocess.run([sys.executable, "-m", "app.cli", "erp-reconcile", "--date", date.today().isoformat(),
                             "--timeout", "30"], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120)
    rows = [line.split() for line in result.stdout.splitlines()[2:]]
    assert result.returncode == 1, result.stdout + result.stderr
    # Rows of this module's locations only: the session's other e2e scenarios book under US01 and
    # may still have batches on their way when this runs.
    ours = {(row[1], row[2]) for row in rows if row[1].startswith("ERP")}
    assert ours == {("ERPREJ-S1", CLOSED), ("ERPREJ-S1", "1200")}
