"""Agents take a partition's records in offset order, whatever order Faust hands them over in."""
from __future__ import annotations

from agents.streams import GIVE_UP_AFTER, REWIND_RETRY, STALL_AFTER, PartitionOrder, StallWatch, Turn

TP = ("inventory.movements", 2)


def test_the_first_record_of_a_generation_must_be_the_committed_offset():
    order = PartitionOrder()
    assert order.turn(TP, 78, generation=4, committed=75) is Turn.AHEAD
    assert order.needs_rewind(TP, now=100.0) == 75
    assert order.turn(TP, 79, generation=4, committed=75) is Turn.AHEAD
    assert order.needs_rewind(TP, now=101.0) is None  # one rewind per missing record...
    assert order.needs_rewind(TP, now=100.0 + REWIND_RETRY) == 75  # ...until it is overdue
    assert [order.turn(TP, o, 4, 75) for o in (75, 76, 77, 78)] == [Turn.HANDLE] * 4


def test_records_handled_already_or_below_the_commit_are_behind():
    order = PartitionOrder()
    assert order.turn(TP, 10, 1, committed=12) is Turn.BEHIND
    assert order.turn(TP, 12, 1, committed=12) is Turn.HANDLE
    assert order.turn(TP, 12, 1, committed=12) is Turn.BEHIND


def test_a_partition_never_committed_starts_at_its_first_record():
    order = PartitionOrder()
    assert order.turn(TP, 0, 1, committed=None) is Turn.HANDLE
    assert order.turn(TP, 2, 1, committed=None) is Turn.AHEAD
    assert order.turn(TP, 1, 1, committed=None) is Turn.HANDLE


def test_a_new_generation_starts_again_from_the_committed_offset():
    order = PartitionOrder()
    for offset in range(5, 9):
        assert order.turn(TP, offset, 1, committed=5) is Turn.HANDLE
    # rebalance: nothing was committed past 5, the partition is read again from there
    assert order.turn(TP, 5, 2, committed=5) is Turn.HANDLE


def test_a_record_that_never_comes_back_is_given_up_after_a_bound():
    order = PartitionOrder()
    order.turn(TP, 0, 1, committed=None)
    for i in range(GIVE_UP_AFTER):
        assert order.turn(TP, 10 + i, 1, None) is Turn.AHEAD
    assert order.turn(TP, 10 + GIVE_UP_AFTER, 1, None) is Turn.HANDLE


def test_a_partition_kept_through_a_rebalance_is_read_again_from_its_committed_offset():
    order = PartitionOrder()
    for offset in range(20, 25):
        assert order.turn(TP, offset, 1, committed=20) is Turn.HANDLE
    # new generation, nothing committed since 20, Faust did not seek back: rewind to 20
    assert order.turn(TP, 25, 2, committed=20) is Turn.AHEAD
    assert order.needs_rewind(TP, now=0.0) == 20
    assert order.turn(TP, 20, 2, committed=20) is Turn.HANDLE


def test_the_offset_needed_next_is_the_committed_one_until_the_generation_hands_a_record_over():
    order = PartitionOrder()
    assert order.next_offset(TP, generation=3, committed=40) == 40
    order.turn(TP, 40, generation=3, committed=40)
    assert order.next_offset(TP, generation=3, committed=40) == 41
    assert order.next_offset(TP, generation=4, committed=40) == 40   # a rebalance since


def test_a_partition_is_stalled_when_its_needed_offset_stays_put_while_the_log_holds_it():
    watch = StallWatch()
    assert watch.stalled({TP: (10, 15)}, now=0.0) == []
    assert watch.stalled({TP: (10, 15)}, now=STALL_AFTER - 1) == []
    assert watch.stalled({TP: (10, 16)}, now=STALL_AFTER) == [TP]
    # reported again only after another STALL_AFTER without progress
    assert watch.stalled({TP: (10, 16)}, now=STALL_AFTER + 1) == []
    assert watch.stalled({TP: (10, 16)}, now=2 * STALL_AFTER) == [TP]


def test_progress_or_an_empty_log_is_not_a_stall():
    watch = StallWatch()
    watch.stalled({TP: (10, 15)}, now=0.0)
    assert watch.stalled({TP: (11, 15)}, now=STALL_AFTER) == []        # the agent moved on
    assert watch.stalled({TP: (11, 15)}, now=STALL_AFTER + 5) == []    # its clock started again
    assert watch.stalled({TP: (15, 15)}, now=3 * STALL_AFTER) == []     # nothing left to read
    assert watch.stalled({TP: (None, 15)}, now=4 * STALL_AFTER) == []   # offset not known
    assert watch.since == {}


def test_a_partition_no_longer_assigned_is_forgotten():
    watch = StallWatch()
    watch.stalled({TP: (10, 15)}, now=0.0)
    assert watch.stalled({}, now=STALL_AFTER) == []
    assert watch.since == {}


def test_a_compacted_master_partition_counts_as_read_one_offset_short_of_its_end():
    # A transactional producer may end a compacted topic with a commit marker that no record fills.
    from faust.types import TP

    from agents.streams import end_to_reach
    from app.topics import MASTER_ITEMS, MOVEMENTS
    assert end_to_reach(TP(MOVEMENTS, 0), 10) == 10
    assert end_to_reach(TP(MASTER_ITEMS, 0), 10) == 9
