"""Position stage: apply each movement to its SKU@LOCATION position; emit availability, fold it into the
SKU's channel sums (coalesced for rate-limited marketplaces), and emit the ledger fact (which carries
the movement's "applied" trace fact to the finance stage).

inventory.movements is partitioned by SKU (app/domain/keys.py), so a SKU's network of locations sits
in the same partition as its positions and changes in the same batch: the channel sums need no
re-keyed hop, and a crash cannot leave them behind the positions they sum."""
from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass

from agents.outputs import dead_letter, new_outbox, publish, send_outbox, trace, utcnow
from agents.streams import each_batch, source_record
from agents.timers import each_apart, each_owned_partition, kept, timer
from app import metrics
from app import topics as t
from app.domain.availability import (
    MASTER_SOURCE, ChannelFolds, HeldRecord, PublishedVersions, PublishThrottle, master_change_record,
    may_hold_pending_channels,
)
from app.domain.keys import channel_key, position_key, sale_cost_key, split_position_key
from app.domain.master import shows_change
from app.domain.positions import PositionContext, apply, apply_location_change, new_position, outputs_of
from app.domain.sale_costs import parse_sale_cost, sale_cost_expired
from app.faust_app import app, availability_topic, channel_availability_topic, ledger_topic, movements_topic, settings
from app.models.canonical import LocationChange, Movement, MovementType, Position, SkuNetwork, working_copy
from app.models.records import AvailabilityRecord, ChannelAvailability, TraceStage, compact_json, json_bytes
from app.outbox import call_with_offset
from app.replay import is_dlq_replay
from tables.definitions import positions
from tables.master import channels_generation, channels_of, master_data
from tables.sale_costs import sale_costs
from tables.sku_networks import networks, parsed_networks
from tables.store import BatchWrites

log = logging.getLogger(__name__)

MASTER_WAIT = 5.0   # seconds a location change waits for this worker's copy of the location master


def _sale_cost_key(reference: str, sku: str) -> bytes:
    return sale_cost_key(reference, sku).encode()


@app.agent(movements_topic)
async def apply_movements(stream):
    await each_batch(stream, "positions", PositionBatch)


class PositionBatch:
    """A batch of inventory.movements: each applied in memory in offset order, the positions, SKU
    networks and sale costs it changed written once at the end (agents/streams.py, each_batch).

    A network is folded into a working copy: `fold_location` changes a network in place, the one the
    batch holds may be shared with the cache of parsed networks, and a record that fails half-way
    must leave nothing of it in the batch.
    """

    def __init__(self) -> None:
        self.positions = BatchWrites(positions.table, Position.model_validate_json, compact_json)
        self.networks = BatchWrites(networks.table, encode=json_bytes, cache=parsed_networks)
        self.sale_costs = BatchWrites(sale_costs)

    def finish(self, outbox) -> None:
        self.positions.write(outbox)
        self.networks.write(outbox)
        self.sale_costs.write(outbox)

    def fold_channels(self, record: AvailabilityRecord, partition: int) -> ChannelFold | None:
        """The SKU's network with this position's new availability folded in, and the channel
        records to publish now; None when no channel changed. Nothing is kept yet."""
        key = record.sku.encode()
        kept = self.networks.get(key, partition)
        network = SkuNetwork(sku=record.sku) if kept is None else working_copy(kept)
        ready = channel_folds.fold(network, record.location_id, record.available, record.version)
        return None if ready is None else ChannelFold(key, network, ready)

    async def keep_and_emit(self, key: str, raw_key: bytes, position: Position, record: AvailabilityRecord,
                            channels: ChannelFold | None, partition: int) -> None:
        """Keep a changed position (and its SKU's network) and publish what it changed. The network
        is kept with its pending channels before anything is published: once this record's offset
        is committed, a value still waiting lives on in the table, not only in this worker's memory."""
        self.positions.set(raw_key, position, partition)
        await publish(availability_topic, key, record)
        metrics.AVAILABILITY_OUT.inc()
        if channels is not None:
            self.networks.set(channels.key, channels.network, partition)
            for channel_record in channels.ready:
                await _publish_channel(channel_record)

    def context_for(self, movement: Movement, partition: int, source_record: str, dlq_replay: bool) -> PositionContext:
        item = master_data.item(movement.sku)
        location = master_data.location(movement.location_id)
        original_cost = None
        if movement.movement_type is MovementType.RETURN and movement.original_transaction_id:
            # The sale of this SKU was applied in this partition too (tables/sale_costs.py).
            raw = self.sale_costs.get(_sale_cost_key(movement.original_transaction_id, movement.sku), partition)
            original_cost = None if raw is None else parse_sale_cost(raw)[0]
        return PositionContext(
            now_epoch=int(time.time()),
            dedupe_retention=settings.dedupe_retention,
            safety_stock=location.safety_stock if location else 0,
            standard_cost=item.standard_cost if item else None,
            original_sale_cost=original_cost,
            legal_entity=location.legal_entity if location else None,
            source_record=source_record,
            replay_window=settings.replay_window,
            dlq_replay=dlq_replay,
        )

    async def take(self, event) -> None:
        if _is_location_change(event.message.headers):
            await self.apply_location_change(event)
            return
        movement = Movement.model_validate_json(event.value)
        partition = event.message.partition
        key = position_key(movement.sku, movement.location_id)
        raw_key = key.encode()
        position = self.positions.get(raw_key, partition) or new_position(movement.sku, movement.location_id)
        context = self.context_for(movement, partition, source_record(event.message),
                                   is_dlq_replay(event.message.headers))
        outcome = apply(position, movement, context)
        system, source_id = movement.source_system.value, movement.source_event_id

        if outcome.duplicate and not outcome.replay:
            metrics.DUPLICATES.inc()
            await trace(system, source_id, TraceStage.DUPLICATE, movement_id=movement.movement_id, key=key)
            return
        if outcome.rejection:
            if outcome.position is not position:   # the rejection is remembered in the position
                self.positions.set(raw_key, outcome.position, partition)
            await dead_letter(event.message, t.MOVEMENTS, event.value, outcome.rejection,
                              source_system=system, source_event_id=source_id, stage="positions")
            return

        # Everything the movement produces is built before any of it is kept or sent: a record that
        # fails here is rejected with nothing of it in the batch.
        now = utcnow()
        out = outputs_of(outcome, movement, context, now)
        record, applied = out.record, outcome.applied
        channels = self.fold_channels(record, partition)

        # A replay writes the position again too: the changelog record may be what the crash lost.
        await self.keep_and_emit(key, raw_key, outcome.position, record, channels, partition)
        if out.sale_cost is not None:
            self.sale_costs.set(_sale_cost_key(out.sale_reference, movement.sku), out.sale_cost, partition)
        # The "applied" trace fact rides on the ledger entry: finance writes the movement's trace record.
        await publish(ledger_topic, movement.location_id, out.entry)
        for follow_up in outcome.follow_ups:
            await publish(movements_topic, position_key(follow_up.sku, follow_up.location_id), follow_up)

        if outcome.replay:
            metrics.REPLAYS.inc()
        else:
            metrics.labelled(metrics.MOVEMENTS_APPLIED, movement.movement_type.value).inc()
        if record.negative:
            metrics.NEGATIVE_POSITIONS.inc()
        if applied.unmatched_quantity and not outcome.replay:
            metrics.labelled(metrics.UNMATCHED_UNITS, movement.movement_type.value).inc(applied.unmatched_quantity)
        metrics.LATENCY.observe((now - (movement.received_at or movement.occurred_at)).total_seconds())

    async def apply_location_change(self, event) -> None:
        """A location's safety stock or channels changed: re-emit every position at it in this partition.

        The control record sits in partition p of inventory.movements, among the movements of p, so the
        positions of p are exactly the ones this worker owns for it (the positions table is partitioned
        like its input) and every movement after it in p sees the change. Scanning the partition is
        O(positions in it), about 0.2 s per 100,000 (measured; the event loop waits meanwhile): fine for
        a rare event. Nothing is posted, nothing else moves.
        """
        change = LocationChange.model_validate_json(event.value)
        partition = event.message.partition
        await _until_master_shows(change)
        suffix = position_key("", change.location_id).encode()

        def at_location(key: bytes) -> bool:
            return key.endswith(suffix) and split_position_key(key.decode())[1] == change.location_id

        found = {key: Position.model_validate_json(raw)
                 for key, raw in positions.raw_items_in_partition(partition) if at_location(key)}
        # This batch's own changes are newer than the store's.
        found.update({key: p for key, p in self.positions.changed_in(partition).items()
                      if p is not None and at_location(key)})
        ctx = PositionContext(now_epoch=int(time.time()), dedupe_retention=settings.dedupe_retention,
                              source_record=source_record(event.message),
                              replay_window=settings.replay_window)
        now = utcnow()
        for raw_key, position in found.items():
            key = raw_key.decode()
            outcome = apply_location_change(position, change, ctx)
            if outcome.duplicate and not outcome.replay:
                metrics.DUPLICATES.inc()
                continue
            record = master_change_record(outcome.as_emitted, outcome.previous_available, change, now)
            # Each position's SKU is another network: folded after the one before it was kept.
            channels = self.fold_channels(record, partition)
            await self.keep_and_emit(key, raw_key, outcome.position, record, channels, partition)
            await trace(MASTER_SOURCE, change.source_event_id, TraceStage.APPLIED, movement_id=change.change_id,
                        key=key, version=record.version, available=record.available,
                        previous_available=record.previous_available, safety_stock=record.safety_stock,
                        replay=outcome.replay)


@dataclass(frozen=True, slots=True)
class ChannelFold:
    key: bytes                            # the SKU, key of its network
    network: SkuNetwork                   # the network with the change folded in
    ready: list[ChannelAvailability]      # channel records to publish now


# --- Channel sums: coalesced for rate-limited marketplaces (SPEC §3) --------------------------------

# The throttle, and the last version this worker published of each channel key for the most
# recent keys (a few MB at most).
channel_folds = ChannelFolds(PublishThrottle(settings.channel_publish_interval),
                             PublishedVersions(max_keys=100_000), channels_of, channels_generation)
_resumed_for: set = set()                  # the assignment whose pending values were picked up


@timer(0.2)
async def flush_coalesced_channels():
    await publish_due_channels(time.monotonic())


async def publish_due_channels(now: float) -> int:
    """The held-back channel records whose interval has passed, built and published; how many.

    One that cannot be built (its location gone from the master) or handed over is logged and
    counted apart (agents/timers.py) and the rest go out; its value stays pending in the SKU's
    network in the table, so it goes out with the SKU's next change or at the next assignment."""
    return await each_apart(channel_folds.throttle.due(now), _publish_held, timer="flush_coalesced_channels",
                            what=lambda due: f"channel record {due[0]}")


async def _publish_held(due: tuple[str, HeldRecord]) -> None:
    await _publish_channel(due[1]())


@timer(1.0)
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
    held = kept(networks.table.items(), lambda item: may_hold_pending_channels(item[1]),
                timer="resume_pending_channels", what=_network_named)
    await each_apart(held, _resume_network, timer="resume_pending_channels", what=_network_named)


def _network_named(item: tuple[bytes, bytes]) -> str:
    return f"SKU network {item[0]!r}"


async def _resume_network(item: tuple[bytes, bytes]) -> None:
    channel_folds.resume(SkuNetwork.model_validate_json(item[1]))


async def _publish_channel(record: ChannelAvailability) -> None:
    """Publish one channel record; it counts as published (so the SKU's next fold may drop it from
    the network's pending values) only once the broker has it.

    Inside a stage batch that is the batch's own guarantee: its offsets commit after its outputs
    are acknowledged. From the flush timer no commit waits for the record, so it is marked when its
    delivery succeeds: marked at hand-over, a later batch could drop the pending value and commit
    before a failed delivery stopped the worker, and the final value would be lost."""
    key, version = channel_key(record.channel, record.sku), record.version
    delivery = await publish(channel_availability_topic, key, record)
    if delivery is None:
        channel_folds.published.published(key, version)
    else:
        delivery.add_done_callback(call_with_offset(lambda _offset: channel_folds.published.published(key, version)))
    metrics.labelled(metrics.CHANNEL_OUT, record.channel).inc()


def _is_location_change(headers) -> bool:
    if not headers:
        return False
    pairs = headers.items() if isinstance(headers, Mapping) else headers   # Faust hands either
    return any(name == t.CONTROL_HEADER and value == t.LOCATION_CHANGE for name, value in pairs)


async def _until_master_shows(change: LocationChange) -> None:
    """Wait, a little, for this worker's copy of the location master to hold the change: the master
    stage writes it just after sending the control records, and a movement read after this record
    must not apply the old safety stock again. A later change of the same location can overtake it:
    after MASTER_WAIT this goes on (the re-emission carries the change's own values either way)."""
    deadline = time.monotonic() + MASTER_WAIT
    while not shows_change(master_data.location(change.location_id), change):
        if time.monotonic() >= deadline or app.should_stop:
            log.info("location %s: the master here does not show change %s after %.0f s; re-emitting anyway",
                     change.location_id, change.source_event_id, MASTER_WAIT)
            return
        await asyncio.sleep(0.05)


SALE_COST_SWEEP = min(3600.0, max(1.0, settings.sale_cost_retention / 10))
SALE_COSTS_FORGOTTEN_PER_SWEEP = 10_000


@timer(SALE_COST_SWEEP)
async def forget_old_sale_costs():
    """Sales older than SALE_COST_RETENTION leave the `sale-costs` table.

    The owner of each inventory.movements partition holds that partition of the table (its SKUs'
    sales: tables/sale_costs.py) and forgets its expired sales the way a stage batch writes: the
    tombstones to the changelog and the deletes in one WriteBatch, the changelog offset persisted
    once the broker has them (tables/store.py, BatchWrites). The sweep reads the partition's
    RocksDB: O(its sales), once per sweep. A return applied meanwhile finds the cost or not; past
    the retention either is right.
    """
    now = int(time.time())

    async def forget_in(partition: int) -> None:
        metrics.SALE_COSTS_FORGOTTEN.inc(await forget_expired_sale_costs(partition, now, settings.sale_cost_retention))
    await each_owned_partition(movements_topic, forget_in, timer="forget_old_sale_costs")


async def forget_expired_sale_costs(partition: int, now_epoch: int, retention: int) -> int:
    """One partition's sales past the retention (at most SALE_COSTS_FORGOTTEN_PER_SWEEP) forgotten;
    how many, once their tombstones are with the producer."""
    expired = [key for key, raw in sale_costs.data.items_in_partition(partition)
               if sale_cost_expired(raw, now_epoch, retention)][:SALE_COSTS_FORGOTTEN_PER_SWEEP]
    if expired:
        forgotten = BatchWrites(sale_costs)
        for key in expired:
            forgotten.set(key, None, partition)
        outbox = new_outbox()
        forgotten.write(outbox)
        await send_outbox(outbox)
    return len(expired)
