"""The stages' timers, which a failure cannot take the worker down with (SPEC §4).

A Faust timer that raises crashes the app (mode's `Service._execute_task` calls `crash`), so the
worker exits, restarts on the same state, and the same sweep raises again: one unreadable value in a
table would stop every stage of every worker that owns it. So each timer here is guarded: a sweep
that raises is logged and counted in `stock_sync_timer_errors_total{timer}`, and runs again at its
next interval. Within a sweep, `each_apart` handles each item on its own, so that one bad item (an
unparsable position, a channel record whose location left the master) does not keep the others
from going out. Timers only announce or publish what the tables already hold, so a sweep that
failed loses nothing: the next one finds the same state.
"""
from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import TypeVar

from app import metrics
from app.faust_app import app

log = logging.getLogger(__name__)
Item = TypeVar("Item")


def guarded(body: Callable[[], Awaitable[None]], interval: float) -> Callable[[], Awaitable[None]]:
    """`body`, with what it raises logged and counted instead of raised (a cancellation still ends it)."""
    name = body.__name__

    @functools.wraps(body)
    async def sweep() -> None:
        try:
            await body()
        except Exception:   # noqa: BLE001 - the next interval tries again; a crash would only loop
            log.exception("timer %s failed; it runs again in %.1f s", name, interval)
            metrics.TIMER_ERRORS.labels(timer=name).inc()
    sweep.guarded = True   # carried through Faust's own wrappers (functools.wraps copies it): tests look
    return sweep


def timer(interval: float) -> Callable[[Callable[[], Awaitable[None]]], Callable[[], Awaitable[None]]]:
    """`@app.timer(interval)` for a guarded body."""
    def register(body: Callable[[], Awaitable[None]]) -> Callable[[], Awaitable[None]]:
        return app.timer(interval=interval)(guarded(body, interval))
    return register


async def each_apart(items: Iterable[Item], handle: Callable[[Item], Awaitable[object]], *, timer: str,
                     what: Callable[[Item], object] = repr) -> int:
    """`handle` each item; one that raises is logged (as `what(item)`) and counted against `timer`,
    and the rest go on. How many were handled."""
    handled = 0
    for item in items:
        try:
            await handle(item)
        except Exception:   # noqa: BLE001 - one item's failure must not hold back the others
            log.exception("timer %s: %s failed; the others go on", timer, what(item))
            metrics.TIMER_ERRORS.labels(timer=timer).inc()
        else:
            handled += 1
    return handled
