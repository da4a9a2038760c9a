"""Quix Streams doing the position stage's own work: the pipeline's pure rules (`app.domain`) on the
position stage's input, with Quix's state, changelogs, checkpoints and producer in place of our
worker's. What differs from agents/positions.py is only the framework around the same calls:

* per movement: decode it, read its position, apply the position rules (`apply`), build what it
  publishes (`outputs_of`: the availability record, the ledger record, a sale's cost), fold the
  availability into the SKU's channel sums (`ChannelFolds`), keep the position, the network and the
  sale cost in the state, send the availability record, the ledger record and the channel records
  due now; a throttled channel record goes out when due, checked as records arrive (the worker
  uses a timer);
* state is scoped to the message key, so the input is keyed by SKU (a SKU's positions and its
  network in one scope, in the SKU's partition, as the worker holds them): the position under its
  location id, the network and sale costs under their own prefixes;
* parsed networks kept between records like the worker's (`DecodedCache`), master data in memory
  (the worker's global tables are in memory too), a rejection sent as the movement itself to the
  side topic (the worker sends a dead-letter record).

What the worker does and this peer does not, so the comparison leans Quix's way: a trace record for
each duplicate it ignores (about 3 % of the bench's movements are producer re-sends), Prometheus
counters per movement, the offset-order check of every record.

Availability records go to `--output` (what the harness counts), ledger and channel records and
rejections to `--side`, derived movements back to `--input`.

    python -m bench.peers.quix_stage --bootstrap 127.0.0.1:39192 --group g --input bench.stage-movements \
        --output out --side side --state DIR --skus 20000 --locations 50
"""
from __future__ import annotations

import argparse
import time
from datetime import UTC, datetime

from quixstreams import Application, State, message_context
from quixstreams.models.serializers import SerializationContext, Serializer

from app.domain.availability import ChannelFolds, PublishedVersions, PublishThrottle
from app.domain.keys import channel_key, position_key
from app.domain.positions import PositionContext, apply, new_position, outputs_of
from app.domain.sale_costs import parse_sale_cost
from app.models.canonical import Movement, MovementType, Position, SkuNetwork, working_copy
from app.models.records import compact_json, json_bytes
from app.settings import Settings
from bench import workload
from tables.decoded_cache import DecodedCache

NETWORK = "~network"          # state keys within a SKU's scope: positions by location id,
SALE_COST = "~sale-cost|"     # and these two prefixes, which no location id starts with
FLUSH_EVERY = 0.2             # seconds between checks for throttled channel records, as the worker's timer

Output = tuple[str, bytes, bytes]   # (topic, key, value)


class OutputValue(Serializer):
    """The value part of an Output: the stage's records are JSON already."""

    def __call__(self, value: Output, ctx: SerializationContext) -> bytes:
        return value[2]


class PositionStage:
    def __init__(self, args: argparse.Namespace) -> None:
        defaults = Settings()
        self.dedupe_retention, self.replay_window = defaults.dedupe_retention, defaults.replay_window
        self.input, self.output, self.side = args.input, args.output, args.side
        self.master = workload.master_data(workload.catalogue_for(args.skus, args.locations))
        self.folds = ChannelFolds(PublishThrottle(defaults.channel_publish_interval), PublishedVersions(100_000),
                                  self.channels_of, master_generation=lambda: 0)   # the master does not change
        self.parsed_networks = DecodedCache(SkuNetwork.model_validate_json, 16 << 20)  # as tables/sku_networks.py
        self.flushed_at = time.monotonic()

    def channels_of(self, location_id: str) -> list[str]:
        location = self.master.location(location_id)
        return list(location.channels) if location else []

    def context_for(self, movement: Movement, state: State) -> PositionContext:
        item, location = self.master.item(movement.sku), self.master.location(movement.location_id)
        original_cost = None
        if movement.movement_type is MovementType.RETURN and movement.original_transaction_id:
            raw = state.get_bytes(SALE_COST + movement.original_transaction_id)
            original_cost = None if raw is None else parse_sale_cost(raw)[0]
        context = message_context()
        return PositionContext(
            now_epoch=int(time.time()), dedupe_retention=self.dedupe_retention,
            safety_stock=location.safety_stock if location else 0,
            standard_cost=item.standard_cost if item else None, original_sale_cost=original_cost,
            legal_entity=location.legal_entity if location else None,
            source_record=f"{context.partition}@{context.offset}", replay_window=self.replay_window)

    def take(self, value: bytes, state: State) -> list[Output]:
        movement = Movement.model_validate_json(value)
        raw = state.get_bytes(movement.location_id)
        position = Position.model_validate_json(raw) if raw else new_position(movement.sku, movement.location_id)
        context = self.context_for(movement, state)
        outcome = apply(position, movement, context)
        due = self.due_channels()
        if outcome.duplicate and not outcome.replay:
            return due
        if outcome.rejection:
            if outcome.position is not position:
                state.set_bytes(movement.location_id, compact_json(outcome.position))
            return [*due, (self.side, movement.sku.encode(), value)]
        out = outputs_of(outcome, movement, context, datetime.now(UTC))
        record = out.record
        raw_network = state.get_bytes(NETWORK)
        network_key = movement.sku.encode()
        network = SkuNetwork(sku=movement.sku) if raw_network is None else \
            working_copy(self.parsed_networks.decode(network_key, raw_network))
        ready = self.folds.fold(network, record.location_id, record.available, record.version)

        state.set_bytes(movement.location_id, compact_json(outcome.position))
        outputs = [(self.output, position_key(movement.sku, movement.location_id).encode(),
                    json_bytes(record))]
        if ready is not None:
            encoded = json_bytes(network)
            state.set_bytes(NETWORK, encoded)
            self.parsed_networks.remember(network_key, encoded, network)
            outputs += [self.channel_output(channel_record) for channel_record in ready]
        if out.sale_cost is not None:
            state.set_bytes(SALE_COST + out.sale_reference, out.sale_cost)
        outputs.append((self.side, movement.location_id.encode(), out.entry.to_json()))
        # Movements the rule derives (a transfer's legs) come back through the input, as the
        # worker sends them to inventory.movements.
        outputs += [(self.input, follow_up.sku.encode(), json_bytes(follow_up))
                    for follow_up in outcome.follow_ups]
        return [*outputs, *due]

    def channel_output(self, record) -> Output:
        key = channel_key(record.channel, record.sku)
        self.folds.published.published(key, record.version)
        return self.side, key.encode(), json_bytes(record)

    def due_channels(self) -> list[Output]:
        now = time.monotonic()
        if now - self.flushed_at < FLUSH_EVERY:
            return []
        self.flushed_at = now
        return [self.channel_output(record_of()) for _, record_of in self.folds.throttle.due(now)]


def build(args: argparse.Namespace) -> Application:
    # As bench.peers.quix: Quix's defaults for at-least-once, changelogs on, checkpoint every 5 s.
    app = Application(broker_address=args.bootstrap, consumer_group=args.group, auto_offset_reset="earliest",
                      commit_interval=5.0, processing_guarantee="at-least-once", state_dir=args.state,
                      use_changelog_topics=True, loglevel="WARNING")
    movements = app.topic(args.input, key_deserializer="bytes", value_deserializer="bytes")
    topics = {name: app.topic(name, key_serializer="bytes", value_serializer=OutputValue())
              for name in (args.input, args.output, args.side)}
    stage = PositionStage(args)
    sdf = app.dataframe(movements).apply(stage.take, stateful=True, expand=True)
    sdf = sdf.set_timestamp(lambda _value, _key, _timestamp, _headers: int(time.time() * 1000))
    sdf.to_topic(lambda value, _key, _timestamp, _headers: topics[value[0]], key=lambda value: value[1])
    return app


def main() -> None:
    parser = argparse.ArgumentParser()
    for name in ("bootstrap", "group", "input", "output", "side", "state"):
        parser.add_argument(f"--{name}", required=True)
    parser.add_argument("--skus", type=int, required=True)
    parser.add_argument("--locations", type=int, required=True)
    build(parser.parse_args()).run()


if __name__ == "__main__":
    main()
