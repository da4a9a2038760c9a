"""`GET /`: the operators' dashboard, one static page that reads /metrics and the /v1 views itself."""
from __future__ import annotations

from pathlib import Path

from faust.web import Request, Response, View

from app.faust_app import app

PAGE = Path(__file__).with_name("static") / "dashboard.html"


@app.page("/", name="dashboard")
class Dashboard(View):
    async def get(self, request: Request) -> Response:
        # Read on each request: a page edit shows without a restart, and the file is small.
        return self.html(PAGE.read_text(encoding="utf-8"), headers={"Cache-Control": "no-store"})
