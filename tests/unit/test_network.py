"""Network availability per channel (SPEC §3 `channel.availability`): folding locations in, throttling."""
from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.domain.availability import ChannelFolds, PublishedVersions, PublishThrottle
from app.domain.keys import channel_key
from app.domain.network import channel_shares, fold_location
from app.models.canonical import SkuNetwork, working_copy
from app.models.records import compact_json, json_bytes

# The location master's channels: stores sell in store and on the web, the DC ships web and Amazon.
CHANNELS = {"S042": ["store", "web"], "S043": ["store"], "DC01": ["web", "amazon"], "X01": []}


def channels_of(location_id: str) -> list[str]:
    return CHANNELS[location_id]


def network(*folds: tuple[str, int, int]) -> SkuNetwork:
    n = SkuNetwork(sku="SKU-1001")
    for location_id, available, version in folds:
        fold_location(n, location_id, available, version, channels_of)
    return n


# --- fold_location ---------------------------------------------------------------------------------

def test_channel_total_sums_only_the_locations_that_serve_the_channel():
    n = network(("S042", 5, 1), ("S043", 3, 1), ("DC01", 40, 1), ("X01", 7, 1))

    assert n.channel_totals == {"store": 8, "web": 45, "amazon": 40}
    assert channel_shares(n, "web", channels_of) == {"DC01": 40, "S042": 5}
    assert channel_shares(n, "store", channels_of) == {"S042": 5, "S043": 3}


def test_fold_reports_the_channels_whose_total_moved():
    n = network(("S042", 5, 1), ("DC01", 40, 1))

    assert fold_location(n, "S042", 2, 2, channels_of) == ["store", "web"]
    assert n.channel_totals == {"store": 2, "web": 42, "amazon": 40}


def test_stale_or_repeated_location_version_is_ignored():
    n = network(("S042", 5, 3))

    assert fold_location(n, "S042", 9, 2, channels_of) == []
    assert fold_location(n, "S042", 9, 3, channels_of) == []
    assert n.by_location["S042"] == [5, 3]
    assert n.channel_totals == {"store": 5, "web": 5}
    assert n.channel_versions == {"store": 1, "web": 1}


def test_channel_version_grows_by_one_per_change_of_its_total():
    n = network(("S042", 5, 1), ("DC01", 40, 1))
    assert n.channel_versions == {"store": 1, "web": 2, "amazon": 1}

    fold_location(n, "DC01", 30, 2, channels_of)
    assert n.channel_versions == {"store": 1, "web": 3, "amazon": 2}

    fold_location(n, "S042", 4, 2, channels_of)
    assert n.channel_versions == {"store": 2, "web": 4, "amazon": 2}


def test_new_location_version_that_leaves_totals_alone_bumps_no_channel():
    n = network(("S042", 5, 1))

    assert fold_location(n, "S042", 5, 2, channels_of) == []
    assert n.by_location["S042"] == [5, 2]
    assert n.channel_versions == {"store": 1, "web": 1}


def test_location_serving_no_channel_changes_no_channel():
    n = network(("S042", 5, 1))

    assert fold_location(n, "X01", 12, 1, channels_of) == []
    assert n.channel_totals == {"store": 5, "web": 5}


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(sorted(CHANNELS)), st.integers(0, 50), st.integers(1, 8)),
                max_size=30))
def test_channel_totals_follow_the_newest_version_of_each_location_whatever_the_arrival_order(updates):
    n = SkuNetwork(sku="SKU-1001")
    newest: dict[str, tuple[int, int]] = {}
    for location_id, available, version in updates:
        before = dict(n.channel_versions)
        changed = fold_location(n, location_id, available, version, channels_of)
        if location_id not in newest or version > newest[location_id][1]:
            newest[location_id] = (available, version)
        assert all(n.channel_versions[c] == before.get(c, 0) + 1 for c in changed)
        assert all(n.channel_versions.get(c) == before.get(c) for c in n.channel_versions if c not in changed)

    for channel in ("store", "web", "amazon"):
        serving = [avail for loc, (avail, _) in newest.items() if channel in CHANNELS[loc]]
        if serving:
            assert n.channel_totals[channel] == sum(serving)


# --- The channel sums a fold keeps (ChannelSums) -----------------------------------------------------

LOCATIONS = ("S042", "S043", "DC01", "X01", "S044")
FOLD = st.tuples(st.just("fold"), st.sampled_from(LOCATIONS), st.integers(0, 50), st.integers(1, 8))
MASTER_CHANGE = st.tuples(st.just("master"), st.sampled_from(LOCATIONS),
                          st.lists(st.sampled_from(["store", "web", "amazon"]), max_size=3, unique=True))
REPARSE = st.tuples(st.just("reparse"))   # the network read again from its JSON: no sums beside it


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(FOLD, FOLD, FOLD, MASTER_CHANGE, REPARSE), max_size=40))
def test_a_fold_from_the_kept_sums_changes_the_network_as_summing_every_location_does(steps):
    served = {loc: list(CHANNELS.get(loc, ["store"])) for loc in LOCATIONS}
    generation = 0
    summed_again = SkuNetwork(sku="SKU-1001")   # every fold sums all locations (no generation)
    from_sums = SkuNetwork(sku="SKU-1001")      # folds reuse the sums while the master is unchanged
    for step in steps:
        if step[0] == "master":
            served[step[1]] = step[2]
            generation += 1
        elif step[0] == "reparse":
            from_sums = SkuNetwork.model_validate_json(from_sums.model_dump_json())
        else:
            _, location_id, available, version = step
            expected = fold_location(summed_again, location_id, available, version, lambda loc: served[loc])
            # The stage folds into a working copy of the network it holds (agents/positions.py).
            from_sums = working_copy(from_sums)
            changed = fold_location(from_sums, location_id, available, version, lambda loc: served[loc], generation)
            assert changed == expected
            assert from_sums.model_dump() == summed_again.model_dump()
            for channel in ("store", "web", "amazon"):
                assert channel_shares(from_sums, channel, lambda loc: served[loc], generation) == \
                    channel_shares(summed_again, channel, lambda loc: served[loc])


def test_sums_taken_under_another_master_are_not_reused():
    served = {"S042": ["store", "web"], "DC01": ["web"]}
    n = SkuNetwork(sku="SKU-1001")
    fold_location(n, "S042", 5, 1, lambda loc: served[loc], master_generation=1)
    fold_location(n, "DC01", 40, 1, lambda loc: served[loc], master_generation=1)
    served["S042"] = ["store"]   # the store no longer sells on the web

    assert fold_location(n, "DC01", 41, 2, lambda loc: served[loc], master_generation=2) == ["web"]
    assert n.channel_totals["web"] == 41
    assert channel_shares(n, "web", lambda loc: served[loc], 2) == {"DC01": 41}


# --- PublishThrottle -------------------------------------------------------------------------------

def test_the_throttle_forgets_keys_published_longer_than_an_interval_ago():
    throttle = PublishThrottle(interval=1.0)
    for n in range(1000):
        throttle.offer(f"web:SKU-{n}", n, now=100.0)
    throttle.offer("web:SKU-0", 0, now=100.5)   # held back: published within the interval

    assert throttle.due(now=101.0) == [("web:SKU-0", 0)]
    assert list(throttle.last_published) == ["web:SKU-0"]
    assert throttle.offer("web:SKU-1", 1, now=101.1) == 1   # forgotten: published at once, as before


def test_first_value_of_a_key_is_published_at_once():
    throttle = PublishThrottle(interval=1.0)

    assert throttle.offer("web:SKU-1001", 10, now=100.0) == 10
    assert throttle.due(now=100.0) == []


def test_values_within_the_interval_are_coalesced_and_the_latest_is_published_when_due():
    throttle = PublishThrottle(interval=1.0)
    throttle.offer("web:SKU-1001", 10, now=100.0)

    assert throttle.offer("web:SKU-1001", 9, now=100.2) is None
    assert throttle.offer("web:SKU-1001", 8, now=100.5) is None
    assert throttle.due(now=100.9) == []
    assert throttle.due(now=101.0) == [("web:SKU-1001", 8)]
    assert throttle.due(now=105.0) == []


def test_value_offered_after_the_interval_is_published_at_once_and_replaces_the_pending_one():
    throttle = PublishThrottle(interval=1.0)
    throttle.offer("web:SKU-1001", 10, now=100.0)
    throttle.offer("web:SKU-1001", 9, now=100.5)

    assert throttle.offer("web:SKU-1001", 7, now=101.2) == 7
    assert throttle.due(now=103.0) == []  # 9 is superseded, never published after 7


def test_keys_are_throttled_independently():
    throttle = PublishThrottle(interval=1.0)
    throttle.offer("web:SKU-1001", 10, now=100.0)

    assert throttle.offer("amazon:SKU-1001", 4, now=100.1) == 4
    assert throttle.offer("web:SKU-2002", 6, now=100.1) == 6


@settings(max_examples=200, deadline=None)
@given(st.floats(0.1, 5.0),
       st.lists(st.tuples(st.sampled_from(["web:SKU-1", "amazon:SKU-1", "store:SKU-2"]), st.integers(0, 99),
                          st.floats(0.0, 3.0), st.booleans()), min_size=1, max_size=40))
def test_throttle_publishes_each_key_at_most_once_per_interval_and_always_its_final_value(interval, offers):
    throttle = PublishThrottle(interval)
    published: dict[str, list[tuple[float, object]]] = {}
    last_offered: dict[str, object] = {}
    now = 0.0
    for key, value, wait, tick in offers:
        now += wait
        last_offered[key] = value
        if (out := throttle.offer(key, value, now)) is not None:
            published.setdefault(key, []).append((now, out))
        if tick:  # the agent's timer runs now and then between events
            for k, v in throttle.due(now):
                published.setdefault(k, []).append((now, v))
    end = now + 2 * interval  # the timer keeps running after the last event
    for k, v in throttle.due(end):
        published.setdefault(k, []).append((end, v))

    for key, values in published.items():
        times = [t for t, _ in values]
        assert all(later - earlier >= interval for earlier, later in zip(times, times[1:]))
    assert {key: values[-1][1] for key, values in published.items()} == last_offered


# --- Pending channel values survive the worker (SPEC §3 channel final state) ----------------------

def test_settle_pending_forgets_only_channels_published_at_or_after_their_pending_version():
    from app.domain.network import settle_pending

    n = SkuNetwork(sku="SKU-1001", pending={"web": 4, "store": 2, "amazon": 7})
    published = {"web": 4, "store": 1}
    settle_pending(n, published.get)
    assert n.pending == {"store": 2, "amazon": 7}


def test_a_value_kept_from_the_state_is_due_at_once_unless_published_within_the_interval():
    t = PublishThrottle(interval=1.0)
    t.keep("web:SKU-1001", "v7")
    assert t.due(now=100.0) == [("web:SKU-1001", "v7")]
    assert t.offer("store:SKU-1001", "v1", now=200.0) == "v1"
    t.keep("store:SKU-1001", "v2")
    assert t.due(now=200.5) == []
    assert t.due(now=201.0) == [("store:SKU-1001", "v2")]


def test_published_versions_keep_the_highest_version_of_the_keys_published_last():
    published = PublishedVersions(max_keys=2)
    published.published("web|SKU-1", 3)
    published.published("web|SKU-2", 1)
    published.published("web|SKU-1", 2)   # an older version after a newer one: the newer stays
    assert published.get("web|SKU-1") == 3
    published.published("web|SKU-3", 5)   # SKU-2 was published least recently: forgotten
    assert published.get("web|SKU-2") is None
    assert (published.get("web|SKU-1"), published.get("web|SKU-3")) == (3, 5)
    assert len(published.versions) == 2


def test_channel_folds_hold_back_a_channel_published_within_the_interval_and_build_it_once_due():
    clock = [100.0]
    folds = ChannelFolds(PublishThrottle(1.0), PublishedVersions(10), lambda location: ["web"],
                         master_generation=lambda: 0, clock=lambda: clock[0])
    network = SkuNetwork(sku="SKU-1001")
    assert [(r.channel, r.available, r.version) for r in folds.fold(network, "S1", 5, 1)] == [("web", 5, 1)]
    folds.published.published(channel_key("web", "SKU-1001"), 1)

    later = working_copy(network)
    assert folds.fold(later, "S2", 4, 1) == []          # web changed, but was published 0.2 s ago
    assert later.pending == {"web": 2}                  # kept with the network until it goes out
    assert folds.fold(working_copy(later), "S1", 5, 1) is None   # a stale version changes nothing

    clock[0] = 101.0
    [(key, record_of)] = folds.throttle.due(clock[0])
    record = record_of()
    assert key == channel_key("web", "SKU-1001")
    assert (record.available, record.version, record.by_location) == (9, 2, {"S1": 5, "S2": 4})


def test_a_change_folded_again_at_its_version_sends_the_channels_this_worker_has_not_sent():
    # A worker folded S1 -> 5 and wrote the network, then was killed before the broker had the
    # channel record. The next owner reads the movement again; its network has that version already.
    clock = [100.0]

    def worker() -> ChannelFolds:
        return ChannelFolds(PublishThrottle(1.0), PublishedVersions(10), lambda location: ["web"],
                            master_generation=lambda: 0, clock=lambda: clock[0])

    killed = worker()
    folded = SkuNetwork(sku="SKU-1", by_location={"S2": [4, 2]}, channel_versions={"web": 1},
                        channel_totals={"web": 4})
    lost_with_the_worker = killed.fold(folded, "S1", 5, 3)
    assert [(r.available, r.version) for r in lost_with_the_worker] == [(9, 2)]
    stored = SkuNetwork.model_validate_json(json_bytes(folded))

    next_owner = worker()
    again = working_copy(stored)
    records = next_owner.fold(again, "S1", 5, 3)
    assert [(r.channel, r.available, r.version, r.by_location) for r in records] == [
        ("web", 9, 2, {"S1": 5, "S2": 4})]
    assert again.by_location == stored.by_location and again.channel_versions == {"web": 2}

    # Sent once (or held back) by this worker: read again, nothing more goes out.
    next_owner.published.published(channel_key("web", "SKU-1"), 2)
    assert next_owner.fold(working_copy(stored), "S1", 5, 3) is None
    holding = worker()
    holding.throttle.offer(channel_key("web", "SKU-1"), "published just now", clock[0])
    held = working_copy(stored)
    assert holding.fold(held, "S1", 5, 3) == [] and held.pending == {"web": 2}   # held back, kept pending
    assert holding.fold(working_copy(held), "S1", 5, 3) is None
    # An older version of the location is not the change that made the network: nothing goes out.
    assert worker().fold(working_copy(stored), "S1", 7, 1) is None


def test_a_resume_never_holds_an_older_version_than_a_fold_since_and_holds_what_the_table_left():
    # A worker takes a SKU over and starts folding at once: a batch folds version 7 of "web" (held
    # back, the key was published within the interval) before writing the network, and the resume
    # then reads the table, where the previous owner left version 5 pending. 7 must go out, last.
    clock = [100.0]
    folds = ChannelFolds(PublishThrottle(1.0), PublishedVersions(10), lambda location: ["web"],
                         master_generation=lambda: 0, clock=lambda: clock[0])
    stored = SkuNetwork(sku="SKU-1", by_location={"S1": [3, 4], "S2": [2, 9]}, channel_versions={"web": 5},
                        channel_totals={"web": 5}, pending={"web": 5})
    folding = working_copy(stored)
    folding.channel_versions["web"], folding.pending = 6, {}
    folds.throttle.offer(channel_key("web", "SKU-1"), "published just now", clock[0])
    assert folds.fold(folding, "S2", 0, 10) == []                 # web: 3 at version 7, held back
    folds.resume(stored)
    clock[0] = 101.0
    [(_, record_of)] = folds.throttle.due(clock[0])
    assert (record_of().available, record_of().version) == (3, 7)

    # With nothing held or published since, the resume holds the table's pending value, built when due.
    other = ChannelFolds(PublishThrottle(1.0), PublishedVersions(10), lambda location: ["web"],
                         master_generation=lambda: 0, clock=lambda: clock[0])
    other.resume(stored)
    [(_, record_of)] = other.throttle.due(clock[0])
    assert (record_of().available, record_of().version, record_of().by_location) == (5, 5, {"S1": 3, "S2": 2})
    # ... and nothing a version this worker has published already.
    published = ChannelFolds(PublishThrottle(1.0), PublishedVersions(10), lambda location: ["web"],
                             master_generation=lambda: 0, clock=lambda: clock[0])
    published.published.published(channel_key("web", "SKU-1"), 5)
    published.resume(stored)
    assert published.throttle.due(clock[0]) == []


@pytest.mark.parametrize("encode", [json_bytes, compact_json])
def test_the_resume_parses_exactly_the_networks_holding_a_pending_channel(encode):
    from app.domain.availability import may_hold_pending_channels

    quiet = SkuNetwork(sku="SKU-1", by_location={"S1": [4, 2]}, channel_totals={"web": 4},
                       channel_versions={"web": 2})
    waiting = quiet.model_copy(update={"pending": {"web": 2}})

    assert not may_hold_pending_channels(encode(quiet))
    assert may_hold_pending_channels(encode(waiting))
    assert SkuNetwork.model_validate_json(encode(waiting)) == waiting
