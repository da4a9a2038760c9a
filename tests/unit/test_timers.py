"""The stages' timers (agents/timers.py): a sweep that raises, or one item of it, never takes the
worker down; the next interval tries again (SPEC §4)."""
from __future__ import annotations

import asyncio
import importlib
import logging

import pytest

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
