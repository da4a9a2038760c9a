"""A start that reads clean: producer back-pressure is a metric and a DEBUG line, not a WARNING."""
from __future__ import annotations

import logging
import logging.config

from app.logging_setup import RepeatedClientErrors, logging_config
from app.metrics import PRODUCER_BUFFER_FULL


def test_producer_buffer_full_is_counted_and_kept_below_info(capsys):
    logging.config.dictConfig(logging_config(json_lines=False))
    before = PRODUCER_BUFFER_FULL._value.get()
    producer_log = logging.getLogger("faust.transport.producer")
    producer_log.warning("producer buffer full size 101")
    producer_log.warning("producer stopped: act on this")
    out = capsys.readouterr().out
    assert "producer buffer full" not in out
    assert "[WARNING] faust.transport.producer: producer stopped: act on this" in out
    assert PRODUCER_BUFFER_FULL._value.get() == before + 1


def test_an_overlapping_timer_is_information_saying_what_to_watch(capsys):
    logging.config.dictConfig(logging_config(json_lines=False))
    logging.getLogger("mode.timers").warning("Timer %s is overlapping (interval=%r runtime=%r)", "commit", 2.8, 12.1)
    out = capsys.readouterr().out
    assert "[WARNING]" not in out
    assert "[INFO] mode.timers: Timer commit is overlapping (interval=2.8 runtime=12.1)" in out
    assert "stock_sync_worker_lag" in out


def test_a_broker_outage_logs_each_client_error_once_per_window_with_what_was_held_back(capsys):
    logging.config.dictConfig(logging_config(json_lines=False))
    clock = [100.0]
    repeats = next(f for f in logging.getLogger().handlers[0].filters if isinstance(f, RepeatedClientErrors))
    repeats.clock = lambda: clock[0]
    conn, fetcher = logging.getLogger("aiokafka"), logging.getLogger("aiokafka.consumer.fetcher")
    for _ in range(50):
        conn.error("Unable connect to node with id %s: %s", 1, "[Errno 111] Connect call failed")
        fetcher.error("Failed fetch messages from %s: %s", 1, "NodeNotReadyError")
        clock[0] += 0.1   # 50 of each in 5 s
    conn.info("Discovered coordinator %s", 1)   # below WARNING: not held back
    clock[0] += RepeatedClientErrors.WINDOW
    conn.error("Unable connect to node with id %s: %s", 1, "[Errno 111] Connect call failed")
    logging.getLogger("app.stages").error("Unable connect to node with id %s: %s", 1, "not aiokafka's: kept")
    logging.getLogger("app.stages").error("Unable connect to node with id %s: %s", 1, "not aiokafka's: kept")
    lines = capsys.readouterr().out.splitlines()
    assert sum("aiokafka: Unable connect" in line for line in lines) == 2
    assert sum("aiokafka.consumer.fetcher: Failed fetch" in line for line in lines) == 1
    assert lines[-3].endswith("Unable connect to node with id 1: [Errno 111] Connect call failed "
                              "(49 more like it in the last 15 s not logged)")
    assert sum("Discovered coordinator 1" in line for line in lines) == 1
    assert sum("not aiokafka's: kept" in line for line in lines) == 2
