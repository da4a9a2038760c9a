"""The stages' timers (agents/timers.py): a sweep that raises, or one item of it, never takes the
worker down; the next interval tries again (SPEC §4)."""
from __future__ import annotations

import asyncio
import importlib
import logging

import pytest

import agents.timers as timers
from agents.timers import each_apart, guarded
from app import metrics


def errors_of(timer: str) -> float:
    return metrics.TIMER_ERRORS.labels(timer=timer)._value.get()


def test_a_sweep_that_raises_is_logged_and_counted_and_runs_again_next_time(caplog):
    calls = []

    async def sweep_prices() -> None:
        calls.append(len(calls))
        if len(calls) == 1:
            raise ValueError("unreadable day status")

    before = errors_of("sweep_prices")
    sweep = guarded(sweep_prices, interval=1.0)
    with caplog.at_level(logging.ERROR, logger="agents.timers"):
        asyncio.run(sweep())
        asyncio.run(sweep())
    assert calls == [0, 1]
    assert errors_of("sweep_prices") == before + 1
    assert "timer sweep_prices failed" in caplog.text and "unreadable day status" in caplog.text
    assert sweep.__name__ == "sweep_prices"   # Faust names the timer after it


def test_a_cancelled_sweep_is_not_swallowed():
    async def waits_forever() -> None:
        await asyncio.sleep(3600)

    async def scenario() -> None:
        task = asyncio.ensure_future(guarded(waits_forever, interval=1.0)())
        await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    asyncio.run(scenario())


def test_one_item_that_raises_does_not_hold_back_the_others(caplog):
    handled = []

    async def release(position: str) -> None:
        if position == "SKU2@S1":
            raise KeyError("no such location")
        handled.append(position)

    before = errors_of("expire_reservations")
    with caplog.at_level(logging.ERROR, logger="agents.timers"):
        count = asyncio.run(each_apart(["SKU1@S1", "SKU2@S1", "SKU3@S1"], release, timer="expire_reservations",
                                       what=lambda key: f"position {key}"))
    assert count == 2 and handled == ["SKU1@S1", "SKU3@S1"]
    assert errors_of("expire_reservations") == before + 1
    assert "position SKU2@S1 failed" in caplog.text


def test_every_timer_of_every_stage_is_guarded():
    from app.faust_app import app
    from app.worker import STAGES
    for stage in STAGES:
        importlib.import_module(f"agents.{stage}")
    stage_tasks = [task for task in app._app_tasks if task.__module__.startswith("agents.")]
    assert {task.__name__ for task in stage_tasks} >= {
        "flush_coalesced_channels", "resume_pending_channels", "forget_old_sale_costs", "expire_reservations",
        "close_days_after_grace", "close_days_by_the_clock", "forget_old_lineage", "global_tables_catch_up",
        "stalled_partitions_watch", "erp_waiting_gauges"}
    assert [task.__name__ for task in stage_tasks if not getattr(task, "guarded", False)] == []


def test_the_expiry_sweep_scans_partition_by_partition_and_releases_past_one_unreadable_position(monkeypatch):
    from datetime import UTC, datetime, timedelta
    from types import SimpleNamespace

    import agents.expiry as stage
    from app.domain.positions import reservation_key
    from app.models.canonical import OpenReservation, Position
    from app.models.records import compact_json

    now = datetime(2026, 12, 5, 6, tzinfo=UTC)

    def holding(sku: str, order: str, expires_at: datetime) -> tuple[bytes, bytes]:
        reservation = OpenReservation(order_id=order, line_id="1", quantity=2, expires_at=expires_at)
        p = Position(sku=sku, location_id="S1", on_hand=5, reserved=2,
                     reservations={reservation_key(order, "1"): reservation})
        return f"{sku}@S1".encode(), compact_json(p)

    stores = {
        0: [holding("SKU1", "W1", now - timedelta(hours=1)),                   # expired: released
            (b"SKU2@S1", compact_json(Position(sku="SKU2", location_id="S1", on_hand=3))),   # none held
            (b"SKU3@S1", b'{"sku":"SKU3","reservations":{"W9|1":"cut')],       # unreadable
        1: [holding("SKU4", "W4", now + timedelta(hours=1)),                   # not yet
            holding("SKU5", "W5", now - timedelta(minutes=1))],                # expired: released
        2: [holding("SKU6", "W6", now - timedelta(hours=1))],                  # not this worker's
    }
    scanned, released = [], []

    def items_in_partition(partition: int):
        scanned.append(partition)
        return iter(stores[partition])

    async def publish(topic, key, movement) -> None:
        released.append((key, movement.order_id))

    monkeypatch.setattr(stage, "positions", SimpleNamespace(raw_items_in_partition=items_in_partition))
    monkeypatch.setattr(timers, "owned_partitions", lambda topic: [0, 1])
    monkeypatch.setattr(stage, "publish", publish)
    monkeypatch.setattr(stage, "utcnow", lambda: now)
    before = errors_of("expire_reservations")

    asyncio.run(stage.expire_reservations.__wrapped__.__wrapped__())   # under Faust's task and timer wrappers

    assert scanned == [0, 1]
    assert released == [("SKU1@S1", "W1"), ("SKU5@S1", "W5")]
    assert errors_of("expire_reservations") == before + 1


def test_the_trace_retention_sweep_scans_partition_by_partition_and_forgets_only_old_entries(monkeypatch):
    from datetime import UTC, datetime, timedelta
    from types import SimpleNamespace

    import agents.lineage as stage
    from app.domain.lineage import apply_record

    now = datetime.now(UTC)
    cutoff = now - timedelta(seconds=604800)

    def entry(event: str, at: datetime) -> tuple[bytes, bytes]:
        fact = (b'{"source_system":"pos","source_event_id":"%s","stage":"received","at":"%s","detail":{}}'
                % (event.encode(), at.isoformat().encode()))
        return f"pos:{event}".encode(), apply_record(None, fact)

    # The store's scan hides its SOURCE_OFFSET (tables/restore.py, test below).
    stores = {3: [entry("R1", cutoff - timedelta(hours=1)), entry("R2", now), (b"pos:R3", b"not a trace entry")],
              5: [entry("R4", cutoff - timedelta(days=2))]}
    scanned, sent = [], []

    def items_in_partition(partition: int):
        scanned.append(partition)
        return iter(stores[partition])

    async def send(key, value) -> None:
        sent.append((key, value))

    monkeypatch.setattr(stage, "lineage", SimpleNamespace(data=SimpleNamespace(items_in_partition=items_in_partition)))
    monkeypatch.setattr(timers, "owned_partitions", lambda topic: [3, 5])
    monkeypatch.setattr(stage, "lineage_topic", SimpleNamespace(send=send))
    monkeypatch.setattr(stage, "settings", SimpleNamespace(dedupe_retention=604800))
    before = errors_of("forget_old_lineage")

    asyncio.run(stage.forget_old_lineage.__wrapped__.__wrapped__())

    assert scanned == [3, 5]
    assert [key for key, _ in sent] == [b"pos:R1", b"pos:R4"]
    assert all(value.startswith(b'{"forget_before":') for _, value in sent)
    assert errors_of("forget_old_lineage") == before + 1   # R3's entry cannot be read: left, counted


def test_a_partitions_scan_hides_a_folded_tables_source_offset_and_filters_nothing_else():
    from types import SimpleNamespace

    from tables.restore import SOURCE_OFFSET, BulkRestoringStore

    rows = [(b"pos:R1", b"{}"), (SOURCE_OFFSET, b"41"), (b"pos:R2", b"{}")]

    def store(folded_from):
        return SimpleNamespace(_dbs={3: "db of 3"}, _visible_items=lambda db: iter(rows), folded_from=folded_from)

    folded = store(folded_from=SimpleNamespace(topic="internal.lineage"))
    assert list(BulkRestoringStore.items_in_partition(folded, 3)) == [(b"pos:R1", b"{}"), (b"pos:R2", b"{}")]
    assert list(BulkRestoringStore.items_in_partition(store(folded_from=None), 3)) == rows
    assert list(BulkRestoringStore.items_in_partition(folded, 4)) == []   # not open here
