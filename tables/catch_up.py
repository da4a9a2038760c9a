"""Global tables caught up with their changelogs before any agent handles a record.

Every worker holds every global table (master items, locations, item aliases), but
Faust recovers before processing only the changelog partitions it assigns as *actives*; the others
of a global table are *standbys*, read in the background while the agents already run. After a
restart, or on a worker with an empty data dir, the ingest stage then looked up a UPC in an alias
table that did not hold it yet, and dead-lettered a good POS sale as UNKNOWN_ITEM (the long chaos
run). Faust's own `standbys_ready` flag cannot stand in: it counts a partition with no local
offset as having nothing to read.

So after every rebalance the agents wait until each global table has applied every change its
changelog held when they started waiting: a change made before then is visible to every record
handled after.
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping

import faust

log = logging.getLogger(__name__)

POLL_INTERVAL = 0.1
PULL_AFTER = 2.0        # seconds behind before the catch-up reads a partition itself (tables/restore.py)
REPORT_EVERY = 10.0
OFFSETS_TIMEOUT = 10.0


def changes_behind(ends: Mapping, applied: Mapping, *, trailing_markers: int = 0) -> dict:
    """Per changelog partition, how many offsets the table still has to apply to reach `ends`.

    `ends` is each partition's end offset (the next one to be written); `applied` the last offset
    the table has applied (None: none yet). Partitions that are caught up are left out. A
    transactional changelog (exactly_once) ends with a commit marker that takes an offset but is
    never applied: `trailing_markers=1` allows for it.
    """
    behind = {}
    for tp, end in ends.items():
        last = applied.get(tp)
        missing = end if last is None else end - 1 - last
        if missing > trailing_markers:
            behind[tp] = missing
    return behind


class GlobalTablesCatchUp:
    """Which consumer generation the global tables are known to be current for, and the wait for it."""

    def __init__(self) -> None:
        self.current_for: int | None = None
        self._lock = asyncio.Lock()

    def is_current(self, app: faust.App) -> bool:
        return self.current_for == app.consumer_generation_id

    async def wait(self, app: faust.App) -> None:
        if self.is_current(app):
            return
        async with self._lock:   # one catch-up per generation, whichever agent asks first
            # A stopping worker stops waiting: its agents' events must be let go of for the stop
            # to finish (Faust waits for every event handed to an agent).
            while not self.is_current(app) and not app.should_stop:
                await self._catch_up(app, app.consumer_generation_id)

    async def _catch_up(self, app: faust.App, generation: int) -> None:
        tables = _global_tables(app)
        partitions = [tp for tp in app.consumer.assignment() if tp.topic in tables]
        try:
            ends = await asyncio.wait_for(app.consumer.highwaters(*partitions), OFFSETS_TIMEOUT) if partitions else {}
        except asyncio.TimeoutError:   # the broker is away or the consumer busy: ask again
            log.warning("global tables: no end offsets from the broker within %.0f s, asking again", OFFSETS_TIMEOUT)
            return
        markers = 1 if app.in_transaction else 0
        started = reported = pulled = time.monotonic()
        while app.consumer_generation_id == generation and not app.should_stop:
            applied = {tp: tables[tp.topic].data.persisted_offset(tp) for tp in ends}
            behind = changes_behind(ends, applied, trailing_markers=markers)
            now = time.monotonic()
            if not behind:
                if now - started >= POLL_INTERVAL:
                    log.info("global tables caught up with their changelogs in %.1f s", now - started)
                self.current_for = generation
                return
            if now - pulled >= PULL_AFTER:
                pulled = now
                # Faust fetches a global table's standby partitions in the background and may keep
                # them paused (a restarted worker waited 131 s on one, issue #14): read them ourselves.
                for table_topic, partitions in _by_topic(behind).items():
                    await tables[table_topic].data.bulk_restore(partitions)
            if now - reported >= REPORT_EVERY:
                reported = now
                log.warning("agents waiting %.0f s for global tables: %d changes to apply on %s", now - started,
                            sum(behind.values()), sorted(f"{tp.topic}:{tp.partition}" for tp in behind))
            await asyncio.sleep(POLL_INTERVAL)


def master_changes_behind(app: faust.App) -> int | None:
    """Changes in the global tables' changelogs that this worker has not applied yet, as of the
    consumer's last fetch of each (None: none of their partitions fetched yet). Master data sent
    while the worker runs is read in the background: until this is 0, a raw event may still meet
    an item the worker does not know."""
    if not app.started:
        return None
    tables = _global_tables(app)
    consumer = app.consumer
    ends = {}
    for tp in consumer.assignment():
        if tp.topic in tables and (highwater := consumer.highwater(tp)) is not None:
            ends[tp] = highwater
    if not ends:
        return None
    applied = {tp: tables[tp.topic].data.persisted_offset(tp) for tp in ends}
    return sum(changes_behind(ends, applied).values())


def _global_tables(app: faust.App) -> dict:
    """Changelog topic → global table."""
    return {table.changelog_topic.get_topic_name(): table for table in app.tables.values() if table.is_global}


def _by_topic(partitions) -> dict[str, list[int]]:
    grouped: dict[str, list[int]] = {}
    for tp in partitions:
        grouped.setdefault(tp.topic, []).append(tp.partition)
    return grouped


global_tables = GlobalTablesCatchUp()
