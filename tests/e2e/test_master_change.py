"""SPEC §3 "Master data changes reach the channels", on the real broker: a location's new safety stock
and channel list re-emit every position at it once, and channel.availability follows."""
from __future__ import annotations

import time

from app import topics as t
from tests.e2e.harness import group_caught_up, latest_by_key, read, send, wait_for_master, wait_for_versions
from tests.e2e.scenario import Scenario


def _channels_until(bootstrap: str, scenario: Scenario, expected: dict[str, dict], timeout: float = 60.0) -> dict:
    """channel.availability's latest record per key of the scenario, once it shows `expected` (key → fields)."""
    deadline = time.monotonic() + timeout
    latest: dict[str, dict] = {}
    while time.monotonic() < deadline:
        latest = latest_by_key(read(bootstrap, t.CHANNEL_AVAILABILITY, where=lambda r: r.key and scenario.name in r.key,
                                    settle=0.2, timeout=20))
        if all({f: latest.get(k, {}).get(f) for f in fields} == fields for k, fields in expected.items()):
            return latest
        time.sleep(0.5)
    raise AssertionError(f"channel.availability never showed {expected}: {latest}")


def test_safety_stock_and_channel_change_re_emit_each_position_once_and_the_channels_follow(bootstrap, pipeline):
    s = Scenario("masterfanout")
    sku1, sku2 = s.sku(1), s.sku(2)
    store, dc = s.loc("S1"), s.loc("DC")
    at_store = [f"{sku1}@{store}", f"{sku2}@{store}"]
    send(bootstrap, [s.item(1), s.item(2), s.location("S1", safety_stock=1, channels=("store", "web")),
                     s.location("DC", kind="DC", channels=("web",))])
    wait_for_master(pipeline, skus=[sku1, sku2], locations=[store, dc])
    send(bootstrap, [s.receipt(store, [(sku1, 10, "7.00"), (sku2, 4, "7.00")]), s.receipt(dc, [(sku1, 20, "7.00")])])
    before = wait_for_versions(bootstrap, {at_store[0]: 1, at_store[1]: 1, f"{sku1}@{dc}": 1})
    assert [before[k]["available"] for k in at_store] == [9, 3]
    _channels_until(bootstrap, s, {f"web:{sku1}": {"available": 29, "by_location": {dc: 20, store: 9}},
                                   f"store:{sku1}": {"available": 9}})

    # Safety stock 1 → 3, and the store stops selling on the web.
    send(bootstrap, [s.location("S1", safety_stock=3, channels=("store",))])
    after = wait_for_versions(bootstrap, {k: 2 for k in at_store})

    for key, on_hand in zip(at_store, (10, 4)):
        record = after[key]
        assert record["version"] == 2
        assert record["cause"]["movement_type"] == "MASTER_CHANGE"
        assert record["cause"]["source_system"] == "master"
        assert record["cause"]["source_event_id"].startswith(f"location:{store}:")
        assert (record["on_hand"], record["safety_stock"], record["available"]) == (on_hand, 3, on_hand - 3)
        assert record["previous_available"] == before[key]["available"]
    channels = _channels_until(bootstrap, s, {
        f"web:{sku1}": {"available": 20, "by_location": {dc: 20}},          # the store no longer counts
        f"store:{sku1}": {"available": 7, "by_location": {store: 7}},
        f"store:{sku2}": {"available": 1, "by_location": {store: 1}},
        f"web:{sku2}": {"available": 0, "by_location": {}}})
    assert channels[f"web:{sku1}"]["version"] > 1

    # The same location record again: nothing to re-emit.
    send(bootstrap, [s.location("S1", safety_stock=3, channels=("store",))])
    group_caught_up(bootstrap, pipeline.app_id, [t.MASTER_LOCATIONS, t.MOVEMENTS])
    group_caught_up(bootstrap, pipeline.app_id, [t.MOVEMENTS])   # whatever that sent, too
    records = read(bootstrap, t.AVAILABILITY, where=lambda r: r.key in at_store or r.key == f"{sku1}@{dc}",
                   expect=5, settle=0.5)
    by_key: dict[str, list[tuple[int, str]]] = {}
    for r in records:
        by_key.setdefault(r.key, []).append((r.value["version"], r.value["cause"]["movement_type"]))
    for key in at_store:
        assert sorted(by_key[key]) == [(1, "RECEIPT"), (2, "MASTER_CHANGE")], key    # re-emitted exactly once
    assert by_key[f"{sku1}@{dc}"] == [(1, "RECEIPT")]                               # another location: untouched
    controls = read(bootstrap, t.MOVEMENTS, where=lambda r: r.key == f"*@{store}", expect=1, settle=0.2)
    assert len({r.partition for r in controls}) == len(controls)   # one control record per partition, once
    assert {r.value["source_event_id"] for r in controls} == {after[at_store[0]]["cause"]["source_event_id"]}
