"""The envelope on the internal finance ledger topic (key LOCATION): one of five facts per record."""
from __future__ import annotations

from datetime import date

from pydantic import BaseModel

from app.models.canonical import Applied, DayClose, PosTotals


class CloseDue(BaseModel):
    """A day close whose grace period has passed: the finance stage may now emit the day batch."""

    location_id: str
    business_date: date


class LedgerEntry(BaseModel):
    applied: Applied | None = None
    pos_totals: PosTotals | None = None
    day_close: DayClose | None = None
    close_due: CloseDue | None = None
    forget_day: CloseDue | None = None   # a closed day past DEDUPE_RETENTION: drop it from state
