"""When the global tables count as caught up with their changelogs (tables/catch_up.py)."""
from tables.catch_up import changes_behind

A0, A1, A2 = ("aliases", 0), ("aliases", 1), ("aliases", 2)


def test_a_table_that_applied_the_last_record_of_each_partition_is_caught_up():
    assert changes_behind({A0: 10, A1: 1}, {A0: 9, A1: 0}) == {}


def test_an_empty_partition_needs_nothing_even_with_no_local_offset():
    assert changes_behind({A0: 0}, {A0: None}) == {}


def test_a_partition_with_no_local_offset_must_read_all_of_it():
    # Faust's own standbys_ready counts this case as done: the bug behind the UNKNOWN_ITEM dead letters.
    assert changes_behind({A0: 7}, {}) == {A0: 7}
    assert changes_behind({A0: 7}, {A0: None}) == {A0: 7}


def test_partly_applied_partitions_report_what_is_left():
    assert changes_behind({A0: 10, A1: 5, A2: 3}, {A0: 4, A1: 4, A2: 2}) == {A0: 5}


def test_records_written_after_the_wait_began_do_not_extend_it():
    # The targets are the end offsets when the wait began; a table ahead of them is caught up.
    assert changes_behind({A0: 10}, {A0: 25}) == {}


def test_a_transactional_changelog_may_end_with_one_commit_marker():
    assert changes_behind({A0: 10}, {A0: 8}, trailing_markers=1) == {}
    assert changes_behind({A0: 10}, {A0: 7}, trailing_markers=1) == {A0: 2}
    assert changes_behind({A0: 10}, {A0: 8}) == {A0: 1}
