"""Channel stage: network availability per channel and SKU, coalesced for rate-limited marketplaces."""
from __future__ import annotations

import time

from agents.outputs import publish, utcnow
from agents.streams import each_event
from app import metrics
from app.domain.availability import PublishThrottle
from app.domain.keys import channel_key
from app.domain.network import channel_shares, fold_location
from app.faust_app import app, channel_availability_topic, settings, sku_availability_topic
from app.models.canonical import SkuNetwork
from app.models.records import ChannelAvailability, SkuAvailability
from tables.master import channels_of
from tables.store import RecordTable, make_table

networks = RecordTable(make_table("sku-network"), SkuNetwork)
throttle = PublishThrottle(settings.channel_publish_interval)


@app.agent(sku_availability_topic)
async def network_availability(stream):
    await each_event(stream, "channels", fold_availability)


async def fold_availability(event) -> None:
    update = SkuAvailability.model_validate_json(event.value)
    network = networks.get(update.sku) or SkuNetwork(sku=update.sku)
    changed = fold_location(network, update.location_id, update.available, update.version, channels_of)
    if not changed:
        return
    networks.set(update.sku, network)
    now = time.monotonic()
    for channel in changed:
        record = ChannelAvailability(
            channel=channel, sku=update.sku, available=network.channel_totals[channel],
            by_location=channel_shares(network, channel, channels_of),
            version=network.channel_versions[channel], emitted_at=utcnow())
        ready = throttle.offer(channel_key(channel, update.sku), record, now)
        if ready is not None:
            await _publish(ready)


@app.timer(interval=0.2)
async def flush_coalesced_channels():
    for _, record in throttle.due(time.monotonic()):
        await _publish(record.model_copy(update={"emitted_at": utcnow()}))


async def _publish(record: ChannelAvailability) -> None:
    await publish(channel_availability_topic, channel_key(record.channel, record.sku), record)
    metrics.CHANNEL_OUT.labels(channel=record.channel).inc()
