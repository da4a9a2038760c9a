"""The latest reconciliation summary of a location, from the `reconciliation-summaries` table (by location)."""
from __future__ import annotations

from faust.web import Request, Response, View

from app.faust_app import app, recon_results_topic
from app.models.records import ReconciliationSummary
from app.web.auth import VIEWER
from app.web.http import at_owner, guarded, json_response, not_found, owner_url, table_named
from tables.names import RECONCILIATION_SUMMARIES as TABLE
from tables.store import RecordTable


@app.page("/v1/reconciliation/{location_id}")
class ReconciliationView(View):
    @guarded(VIEWER)
    async def get(self, request: Request, location_id: str) -> Response:
        summaries = RecordTable(table_named(TABLE, "reconciliation"), ReconciliationSummary)

        async def answer() -> Response:
            summary = summaries.get(location_id)
            if summary is None:
                raise not_found("reconciliation summary for location", location_id)
            return json_response(self, {**summary.model_dump(mode="json"), "served_by": owner_url()})

        return await at_owner(self, request, TABLE, location_id, recon_results_topic, answer)
