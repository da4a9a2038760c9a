"""The simulated workload never stamps an event later than the moment it is generated."""
from __future__ import annotations

from datetime import UTC, datetime, timedelta

from app.simulation.workload import Catalogue, RetailWorkload


class FrozenClock:
    """Wall clock the test moves by hand."""

    def __init__(self, at: datetime) -> None:
        self.at = at

    def __call__(self) -> datetime:
        return self.at


def occurred(events) -> list[datetime]:
    return [datetime.fromisoformat(payload["occurred_at"].replace("Z", "+00:00"))
            for _, _, payload in events if "occurred_at" in payload]


def test_generating_faster_than_real_time_never_runs_ahead_of_now():
    wall = FrozenClock(datetime(2026, 12, 1, 9, tzinfo=UTC))
    workload = RetailWorkload(catalogue=Catalogue(n_skus=20, n_stores=2), seed=3, start=wall.at, now=wall)
    stamps = occurred(workload.events(500))  # ~100 ms of simulated spacing each: 50 s ahead unclamped
    assert max(stamps) <= wall.at
    wall.at += timedelta(seconds=2)
    later = occurred(workload.events(50))
    assert max(later) <= wall.at
    assert later[-1] == wall.at  # it catches up with the wall clock, no further


def test_stamps_never_go_back_in_time():
    wall = FrozenClock(datetime(2026, 12, 1, 9, tzinfo=UTC))
    workload = RetailWorkload(catalogue=Catalogue(n_skus=20, n_stores=2), seed=5, start=wall.at, now=wall)
    stamps = occurred(workload.events(100))
    wall.at -= timedelta(seconds=30)  # an NTP step back must not reorder the simulated events
    stamps += occurred(workload.events(100))
    assert stamps == sorted(stamps)


def test_a_start_in_the_past_keeps_its_simulated_spacing():
    start = datetime(2026, 11, 27, 8, tzinfo=UTC)
    workload = RetailWorkload(catalogue=Catalogue(n_skus=20, n_stores=2), seed=7, start=start)
    stamps = occurred(workload.events(200))
    assert start < stamps[0] < stamps[-1] < start + timedelta(minutes=1)
    assert len(set(stamps)) == len(stamps)


def test_a_start_in_the_future_is_brought_back_to_now():
    wall = FrozenClock(datetime(2026, 12, 1, 9, tzinfo=UTC))
    workload = RetailWorkload(catalogue=Catalogue(n_skus=20, n_stores=2), seed=9,
                              start=wall.at + timedelta(hours=1), now=wall)
    assert max(occurred(workload.events(20))) <= wall.at
