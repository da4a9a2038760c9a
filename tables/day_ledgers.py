"""The `day-ledgers` table: "LEGAL_ENTITY:LOCATION:DATE" → DayLedger, a store day's batch while it
fills; and `day-statuses`, same keys → DayStatus, where that day stands in its close.

Written only by the finance stage (agents/finance.py). internal.finance-ledger is keyed by location,
so a day's ledger and status live in the partition of the entries that change them. The close
timers read the statuses every second: the ledgers, up to ~140 KB each, are read only by the agent.
"""
from __future__ import annotations

from app.domain.day_batches import DayLedger, DayStatus
from tables import names
from tables.decoded_cache import DecodedCache
from tables.store import RecordTable, make_table

day_ledgers = RecordTable(make_table(names.DAY_LEDGERS), DayLedger)
day_statuses = RecordTable(make_table(names.DAY_STATUSES), DayStatus)


# The day ledgers this worker read or wrote last, parsed (~140 KB of JSON each once a store's day is
# busy): 32 MB of their JSON, about 230 busy store days, and about as much again as Python objects.
LEDGERS_KEPT_PARSED_BYTES = 32 << 20
parsed_ledgers = DecodedCache(DayLedger.model_validate_json, LEDGERS_KEPT_PARSED_BYTES)
