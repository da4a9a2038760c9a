"""The `traces` table: "source_system:source_event_id" → that event's trace facts, as JSON lines.

Written only by the lineage stage (agents/lineage.py). It is a fold of internal.lineage, whose
records carry the facts (a stage batch's packed per partition: app/packs.py), partitioned like it
(the entry's format, its bound per key and the fold: app/domain/lineage.py), so it has no changelog
records of its own: a worker that takes a partition over folds the topic's partition again
(tables/restore.py). Named `traces`, not `lineage` as when it had a changelog: a data dir or
changelog of that table is left alone, and the new one is built from the topic, every fact once.
"""
from __future__ import annotations

from app import topics
from app.domain.lineage import apply_record
from app.packs import records_of
from tables import names
from tables.restore import FOLDED_FROM, SourceFold
from tables.store import make_table

lineage = make_table(names.LINEAGE)
FOLDED_FROM[names.LINEAGE] = SourceFold(topics.LINEAGE, apply_record, records_of)
