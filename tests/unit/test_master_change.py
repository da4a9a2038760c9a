"""A location's safety stock or channels change (SPEC §3 "Master data changes reach the channels"):
which records trigger a re-emission, what each position re-emits, and that it happens once."""
from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timezone
from decimal import Decimal

from app.domain.availability import MASTER_CHANGE, master_change_record
from app.domain.master import changes_positions, location_changes, shows_change
from app.domain.network import channel_shares, fold_location
from app.domain.positions import PositionContext, apply, apply_location_change, new_position
from app.models.canonical import LocationChange, MovementType, SkuNetwork
from app.models.raw import Location
from tests.factories import make_movement

T0 = datetime(2026, 11, 27, 10, 0, tzinfo=timezone.utc)
T1 = datetime(2026, 11, 27, 11, 0, tzinfo=timezone.utc)
CTX = PositionContext(now_epoch=int(T1.timestamp()), dedupe_retention=7 * 24 * 3600,
                      standard_cost=Decimal("7.00"), safety_stock=2, source_record="3@41")


def store(safety_stock: int = 2, channels: tuple[str, ...] = ("store", "web"), **kw) -> Location:
    fields = {"location_id": "S042", "type": "STORE", "legal_entity": "US01", **kw}
    return Location(safety_stock=safety_stock, channels=list(channels), **fields)


def changes(previous: Location | None, new: Location, offset: int = 17) -> list[LocationChange]:
    return location_changes(previous, new, partitions=4, record_partition=1, record_offset=offset, occurred_at=T1)


def stocked(on_hand: int = 10):
    """S042's position of SKU-1001 after a receipt, with the old safety stock 2: available 8, version 1."""
    receipt = make_movement(movement_type=MovementType.RECEIPT, quantity=on_hand, source_event_id="po-1",
                            correlation_id="po-1", occurred_at=T0, unit_cost=Decimal("7.10"))
    return apply(new_position("SKU-1001", "S042"), receipt, CTX).position


# --- which master records trigger -------------------------------------------------------------------

def test_a_new_safety_stock_or_channel_list_triggers():
    assert changes_positions(store(2), store(5))
    assert changes_positions(store(channels=("store", "web")), store(channels=("store",)))
    assert changes_positions(store(channels=("store",)), store(channels=("store", "amazon")))


def test_first_sight_resend_and_other_fields_do_not_trigger():
    assert not changes_positions(None, store())                                   # first sight
    assert not changes_positions(store(), store())                                # the same record again
    assert not changes_positions(store(), store(legal_entity="US02", currency="CAD"))   # nothing positions show
    assert not changes_positions(store(channels=("store", "web")), store(channels=("web", "store", "web")))
    assert changes(store(), store()) == []


def test_one_control_record_per_partition_with_one_id_naming_the_master_record():
    made = changes(store(2), store(5, channels=("web", "store")))

    assert [c.partition for c in made] == [0, 1, 2, 3]
    assert {c.partitions for c in made} == {4}
    assert len({c.source_event_id for c in made}) == 1
    change = made[0]
    assert change.source_event_id.startswith("location:S042:") and change.source_event_id.endswith(":1.17")
    assert (change.location_id, change.safety_stock, change.channels, change.occurred_at) == \
        ("S042", 5, ["store", "web"], T1)
    assert change.change_id == f"master:{change.source_event_id}"


def test_a_redelivered_master_record_makes_the_same_ids_and_a_later_change_back_new_ones():
    first = changes(store(2), store(5), offset=17)
    assert changes(store(2), store(5), offset=17) == first              # the same record read again
    back_and_forth_again = changes(store(2), store(5), offset=19)       # 2 → 5 → 2 → 5: a new change
    assert back_and_forth_again[0].change_id != first[0].change_id


def test_a_worker_sees_the_change_once_its_master_holds_it():
    change = changes(store(2), store(5, channels=("web", "store")))[0]
    assert not shows_change(store(2), change)
    assert not shows_change(None, change)
    assert shows_change(store(5, channels=("store", "web")), change)


# --- what a position re-emits -------------------------------------------------------------------------

def test_the_position_is_re_emitted_with_a_new_version_the_new_safety_stock_and_its_available():
    position = stocked(10)
    change = changes(store(2), store(5))[0]

    outcome = apply_location_change(position, change, CTX)

    p = outcome.position
    assert (p.on_hand, p.safety_stock, p.available, p.version) == (10, 5, 5, 2)
    assert outcome.previous_available == 8
    assert outcome.applied is None                 # nothing moved: nothing to post
    assert not outcome.follow_ups
    record = master_change_record(outcome.as_emitted, outcome.previous_available, change, T1)
    assert (record.version, record.safety_stock, record.available, record.previous_available) == (2, 5, 5, 8)
    assert record.cause.movement_type == MASTER_CHANGE
    assert (record.cause.source_system, record.cause.source_event_id, record.cause.correlation_id) == \
        ("master", change.source_event_id, "S042")
    assert record.occurred_at == T1


def test_a_channel_change_alone_re_emits_too_with_available_unchanged():
    outcome = apply_location_change(stocked(10), changes(store(2), store(2, channels=("store",)))[0], CTX)

    assert (outcome.position.version, outcome.position.available, outcome.previous_available) == (2, 8, 8)


def test_the_change_leaves_every_other_bucket_and_the_cost_alone():
    position = stocked(10)
    after = apply_location_change(position, changes(store(2), store(0))[0], CTX).position

    unchanged = ("on_hand", "reserved", "quality_control", "damaged", "in_transit", "avg_cost", "reservations")
    assert {f: getattr(after, f) for f in unchanged} == {f: getattr(position, f) for f in unchanged}
    assert after.available == 10


# --- once only ------------------------------------------------------------------------------------------

def test_a_redelivered_control_record_bumps_no_version_twice():
    change = changes(store(2), store(5))[0]
    once = apply_location_change(stocked(10), change, CTX).position

    again = apply_location_change(once, change, replace(CTX, source_record="3@99"))   # another record, same id

    assert again.duplicate and not again.replay
    assert again.position is once
    assert once.version == 2


def test_the_record_that_applied_it_delivered_again_emits_the_same_record_again():
    """The worker stopped after saving the position, maybe before Kafka had the availability record."""
    change = changes(store(2), store(5))[0]
    once = apply_location_change(stocked(10), change, CTX)

    replay = apply_location_change(once.position, change, CTX)   # same source_record "3@41"

    assert replay.replay and replay.position is once.position
    first = master_change_record(once.as_emitted, once.previous_available, change, T1)
    again = master_change_record(replay.as_emitted, replay.previous_available, change, T1)
    assert again == first


def test_the_next_movement_keeps_the_new_safety_stock_and_the_next_version():
    changed = apply_location_change(stocked(10), changes(store(2), store(5))[0], CTX).position
    sale = make_movement(movement_type=MovementType.SALE, quantity=1, source_event_id="sale-1",
                         correlation_id="sale-1", occurred_at=T1)

    after = apply(changed, sale, replace(CTX, safety_stock=5)).position

    assert (after.version, after.safety_stock, after.available) == (3, 5, 4)


# --- the channel sums follow -----------------------------------------------------------------------------

def test_a_location_that_left_a_channel_drops_out_of_its_total_and_its_by_location():
    served = {"S042": ["store", "web"], "DC01": ["web"]}
    network = SkuNetwork(sku="SKU-1001")
    fold_location(network, "S042", 8, 1, lambda loc: served[loc])
    fold_location(network, "DC01", 40, 1, lambda loc: served[loc])
    assert network.channel_totals == {"store": 8, "web": 48}

    served["S042"] = ["store"]                          # the master took S042 off the web
    changed = fold_location(network, "S042", 5, 2, lambda loc: served[loc])   # its MASTER_CHANGE record

    assert changed == ["store", "web"]
    assert network.channel_totals == {"store": 5, "web": 40}
    assert channel_shares(network, "web", lambda loc: served[loc]) == {"DC01": 40}


def test_a_location_with_nothing_available_leaving_a_channel_still_changes_its_by_location():
    served = {"S042": ["store", "web"], "DC01": ["web"]}
    network = SkuNetwork(sku="SKU-1001")
    fold_location(network, "S042", 0, 1, lambda loc: served[loc])
    fold_location(network, "DC01", 40, 1, lambda loc: served[loc])
    web_version = network.channel_versions["web"]

    served["S042"] = ["store"]
    changed = fold_location(network, "S042", 0, 2, lambda loc: served[loc])

    assert changed == ["web"]                           # total still 40, but S042 is no longer counted
    assert network.channel_versions["web"] == web_version + 1
    assert channel_shares(network, "web", lambda loc: served[loc]) == {"DC01": 40}


def test_a_network_saved_before_memberships_were_kept_publishes_nothing_new_for_them():
    served = {"S042": ["store", "web"]}
    network = SkuNetwork(sku="SKU-1001", by_location={"S042": [8, 1]}, channel_totals={"store": 8, "web": 8},
                         channel_versions={"store": 1, "web": 1})

    assert fold_location(network, "S042", 8, 2, lambda loc: served[loc]) == []
    assert network.channel_versions == {"store": 1, "web": 1}
