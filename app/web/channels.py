"""Network availability of a SKU on one channel, answered by the owner of the SKU's `sku-network` entry
(the position stage's worker for the SKU's partition of inventory.movements)."""
from __future__ import annotations

from faust.web import Request, Response, View

from app.domain.network import channel_shares
from app.faust_app import app, movements_topic
from app.models.canonical import SkuNetwork
from app.web.auth import VIEWER
from app.web.http import (
    at_owner,
    bad_request,
    guarded,
    json_response,
    not_found,
    owner_url,
    partition_of,
    table_named,
)
from tables.master import channels_of
from tables.names import SKU_NETWORKS as TABLE


@app.page("/v1/channels/{channel}/availability/{sku}")
class ChannelAvailabilityView(View):
    @guarded(VIEWER)
    async def get(self, request: Request, channel: str, sku: str) -> Response:
        if not channel.strip() or not sku.strip():
            raise bad_request("channel and sku must not be blank")
        networks = table_named(TABLE, "positions")

        async def answer() -> Response:
            raw = networks.get(sku.encode())
            if raw is None:
                raise not_found("network availability for SKU", sku)
            network = SkuNetwork.model_validate_json(raw)
            if channel not in network.channel_totals:
                raise not_found(f"availability on channel {channel!r} for SKU", sku)
            return json_response(self, {
                "channel": channel,
                "sku": sku,
                "available": network.channel_totals[channel],
                "version": network.channel_versions.get(channel, 0),
                "by_location": channel_shares(network, channel, channels_of),
                "served_by": owner_url(),
                "partition": partition_of(TABLE, sku),
            })

        return await at_owner(self, request, TABLE, sku, movements_topic, answer)
