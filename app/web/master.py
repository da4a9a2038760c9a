"""Master data as this worker sees it (global tables): lets tests and operators check it has arrived."""
from __future__ import annotations

from faust.web import Request, Response, View

from app.faust_app import app
from app.web.auth import VIEWER
from app.web.http import guarded, json_response, not_found, owner_url
from tables.definitions import items, locations


@app.page("/v1/master/items/{sku}")
class ItemMaster(View):
    @guarded(VIEWER)
    async def get(self, request: Request, sku: str) -> Response:
        item = items.get(sku)
        if item is None:
            raise not_found("item", sku)
        return json_response(self, {**item.model_dump(mode="json"), "served_by": owner_url()})


@app.page("/v1/master/locations/{location_id}")
class LocationMaster(View):
    @guarded(VIEWER)
    async def get(self, request: Request, location_id: str) -> Response:
        location = locations.get(location_id)
        if location is None:
            raise not_found("location", location_id)
        return json_response(self, {**location.model_dump(mode="json"), "served_by": owner_url()})
