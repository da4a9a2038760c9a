"""Pacing calls to a system that asks to be spared (SPEC §9): a token bucket and retry back-off.

Plain arithmetic on times handed in, so the rules are unit-tested without sleeping; the poster
(agents/erp.py) sleeps for what they say.
"""
from __future__ import annotations

import random
from dataclasses import dataclass


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
        """Reserve one call; returns how long to wait (seconds from `now`) before making it."""
        if self.updated_at is None:
            self.tokens, self.updated_at = self.burst, now
        elapsed = max(0.0, now - self.updated_at)
        self.tokens = min(self.burst, self.tokens + elapsed * self.rate) - 1.0
        self.updated_at = now
        # A negative balance is a debt: the call may go once it is paid back.
        return 0.0 if self.tokens >= 0 else -self.tokens / self.rate


def backoff_delay(attempt: int, *, base: float = 0.5, cap: float = 10.0, rng: random.Random | None = None) -> float:
    """Seconds to wait before retry number `attempt` (1 = the first retry): exponential, capped, with
    full jitter (uniform in [0, bound]) so several workers that failed together do not retry together.
    The bound never drops below base/2, so a retry is never immediate."""
    if attempt < 1:
        raise ValueError(f"attempt must be >= 1, got {attempt}")
    bound = min(cap, base * 2 ** (attempt - 1))
    return max(base / 2, (rng or random).uniform(0, bound))
