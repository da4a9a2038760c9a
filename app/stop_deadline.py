"""A graceful stop that ends within STOP_TIMEOUT seconds, whatever it waits on.

Faust's stop waits for every record in flight to be acknowledged, commits, flushes the producer
and leaves the group. With the broker gone none of that can finish: the producer holds its batches
until `producer_request_timeout` (Faust's default: 20 minutes) and the commit retries as long. A
worker sent SIGTERM in a broker outage went on for minutes, reconnecting, until it was killed; a
supervisor's stop (Docker's 10 s, Kubernetes' 30 s grace) ends in a SIGKILL anyway.

So a stop has a deadline, as `KafkaStreams.close(timeout)` has: armed when the app begins to stop,
it exits the process (EXIT_STOP_TIMED_OUT) if the stop has not finished by then. That is a crash
as far as the data goes, and as safe: nothing unacknowledged was committed, so those records are
processed again by the next owner (duplicates are dropped downstream by their ids); the tables'
RocksDB writes and their changelog offsets go in one WriteBatch (tables/restore.py), so the data
dir is as a SIGKILL leaves it. The deadline runs on a thread of its own: a stop stuck in the event
loop (or a loop spinning on reconnects) cannot hold it back.
"""
from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from app.logging_setup import exit_now

log = logging.getLogger(__name__)

EXIT_STOP_TIMED_OUT = 72


class StopDeadline:
    """Exit the process `seconds` after `arm()` unless it has exited before; `waiting_on()` says,
    in the log line, what the stop was still waiting for."""

    def __init__(self, seconds: float, waiting_on: Callable[[], str] = lambda: "",
                 exit_: Callable[[int], None] = exit_now) -> None:
        self.seconds = seconds
        self.waiting_on = waiting_on
        self.exit = exit_
        self.countdown: threading.Timer | None = None

    def arm(self) -> None:
        """Start the countdown (once: a second stop of the app does not push the deadline back)."""
        if self.countdown is not None:
            return
        self.countdown = threading.Timer(self.seconds, self._expire)
        self.countdown.daemon = True   # a stop that finishes in time exits without waiting for it
        self.countdown.start()

    def disarm(self) -> None:
        if self.countdown is not None:
            self.countdown.cancel()

    def _expire(self) -> None:
        try:
            detail = self.waiting_on()
        except Exception as exc:  # the exit must happen whatever the description meets
            detail = f"(not known: {exc!r})"
        log.error("the worker did not stop within %.0f s (STOP_TIMEOUT)%s: exiting now with code %d. Records "
                  "not yet committed are processed again by the next owner, as after a crash.",
                  self.seconds, f"; still waiting on {detail}" if detail else "", EXIT_STOP_TIMED_OUT)
        self.exit(EXIT_STOP_TIMED_OUT)
