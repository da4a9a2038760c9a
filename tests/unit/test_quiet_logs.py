"""A start that reads clean: producer back-pressure is a metric and a DEBUG line, not a WARNING."""
from __future__ import annotations

import logging
import logging.config

from app.logging_setup import logging_config
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
