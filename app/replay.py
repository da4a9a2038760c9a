"""DLQ replay: re-send chosen dead letters, whole, to the topic they came from (idempotent downstream)."""
from __future__ import annotations

import sys
from collections.abc import Mapping

from app.connection import KafkaConnection
from app.domain.dead_letters import replayable
from app.kafka_io import produce, read_topic
from app.topics import DLQ

# Marks a record re-sent from the DLQ by an operator: the position stage looks again at a movement
# it rejected before (UNKNOWN_RESERVATION) only when asked this way (app/domain/positions.py).
REPLAY_HEADER = "stock-sync-dlq-replay"


def is_dlq_replay(headers) -> bool:
    """Whether a record's headers (Faust hands a list of pairs or a mapping) carry REPLAY_HEADER."""
    if not headers:
        return False
    names = headers.keys() if isinstance(headers, Mapping) else (name for name, _ in headers)
    return REPLAY_HEADER in names


def _progress(done: int, total: int) -> None:
    width = 30
    filled = int(width * done / total) if total else width
    sys.stderr.write(f"\rreplay [{'#' * filled}{'.' * (width - filled)}] {done}/{total}")
    if done == total:
        sys.stderr.write("\n")
    sys.stderr.flush()


async def select_dead_letters(kafka: KafkaConnection | str, *, error_code: str | None = None, source_topic: str | None = None,
                              source_event_ids: set[str] | None = None, limit: int | None = None) -> list[dict]:
    letters = [r.value for r in await read_topic(kafka, DLQ, until_idle=1.0)]
    chosen = [
        letter for letter in letters
        if (error_code is None or letter.get("error_code") == error_code)
        and (source_topic is None or letter.get("source_topic") == source_topic)
        and (source_event_ids is None or letter.get("source_event_id") in source_event_ids)
        # A cut raw value (TOO_LARGE) or one whose invalid UTF-8 was replaced is not the record that came
        # in: re-sent, it would be another record. Those letters are for reading; the producer resends.
        and replayable(letter)
    ]
    return chosen[:limit] if limit else chosen


async def replay_dead_letters(kafka: KafkaConnection | str, *, progress: bool = False, **selection) -> int:
    """Re-send the selected dead letters; a record replayed twice is ignored the second time."""
    chosen = await select_dead_letters(kafka, **selection)
    events = [(letter["source_topic"], letter.get("key"), letter["raw_value"]) for letter in chosen]
    sent = 0
    for start in range(0, len(events), 200):
        sent += await produce(kafka, events[start:start + 200], headers=[(REPLAY_HEADER, b"1")])
        if progress:
            _progress(sent, len(events))
    if progress and not events:
        _progress(0, 0)
    return sent
