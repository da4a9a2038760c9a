"""The stages' timers, which a failure cannot take the worker down with (SPEC §4).

A Faust timer that raises crashes the app (mode's `Service._execute_task` calls `crash`), so the
worker exits, restarts on the same state, and the same sweep raises again: one unreadable value in a
table would stop every stage of every worker that owns it. So each timer here is guarded: a sweep
that raises is logged and counted in `stock_sync_timer_errors_total{timer}`, and runs again at its
next interval. Within a sweep, `each_apart` handles each item on its own (and `kept` filters a
store's scan item by item), so that one bad item (an unparsable position, a channel record whose
location left the master) does not keep the others from going out; `each_owned_partition` walks a
partitioned table one partition's store at a time, never holding the whole table. Timers only
announce or publish what the tables already hold, so a sweep that failed loses nothing: the next
one finds the same state.
"""
from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import TypeVar

import faust

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
    # Carried through Faust's own wrappers (functools.wraps copies it), where a test checks that every
    # stage timer has it.
    sweep.guarded = True
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
            _failed(timer, what(item))
        else:
            handled += 1
    return handled


def kept(items: Iterable[Item], keep: Callable[[Item], bool], *, timer: str,
         what: Callable[[Item], object] = repr) -> list[Item]:
    """The items `keep` says yes to, from a scan that must not await (a store's iterator); one it
    raises on is logged and counted against `timer`, and left out."""
    chosen = []
    for item in items:
        try:
            if keep(item):
                chosen.append(item)
        except Exception:   # noqa: BLE001 - one unreadable value must not hold back the others
            _failed(timer, what(item))
    return chosen


def _failed(timer: str, what: object) -> None:
    log.exception("timer %s: %s failed; the others go on", timer, what)
    metrics.TIMER_ERRORS.labels(timer=timer).inc()


async def each_owned_partition(topic: faust.TopicT, sweep: Callable[[int], Awaitable[object]], *,
                               timer: str) -> int:
    """`sweep` each partition of `topic` this worker is active for, one after the other: a
    partitioned table's sweep scans one partition's store at a time (`items_in_partition`), not the
    whole table at once. A scan must not await (nothing may close the store under its iterator), so
    the agents get their turn between two partitions. One partition that raises is logged and
    counted, and the others go on; how many were swept."""
    async def in_turn(partition: int) -> None:
        await asyncio.sleep(0)
        await sweep(partition)
    return await each_apart(owned_partitions(topic), in_turn, timer=timer,
                            what=lambda partition: f"partition {partition}")


def owned_partitions(topic: faust.TopicT) -> list[int]:
    name = topic.get_topic_name()
    return sorted(tp.partition for tp in app.assignor.assigned_actives() if tp.topic == name)
