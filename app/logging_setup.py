"""Logging of the worker: plain text or JSON lines (LOG_FORMAT=json), with correlation ids, tokens redacted."""
from __future__ import annotations

import logging
import logging.config
import os
import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

import orjson

# The correlation id of what is being handled right now (a web request's id, or an event's
# correlation id when a stage binds one); every log record made meanwhile carries it.
correlation_id: ContextVar[str | None] = ContextVar("correlation_id", default=None)

_STANDARD_ATTRS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}
_BEARER = re.compile(r"(?i)(bearer\s+)[^\s'\",;]+")
_secrets: set[str] = set()


def exit_now(code: int, exit_=os._exit) -> None:
    """Stop the process at once with `code`, its log written out first: for a worker that must not
    go on (no `finally`, no commit, no other stage's work may run after this)."""
    for handler in logging.getLogger().handlers:
        handler.flush()
    exit_(code)


@contextmanager
def correlated(cid: str | None) -> Iterator[None]:
    """Tag every log record made inside the block with `cid`."""
    token = correlation_id.set(cid)
    try:
        yield
    finally:
        correlation_id.reset(token)


def redact(text: str) -> str:
    """Remove bearer credentials and any configured token from a piece of log text."""
    text = _BEARER.sub(r"\1[REDACTED]", text)
    for secret in _secrets:
        if secret in text:
            text = text.replace(secret, "[REDACTED]")
    return text


class RedactSecrets(logging.Filter):
    """Defence in depth: no record leaves a handler with a token in it, whoever logged it."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True


class ProducerBackPressure(logging.Filter):
    """Faust warns "producer buffer full size N" on every flush it has to wait for: that is the
    producer's normal back-pressure under load, nothing an operator can act on. Count it
    (`stock_sync_producer_buffer_full_total`) and keep the line at DEBUG."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name == "faust.transport.producer" and record.levelno == logging.WARNING \
                and str(record.msg).startswith("producer buffer full"):
            from app.metrics import PRODUCER_BUFFER_FULL
            PRODUCER_BUFFER_FULL.inc()
            # Handlers compare the record's own level: at the default INFO they now drop it.
            record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        return True


class TimerOverlap(logging.Filter):
    """mode warns "Timer commit is overlapping" whenever one run of a periodic timer outlasts its
    interval: on a busy box, a slow commit or flush at start. One late run needs no action; a worker
    that stays behind shows it in `stock_sync_worker_lag`. Kept at INFO, saying what to watch."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno == logging.WARNING and str(record.msg).startswith("Timer %s is overlapping"):
            record.levelno, record.levelname = logging.INFO, "INFO"
            record.msg = str(record.msg) + " (a busy worker; act only if stock_sync_worker_lag keeps growing)"
        return True


class RepeatedClientErrors(logging.Filter):
    """aiokafka logs every failed connect, metadata refresh, fetch and produce, several times a
    second per client while a broker is away: 18,000 lines in the first two minutes of an outage
    (one worker), which buries everything else and fills disks. Per logger and message template,
    one warning or error per WINDOW seconds passes, carrying the count of those held back since."""

    WINDOW = 10.0

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.clock = clock
        # (logger, template) -> (passed at, held back since). Bounded: aiokafka logs with constant
        # templates (its arguments vary, not `record.msg`), a few dozen in all.
        self.last_passed: dict[tuple[str, object], tuple[float, int]] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING or not record.name.startswith("aiokafka"):
            return True
        key, now = (record.name, record.msg), self.clock()
        seen = self.last_passed.get(key)
        if seen is not None and now - seen[0] < self.WINDOW:
            self.last_passed[key] = (seen[0], seen[1] + 1)
            return False
        if seen is not None and seen[1]:
            record.msg, record.args = f"{record.getMessage()} ({seen[1]} more like it in the last " \
                                      f"{now - seen[0]:.0f} s not logged)", None
        self.last_passed[key] = (now, 0)
        return True


class CorrelationFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "correlation_id", None) is None:
            record.correlation_id = correlation_id.get()
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, correlation id, and any `extra=` fields."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        cid = getattr(record, "correlation_id", None) or correlation_id.get()
        if cid:
            entry["correlation_id"] = cid
        for key, value in vars(record).items():
            if key not in _STANDARD_ATTRS and key != "correlation_id" and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exception"] = redact(self.formatException(record.exc_info))
        return orjson.dumps(entry, default=str).decode()


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("[%(asctime)s] [%(process)d] [%(levelname)s] %(name)s: %(message)s%(cid)s")

    def format(self, record: logging.LogRecord) -> str:
        cid = getattr(record, "correlation_id", None) or correlation_id.get()
        record.cid = f" [cid={cid}]" if cid else ""
        return super().format(record)


def logging_config(json_lines: bool, level: str = "INFO", stream: str = "ext://sys.stdout") -> dict:
    """A `logging.config.dictConfig` for the worker (handed to Faust/mode, which apply it at start)."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {
            "redact": {"()": RedactSecrets},
            "correlation": {"()": CorrelationFilter},
            "back_pressure": {"()": ProducerBackPressure},
            "timer_overlap": {"()": TimerOverlap},
            "client_errors": {"()": RepeatedClientErrors},
        },
        "formatters": {"main": {"()": JsonFormatter if json_lines else TextFormatter}},
        "handlers": {
            "default": {
                "class": "logging.StreamHandler",
                "stream": stream,
                "formatter": "main",
                "filters": ["client_errors", "correlation", "redact"],
                "level": level,
            },
        },
        "loggers": {"faust.transport.producer": {"filters": ["back_pressure"]},
                    "mode.timers": {"filters": ["timer_overlap"]}},
        "root": {"level": level, "handlers": ["default"]},
    }


def configure(app: Any, settings: Any) -> None:
    """Wire logging for a worker: Faust's worker applies `app.conf.logging_config` when it starts."""
    _secrets.update(settings.api_tokens)
    config = logging_config(settings.log_json)
    app.conf.logging_config = config
    # Also now, so anything logged before the worker starts is formatted (and redacted) the same way.
    logging.config.dictConfig(config)

