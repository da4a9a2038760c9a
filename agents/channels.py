"""Channel stage: network availability per channel and SKU, coalesced for rate-limited marketplaces."""
from __future__ import annotations

import time

from agents.outputs import publish, utcnow
from agents.streams import each_batch
from app import metrics
from app.domain.availability import PublishThrottle
from app.domain.keys import channel_key
from app.domain.network import channel_shares, fold_location, settle_pending
from app.faust_app import app, channel_availability_topic, settings, sku_availability_topic
from app.models.canonical import SkuNetwork
from app.models.records import ChannelAvailability, SkuAvailability
from tables.master import channels_of
from tables.sku_networks import networks
from tables.store import BatchWrites

throttle = PublishThrottle(settings.channel_publish_interval)
published_versions: dict[str, int] = {}   # channel key -> last version this worker published
_resumed_for: set = set()                  # the assignment whose pending values were picked up


@app.agent(sku_availability_topic)
async def network_availability(stream):
    await each_batch(stream, "channels", ChannelBatch)


class ChannelBatch:
    """A batch of SKU availability updates: each folded into its SKU's network in offset order, the
    networks it changed written once at the end (agents/streams.py, each_batch).

    The batch keeps each network as its JSON and parses it per record: `fold_location` changes a
    network in place, and a record that fails half-way must leave nothing of it in the batch.
    """

    def __init__(self) -> None:
        self.networks = BatchWrites(networks.table)

    def finish(self, outbox) -> None:
        self.networks.write(outbox)

    async def take(self, event) -> None:
        update = SkuAvailability.model_validate_json(event.value)
        partition, key = event.message.partition, update.sku.encode()
        raw = self.networks.get(key, partition)
        network = SkuNetwork(sku=update.sku) if raw is None else SkuNetwork.model_validate_json(raw)
        ready = fold_availability(network, update)
        if ready is None:
            return
        # Kept with its pending channels before anything is published: once this record's offset is
        # committed, a value still waiting lives on in the table, not only in this worker's memory.
        self.networks.set(key, network.model_dump_json().encode(), partition)
        for record in ready:
            await _publish(record)


def fold_availability(network: SkuNetwork, update: SkuAvailability) -> list[ChannelAvailability] | None:
    """Fold one location's availability into the network; the channel records to publish now (the
    throttle holds back the others as pending), or None when no channel changed."""
    changed = fold_location(network, update.location_id, update.available, update.version, channels_of)
    if not changed:
        return None
    settle_pending(network, lambda channel: published_versions.get(channel_key(channel, update.sku)))
    now = time.monotonic()
    ready = []
    for channel in changed:
        record = _channel_record(network, channel)
        if throttle.offer(channel_key(channel, update.sku), record, now) is None:
            network.pending[channel] = record.version
        else:
            network.pending.pop(channel, None)
            ready.append(record)
    return ready


def _channel_record(network: SkuNetwork, channel: str) -> ChannelAvailability:
    return ChannelAvailability(
        channel=channel, sku=network.sku, available=network.channel_totals[channel],
        by_location=channel_shares(network, channel, channels_of),
        version=network.channel_versions[channel], emitted_at=utcnow())


@app.timer(interval=0.2)
async def flush_coalesced_channels():
    for _, record in throttle.due(time.monotonic()):
        await _publish(record.model_copy(update={"emitted_at": utcnow()}))


@app.timer(interval=1.0)
async def resume_pending_channels():
    """After a start, a crash or a rebalance, publish what the previous owner left pending.

    Once per new assignment, the SKU networks of this worker's partitions are read for pending
    channels, which go out through the throttle like any coalesced value. A value the previous
    owner had in fact published goes out once more with the same version: harmless to a consumer
    that keeps the highest version, while dropping the final state is not.
    """
    if not app.tables.recovery.completed.is_set() or app.rebalancing:
        return
    assignment = set(app.assignor.assigned_actives())
    if assignment == _resumed_for:
        return
    _resumed_for.clear()
    _resumed_for.update(assignment)
    for _, network in networks.items():
        for channel, version in network.pending.items():
            key = channel_key(channel, network.sku)
            if published_versions.get(key, -1) < version and channel in network.channel_totals:
                throttle.keep(key, _channel_record(network, channel))


async def _publish(record: ChannelAvailability) -> None:
    await publish(channel_availability_topic, channel_key(record.channel, record.sku), record)
    key = channel_key(record.channel, record.sku)
    published_versions[key] = max(published_versions.get(key, 0), record.version)
    metrics.CHANNEL_OUT.labels(channel=record.channel).inc()
