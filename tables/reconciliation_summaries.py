"""The `reconciliation-summaries` table: LOCATION → the summary of the location's latest snapshot.

Written only by the reconciliation stage's `summarise` (agents/reconciliation.py), whose stream
(internal.reconciliation-results) is keyed by location, so GET /v1/reconciliation/{location_id}
routes to the owner by the same key bytes.
"""
from __future__ import annotations

from app.models.records import ReconciliationSummary
from tables import names
from tables.store import RecordTable, make_table

summaries = RecordTable(make_table(names.RECONCILIATION_SUMMARIES), ReconciliationSummary)
