"""What a dead letter carries of its raw record: whole when small, else its first part, always with
its size and digest, so the letter fits in a Kafka record whatever came in (SPEC §4)."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass

import orjson

KEEP_RAW_BYTES = 256 * 1024     # of the raw value as JSON text in the letter
DETAIL_CHARS = 2000


@dataclass(frozen=True)
class RawForLetter:
    text: str
    size: int
    sha256: str
    truncated: bool


def raw_for_letter(raw: bytes | str | None, keep: int = KEEP_RAW_BYTES) -> RawForLetter:
    """The raw value as text (invalid UTF-8 replaced), cut so that its JSON encoding stays within
    `keep` bytes: escaping inflates control characters up to 6× and U+FFFD replacements 3×."""
    data = raw.encode("utf-8", "surrogatepass") if isinstance(raw, str) else (raw or b"")
    text = data.decode("utf-8", errors="replace")
    encoded = len(orjson.dumps(text))
    truncated = False
    while encoded > keep:
        truncated = True
        text = text[:max(0, int(len(text) * keep / encoded) - 16)]
        encoded = len(orjson.dumps(text))
    return RawForLetter(text, len(data), hashlib.sha256(data).hexdigest(), truncated)


def error_detail(exc: BaseException, stage: str) -> str:
    """A stage's exception as a PROCESSING_ERROR detail: where, the type and the message, bounded."""
    return f"{stage}: {type(exc).__name__}: {exc}"[:DETAIL_CHARS]


def replayable(letter: dict) -> bool:
    """Whether a letter's raw value is the producer's record byte for byte, so a replay may re-send it:
    not when it was cut, nor when invalid UTF-8 was replaced (the digest is of the bytes that came in)."""
    raw = letter.get("raw_value")
    if not isinstance(raw, str) or letter.get("raw_truncated"):
        return False
    digest = letter.get("raw_sha256")
    if not digest:
        return True   # a letter written before raw_sha256 existed: kept whole then
    try:
        return hashlib.sha256(raw.encode("utf-8", "surrogatepass")).hexdigest() == digest
    except UnicodeEncodeError:
        return False
