"""The soak run's convergence check (tests/chaos/soak.py), without a broker: what counts as matching."""
from __future__ import annotations

import threading
from types import SimpleNamespace

from tests.chaos.kafka_tools import Observed
from tests.chaos.oracle import ExpectedPosition, MovementRef, OracleResult, RawInput
from tests.chaos.soak import Check, Expected


M1 = MovementRef("A@S1", "pos", "t1", "SALE")
M2 = MovementRef("B@S1", "pos", "t2", "SALE")
REFS = {"m1": M1, "m2": M2}   # what the availability records said of each movement id


def _expected() -> Expected:
    result = OracleResult()
    result.positions["A@S1"] = ExpectedPosition(on_hand=5, reserved=1, version=3)
    result.positions["B@S1"] = ExpectedPosition(on_hand=2, version=1)
    result.posting_kinds = {M1: frozenset({"COGS", "REVENUE"}), M2: frozenset({"COGS"})}
    result.bad_records.append(RawInput("wms.events", -1, -1, "S1", b"[1, 2", 2, "MALFORMED_JSON"))
    return Expected.of(result)


def _tracker(seen: Observed) -> SimpleNamespace:
    return SimpleNamespace(lock=threading.Lock(), seen=seen)


def test_a_position_matches_only_with_the_oracles_version_and_buckets():
    expected = _expected()
    seen = Observed(max_version={"A@S1": 3, "B@S1": 1},
                    latest={"A@S1": (5, 1, 0, 0, 0), "B@S1": (3, 0, 0, 0, 0)})  # B: right version, wrong on_hand
    check = Check.of(_tracker(seen), expected)
    assert (check.positions, check.matched, expected.total) == (1, 1, 6)
    assert not check.converged


def test_converged_when_positions_postings_and_raw_dead_letters_are_all_there():
    expected = _expected()
    seen = Observed(max_version={"A@S1": 3, "B@S1": 1},
                    latest={"A@S1": (5, 1, 0, 0, 0), "B@S1": (2, 0, 0, 0, 0)},
                    movement_refs=dict(REFS),
                    posting_kinds={("m1", "COGS"), ("m1", "REVENUE")},
                    dead_lettered={("inventory.movements", 0, 7)})  # not a raw record: does not count
    check = Check.of(_tracker(seen), expected)
    assert (check.postings, check.dead_letters, check.matched) == (2, 0, 4)
    assert not check.converged
    seen.posting_kinds.add(("m2", "COGS"))
    seen.dead_lettered.add(("wms.events", 3, 12))
    check = Check.of(_tracker(seen), expected)
    assert check.matched == expected.total == 6
    assert check.converged


def test_extra_postings_do_not_stand_in_for_a_missing_one():
    expected = _expected()
    seen = Observed(max_version={"A@S1": 3, "B@S1": 1},
                    latest={"A@S1": (5, 1, 0, 0, 0), "B@S1": (2, 0, 0, 0, 0)},
                    movement_refs=dict(REFS, m3=MovementRef("C@S1", "pos", "t3", "SALE")),
                    # an optional kind of m1, a posting of a movement the oracle has no posting for,
                    # and one whose movement no availability record has named yet
                    posting_kinds={("m1", "COGS"), ("m1", "REVENUE"), ("m1", "COST_ADJUSTMENT"),
                                   ("m3", "COGS"), ("m9", "COGS")},
                    dead_lettered={("wms.events", 3, 12)})
    check = Check.of(_tracker(seen), expected)
    assert check.postings == 2
    assert check.matched == expected.total - 1   # m2's COGS is still missing
    assert not check.converged
