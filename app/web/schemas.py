"""`GET /v1/schemas` and `GET /v1/schemas/{topic}`: the JSON Schema of every contract topic (viewer)."""
from __future__ import annotations

from faust.web import Request, Response, View

from app.faust_app import app
from app.schemas import BY_TOPIC, CONTRACT, schema_for
from app.web.auth import VIEWER
from app.web.http import guarded, json_response, not_found


@app.page("/v1/schemas")
class SchemaList(View):
    @guarded(VIEWER)
    async def get(self, request: Request) -> Response:
        return json_response(self, {"schemas": [
            {"topic": s.topic, "key": s.key, "produced_by": s.produced_by, "description": s.description,
             "href": f"/v1/schemas/{s.topic}"} for s in CONTRACT]})


@app.page("/v1/schemas/{topic}")
class TopicSchema(View):
    @guarded(VIEWER)
    async def get(self, request: Request, topic: str) -> Response:
        if topic not in BY_TOPIC:
            raise not_found("contract topic", topic)
        return json_response(self, schema_for(topic))
