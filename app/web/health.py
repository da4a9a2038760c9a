"""Liveness and readiness, with honest semantics: ready means assigned, recovered and consuming."""
from __future__ import annotations

from faust.web import Request, Response, View

from agents.streams import stuck_records
from app.faust_app import app
from tables.catch_up import global_tables
from tables.definitions import locations


def readiness() -> dict[str, bool]:
    return {
        "started": app.started,
        "not_rebalancing": not app.rebalancing,
        "recovered": app.tables.recovery.completed.is_set() and not app.in_recovery,
        "global_tables_current": global_tables.is_current(app),
        # A record that cannot even be dead-lettered holds its partition (SPEC §4: never skipped).
        "dead_letters_writable": not stuck_records.waiting,
    }


def master_data_loaded() -> bool:
    # Reported, not required: a fresh installation is ready before its first master record arrives.
    return any(True for _ in locations.table)


@app.page("/healthz")
class Healthz(View):
    async def get(self, request: Request) -> Response:
        return self.json({"status": "ok"})


@app.page("/readyz")
class Readyz(View):
    async def get(self, request: Request) -> Response:
        checks = readiness()
        ready = all(checks.values())
        return self.json({"ready": ready, "checks": checks, "master_data_loaded": master_data_loaded(),
                          "records_waiting_for_dead_letter": stuck_records.report()},
                         status=200 if ready else 503)
