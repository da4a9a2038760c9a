"""Two workers on one host: a request for a key is answered by the worker that owns its partition.

Keys are raw UTF-8 bytes everywhere, so the router (hashing the SKU with the table's changelog key
codec) must pick the partition the producer picked for `inventory.movements`, which is partitioned
by SKU; if it did not, the owner would answer 404 from a partition that does not hold the key.
"""
from __future__ import annotations

import shutil
import time
from urllib.parse import quote

import pytest
from aiokafka.partitioner import murmur2

from app import topics as t
from tests.conftest import TEST_HOME
from tests.e2e.harness import (
    WorkerProcess,
    api,
    declare_changelogs,
    read,
    send,
    wait_for_api,
    wait_for_master_views,
    wait_for_versions,
)
from tests.e2e.scenario import Scenario

pytestmark = pytest.mark.e2e

PARTITIONS = 8


def partition_of(key: str) -> int:
    """What the Kafka default partitioner does with raw key bytes (and what the router must do): a
    position's partition is its SKU's."""
    return (murmur2(key.encode()) & 0x7FFFFFFF) % PARTITIONS


@pytest.fixture(scope="module")
def workers(bootstrap, pipeline):
    """Two workers of one app on this host, started one after the other.

    The tables' changelog topics are declared first (see `declare_changelogs`), as a deployment
    declares its topics before starting workers.
    """
    declare_changelogs(bootstrap, "e2e-routing")
    pair = []
    for n, name in enumerate(("routing-a", "routing-b")):
        data = TEST_HOME / "workers" / name
        shutil.rmtree(data, ignore_errors=True)
        pair.append(WorkerProcess(bootstrap, data, web_port=pipeline.web_port + 100 + n, app_id="e2e-routing"))
    try:
        for worker in pair:
            worker.start(wait_ready=180)
        yield pair
    finally:
        for worker in pair:
            worker.stop()


def wait_for_both_owners(workers: list[WorkerProcess], skus: list[str], timeout: float = 240.0) -> dict:
    """Until both workers own positions partitions and each SKU's view is served by the owner of its
    partition: the SKU's partition of inventory.movements → the worker that answers.

    The availability topic does not say this: the session's shared pipeline consumes the same raw
    topics and publishes there too, while this new group may still be reading the session's backlog.
    """
    deadline = time.monotonic() + timeout
    answer = None
    while time.monotonic() < deadline:
        answers = {sku: [api(w, f"/v1/positions/{quote(sku)}") for w in workers] for sku in skus}
        if all(a.status == 200 and a.json["partition"] == partition_of(sku) for sku in skus for a in answers[sku]):
            owners = {partition_of(sku): answers[sku][0].json["served_by"] for sku in skus}
            if set(owners.values()) == {w.url for w in workers}:
                return owners
        answer = answers
        time.sleep(1.0)
    raise AssertionError(f"the two workers never shared the partitions: {answer}")


@pytest.fixture(scope="module")
def network(bootstrap, workers):
    """SKUs enough that their partitions are every partition, hence both workers' (inventory.movements
    is partitioned by SKU), each received at two locations with its own quantities."""
    s = Scenario("routing")
    skus: list[str] = []
    while {partition_of(sku) for sku in skus} != set(range(PARTITIONS)):
        skus.append(s.sku(len(skus) + 1))
    codes = ["L1", "L2"]
    locations = [s.loc(c) for c in codes]
    send(bootstrap, [*(s.item(n + 1) for n in range(len(skus))), *(s.location(c, channels=("web",)) for c in codes)])
    wait_for_master_views(workers, skus, locations, timeout=120)
    quantities = {(sku, loc): 10 * n + j + 1 for n, sku in enumerate(skus) for j, loc in enumerate(locations)}
    receipts = {key: f"{s.name}-R{n}" for n, key in enumerate(quantities)}
    send(bootstrap, [s.receipt(loc, [(sku, quantity, "5.00")], event_id=receipts[(sku, loc)])
                     for (sku, loc), quantity in quantities.items()])
    wait_for_versions(bootstrap, {f"{sku}@{loc}": 1 for sku, loc in quantities}, timeout=120)
    owners = wait_for_both_owners(workers, skus)
    return {"skus": skus, "locations": locations, "quantities": quantities, "receipts": receipts, "owners": owners}


def test_each_worker_answers_for_keys_the_other_owns(bootstrap, workers, network):
    owners = network["owners"]
    assert set(owners.values()) == {w.url for w in workers}
    served = {}
    for (sku, loc), quantity in network["quantities"].items():
        key = f"{sku}@{loc}"
        answers = [api(w, f"/v1/positions/{quote(sku)}/{quote(loc)}") for w in workers]
        for answer in answers:
            assert answer.status == 200, (key, answer)
            assert answer.json["on_hand"] == quantity and answer.json["version"] == 1
            assert answer.json["partition"] == partition_of(sku)
            assert answer.json["served_by"] == owners[partition_of(sku)]
        served[key] = answers[0].json["served_by"]
    # Each worker was asked for keys that the other one owns, and forwarded them.
    assert set(served.values()) == {w.url for w in workers}

    # The data really lives where the router sent the request: the partition of inventory.movements
    # the movement went to, which is its SKU's, whatever its location.
    skus = set(network["skus"])
    movements = read(bootstrap, t.MOVEMENTS, expect=len(served),
                     where=lambda r: r.key is not None and r.key.rpartition("@")[0] in skus)
    assert {r.key: r.partition for r in movements} == {k: partition_of(k.rpartition("@")[0]) for k in served}


def test_positions_of_a_sku_are_answered_by_its_owner(workers, network):
    served_by = set()
    for sku in network["skus"]:
        answers = [api(w, f"/v1/positions/{quote(sku)}").json for w in workers]
        for body in answers:
            # All of a SKU's locations are in one partition, so with one worker, which answers for them all.
            assert body["partition"] == partition_of(sku)
            assert body["served_by"] == network["owners"][partition_of(sku)]
            assert [p["location_id"] for p in body["positions"]] == sorted(network["locations"])
        assert answers[0] == answers[1]
        assert answers[0]["locations"] == len(network["locations"])
        assert answers[0]["totals"]["on_hand"] == sum(q for (s, _), q in network["quantities"].items() if s == sku)
        assert {p["on_hand"] for p in answers[0]["positions"]} == {
            q for (s, _), q in network["quantities"].items() if s == sku}
        served_by.add(answers[0]["served_by"])
    # Each worker answered for the SKUs it owns, and the other forwarded them.
    assert served_by == {w.url for w in workers}


def test_channel_and_trace_views_route_by_their_own_keys(workers, network):
    locations = network["locations"]
    for sku in network["skus"]:
        channel = [wait_for_api(w, f"/v1/channels/web/availability/{quote(sku)}", timeout=60,
                                until=lambda a: a.status == 200 and len(a.json["by_location"]) == len(locations))
                   for w in workers]
        assert channel[0].json["served_by"] == channel[1].json["served_by"] == network["owners"][partition_of(sku)]
        assert channel[0].json["partition"] == partition_of(sku)
        assert channel[0].json["available"] == channel[1].json["available"]
        assert channel[0].json["available"] == sum(q for (s, _), q in network["quantities"].items() if s == sku)
    for event_id in list(network["receipts"].values())[:4]:
        traces = [wait_for_api(w, f"/v1/trace/wms/{quote(event_id)}", timeout=60,
                               until=lambda a: a.status == 200 and a.json["applied"]) for w in workers]
        assert traces[0].json["served_by"] == traces[1].json["served_by"]
        assert traces[0].json["partition"] == partition_of(f"wms:{event_id}")
        assert traces[0].json["applied"][0]["version"] == 1


def test_auth_travels_with_the_forwarded_request(workers, network):
    # A SKU the first worker does not own: its answer is the second worker's.
    sku = next(sku for sku in network["skus"] if network["owners"][partition_of(sku)] == workers[1].url)
    location = network["locations"][0]
    path = f"/v1/positions/{quote(sku)}/{quote(location)}"
    assert api(workers[0], path, token=None).status == 401
    assert api(workers[0], path, token="wrong").status == 401
    forwarded = api(workers[0], path)
    assert forwarded.status == 200 and forwarded.json["served_by"] == workers[1].url
    assert forwarded.headers["Content-Type"].startswith("application/json")
    missing = api(workers[0], f"/v1/positions/{quote(sku)}/NOWHERE-{location}")
    assert missing.status == 404 and missing.json["error"] == "NOT_FOUND"
