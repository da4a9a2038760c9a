"""The `lineage` table: "source_system:source_event_id" → that event's trace facts, as JSON lines.

Written only by the lineage stage (agents/lineage.py), partitioned like internal.lineage, whose
records carry the facts; the entry's format and its bound per key are app/domain/lineage.py.
"""
from __future__ import annotations

from tables import names
from tables.store import make_table

lineage = make_table(names.LINEAGE)
