"""`GET /v1/erp` (viewer): how this worker's ERP poster is doing (SPEC §9).

Answers from this worker's partitions of finance.journal_batches; with several workers each one
reports its own share (the Prometheus gauges sum across workers).
"""
from __future__ import annotations

import sys
import time

from faust.web import Request, Response, View

from app.faust_app import app, settings
from app.web.auth import VIEWER
from app.web.http import Problem, guarded, json_response, owner_url


@app.page("/v1/erp")
class ErpView(View):
    @guarded(VIEWER)
    async def get(self, request: Request) -> Response:
        poster = sys.modules.get("agents.erp")
        if poster is None:
            raise Problem(404, "STAGE_NOT_RUNNING", "the ERP poster does not run here (ERP_ENABLED=0, no ERP_URL, "
                          "or STAGES without erp)")
        state = poster.state
        now = time.time()
        return json_response(self, {
            "erp_url": settings.erp_url, "database": settings.erp_database,
            "batches_waiting": state.waiting,
            "oldest_waiting_seconds": round(now - state.working_since, 1) if state.working_since else 0.0,
            "working_on": state.working_on,
            "last_error": state.last_error,
            "last_error_at": state.last_error_at,
            "erp_reachable": state.reachable,
            "batches_acked": state.posted,
            "max_calls_per_second": settings.erp_max_rps,
            "served_by": owner_url(),
        })
