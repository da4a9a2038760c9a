"""Pacing calls to a system that asks to be spared (SPEC §9): a token bucket and retry back-off.

Plain arithmetic on times handed in, so the rules are unit-tested without sleeping; the poster
(agents/erp.py) sleeps for what they say.
"""
from __future__ import annotations

import random
from collections import OrderedDict
from dataclasses import dataclass


_EPSILON = 1e-9


@dataclass
class TokenBucket:
    """At most `rate` calls per second on average, and never more than `burst` at once.

    `burst` 1 (the default) spaces calls at least 1/rate apart: a queue of waiting day batches,
    drained after an outage, reaches the ERP as an even trickle, not a spike.
    """

    rate: float
    burst: float = 1.0
    tokens: float | None = None
    updated_at: float | None = None

    def __post_init__(self) -> None:
        if self.rate <= 0:
            raise ValueError(f"rate must be > 0, got {self.rate}")
        if self.burst < 1:
            raise ValueError(f"burst must be >= 1, got {self.burst}")

    def take(self, now: float) -> float:
        """Take a token for a call at `now` if there is one (returns 0.0: call now); else take
        nothing and return the seconds until there will be one (ask again then).

        Tokens are taken only when the call goes, never reserved ahead: a caller woken late by its
        event loop cannot end up closer than 1/rate to the next call, so the spacing holds at the ERP.
        """
        if self.updated_at is None:
            self.tokens, self.updated_at = self.burst, now
        elapsed = max(0.0, now - self.updated_at)
        self.tokens = min(self.burst, self.tokens + elapsed * self.rate)
        self.updated_at = max(self.updated_at, now)
        if self.tokens >= 1.0 - _EPSILON:  # float sums of elapsed time fall a hair short of whole tokens
            self.tokens = max(0.0, self.tokens - 1.0)
            return 0.0
        return (1.0 - self.tokens) / self.rate


def backoff_delay(attempt: int, *, base: float = 0.5, cap: float = 10.0, rng: random.Random | None = None) -> float:
    """Seconds to wait before retry number `attempt` (1 = the first retry): exponential, capped, with
    full jitter (uniform in [0, bound]) so several workers that failed together do not retry together.
    The bound never drops below base/2, so a retry is never immediate."""
    if attempt < 1:
        raise ValueError(f"attempt must be >= 1, got {attempt}")
    bound = min(cap, base * 2 ** (attempt - 1))
    return max(base / 2, (rng or random).uniform(0, bound))


class RecentKeys:
    """The keys marked within the last `interval` seconds, when each was marked last.

    A key marked longer ago than that is forgotten (at the next mark), so this holds the keys of one
    interval, not every key ever marked: the channel throttle's last publishes, the finance stage's
    announcements of due closes. Marks are kept oldest first, so the ones to forget are at the front.
    """

    def __init__(self, interval: float) -> None:
        self.interval = interval
        # An OrderedDict, not a dict: a dict's first key is found by scanning past the slots its
        # deleted keys left at the front: 2.3 µs a mark against 0.5 (3,000 marks a second, 20,000 keys).
        self.marked_at: OrderedDict[str, float] = OrderedDict()

    def __iter__(self):
        return iter(self.marked_at)

    def recent(self, key: str, now: float) -> bool:
        """Whether `key` was marked less than an interval before `now`."""
        at = self.marked_at.get(key)
        return at is not None and now - at < self.interval

    def mark(self, key: str, now: float) -> None:
        marked_at = self.marked_at
        while marked_at:
            oldest = next(iter(marked_at))
            if now - marked_at[oldest] < self.interval:
                break
            marked_at.popitem(last=False)
        marked_at[key] = now
        marked_at.move_to_end(key)   # the keys stay in marking order
