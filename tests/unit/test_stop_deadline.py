"""A graceful stop ends within STOP_TIMEOUT: the deadline exits the process, on a thread of its own."""
from __future__ import annotations

import asyncio
import threading
import time
import types

import faust
import pytest

from app.faust_app import app
from app.settings import Settings, SettingsError
from app.stop_deadline import EXIT_STOP_TIMED_OUT, StopDeadline


def test_a_stop_that_outlasts_the_deadline_exits_with_its_code_and_says_what_it_waited_on(caplog):
    exited = threading.Event()
    codes = []
    deadline = StopDeadline(0.05, lambda: "3 records in flight", exit_=lambda code: (codes.append(code), exited.set()))
    deadline.arm()
    assert exited.wait(5)
    assert codes == [EXIT_STOP_TIMED_OUT]
    assert "did not stop within 0 s (STOP_TIMEOUT); still waiting on 3 records in flight" in caplog.text


def test_a_stop_that_finishes_first_is_not_cut_short():
    codes = []
    deadline = StopDeadline(0.1, exit_=codes.append)
    deadline.arm()
    deadline.disarm()
    time.sleep(0.3)
    assert codes == []


def test_a_second_stop_does_not_push_the_deadline_back():
    exited = threading.Event()
    deadline = StopDeadline(0.2, exit_=lambda code: exited.set())
    deadline.arm()
    first = deadline.countdown
    time.sleep(0.1)
    deadline.arm()
    assert deadline.countdown is first
    assert exited.wait(5)


def test_the_exit_happens_even_when_saying_what_the_stop_waits_on_fails(caplog):
    exited = threading.Event()

    def broken() -> str:
        raise RuntimeError("Set changed size during iteration")
    StopDeadline(0.01, broken, exit_=lambda code: exited.set()).arm()
    assert exited.wait(5)
    assert "not known: RuntimeError" in caplog.text


def test_stop_timeout_is_configurable_and_at_least_a_second():
    assert Settings.from_env({}).stop_timeout == 20.0
    assert Settings.from_env({"STOP_TIMEOUT": "45"}).stop_timeout == 45.0
    with pytest.raises(SettingsError, match="STOP_TIMEOUT must be >= 1.0"):
        Settings.from_env({"STOP_TIMEOUT": "0.5"})


def test_only_a_worker_process_arms_a_deadline_when_the_app_stops(monkeypatch):
    assert app.stop_deadline is None   # the app used in-process (tests, tools) never exits by itself
    stopped, armed = [], []

    async def fausts_own_stop(self) -> None:
        stopped.append(bool(armed))
    monkeypatch.setattr(faust.App, "on_stop", fausts_own_stop)
    asyncio.run(app.on_stop())
    assert stopped == [False]
    monkeypatch.setattr(app, "stop_deadline", types.SimpleNamespace(arm=lambda: armed.append(True)), raising=False)
    asyncio.run(app.on_stop())
    assert stopped == [False, True], "the deadline is armed before Faust's stop begins"
