"""Availability records (SPEC §3) and per-channel network availability, from positions."""
from __future__ import annotations

import functools
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from app.domain.keys import channel_key
from app.domain.network import channel_shares, fold_location, settle_pending
from app.domain.throttle import RecentKeys
from app.models.canonical import LocationChange, Movement, Position, SkuNetwork
from app.models.records import AvailabilityRecord, Cause, ChannelAvailability, holds_entries

# The cause of a re-emission after a location's safety stock or channels changed (SPEC §3): not a
# movement type (nothing moved, nothing is posted), only the availability record's `cause`.
MASTER_CHANGE = "MASTER_CHANGE"
MASTER_SOURCE = "master"


def cause_of(movement: Movement) -> Cause:
    return Cause(
        movement_id=movement.movement_id, movement_type=movement.movement_type.value,
        source_system=movement.source_system.value, source_event_id=movement.source_event_id,
        correlation_id=movement.correlation_id,
    )


def location_change_cause(change: LocationChange) -> Cause:
    return Cause(movement_id=change.change_id, movement_type=MASTER_CHANGE, source_system=MASTER_SOURCE,
                 source_event_id=change.source_event_id, correlation_id=change.location_id)


def availability_record(position: Position, previous_available: int, movement: Movement,
                        emitted_at: datetime, unmatched_quantity: int = 0) -> AvailabilityRecord:
    return position_record(position, previous_available, cause_of(movement), movement.occurred_at, emitted_at,
                           unmatched_quantity)


def master_change_record(position: Position, previous_available: int, change: LocationChange,
                         emitted_at: datetime) -> AvailabilityRecord:
    return position_record(position, previous_available, location_change_cause(change), change.occurred_at,
                           emitted_at)


def position_record(position: Position, previous_available: int, cause: Cause, occurred_at: datetime,
                    emitted_at: datetime, unmatched_quantity: int = 0) -> AvailabilityRecord:
    return AvailabilityRecord(
        sku=position.sku, location_id=position.location_id, on_hand=position.on_hand,
        reserved=position.reserved, quality_control=position.quality_control, damaged=position.damaged,
        in_transit=position.in_transit, safety_stock=position.safety_stock, available=position.available,
        previous_available=previous_available, version=position.version, negative=position.negative,
        unmatched_quantity=unmatched_quantity, cause=cause, occurred_at=occurred_at,
        emitted_at=emitted_at,
    )


class PublishThrottle:
    """Coalesces channel updates: at most one publish per key per interval, the latest value always last.

    Pure bookkeeping over a monotonic clock supplied by the caller, so it is tested without sleeping.
    """

    def __init__(self, interval: float) -> None:
        self.interval = interval
        # When each key was last published, for the keys of the last interval: a key published
        # longer ago is forgotten (it may publish at once, as one never published), so the throttle
        # holds the keys of the last interval, not every SKU and channel the worker ever published.
        self.last_published = RecentKeys(interval)
        self.pending: dict[str, object] = {}

    def offer(self, key: str, value: object, now: float) -> object | None:
        """Return the value to publish right now, or None if it must wait (it is then kept pending)."""
        if not self.last_published.recent(key, now):
            self.last_published.mark(key, now)
            self.pending.pop(key, None)
            return value
        self.pending[key] = value
        return None

    def held(self, key: str) -> object | None:
        """The value held back for `key`, if any."""
        return self.pending.get(key)

    def keep(self, key: str, value: object) -> None:
        """Hold a value found pending in the worker's state (another worker coalesced it): it is due
        at once unless this worker published the key within the interval."""
        self.pending[key] = value

    def due(self, now: float) -> list[tuple[str, object]]:
        """Pending values whose interval has passed: publish them (the final state is never dropped)."""
        ready = [(k, v) for k, v in self.pending.items() if not self.last_published.recent(k, now)]
        for key, _ in ready:
            del self.pending[key]
            self.last_published.mark(key, now)
        return ready


class PublishedVersions:
    """The last version this worker published of each channel key, for the `max_keys` keys it
    published most recently.

    A SKU's network keeps a coalesced value as pending until a later fold sees it was published
    (`settle_pending`), and the resume after a rebalance skips what this worker published itself.
    Both only spare a second publish of the same version, which a consumer that keeps the highest
    version ignores; so a key published long ago may be forgotten, and the map stays bounded by
    `max_keys`, not by the catalogue times the channels.
    """

    def __init__(self, max_keys: int) -> None:
        self.max_keys = max_keys
        # Oldest publish first. An OrderedDict: a full dict that drops its first key on every
        # publish scans past the slots the dropped keys left: 9.9 µs a publish at 100,000 keys, now 0.4.
        self.versions: OrderedDict[str, int] = OrderedDict()

    def get(self, key: str) -> int | None:
        return self.versions.get(key)

    def published(self, key: str, version: int) -> None:
        versions = self.versions
        kept = versions.get(key)
        versions[key] = version if kept is None else max(kept, version)
        versions.move_to_end(key)
        if len(versions) > self.max_keys:
            versions.popitem(last=False)


# Whether a SKU network's stored JSON may hold a pending channel value: the resume after an
# assignment reads every network of the worker's partitions, and most hold none.
may_hold_pending_channels = holds_entries("pending")


@dataclass(frozen=True, slots=True)
class HeldRecord:
    """A channel record the throttle holds back: its version, and how to build it once it is due
    (a busy SKU's channel changes many times an interval; only the last is ever built)."""

    version: int
    build: Callable[[], ChannelAvailability]

    def __call__(self) -> ChannelAvailability:
        return self.build()


class ChannelFolds:
    """Folds a location's availability into its SKU's network and decides which channel records go
    out now: a channel published within the throttle's interval is held back as pending (SPEC §3,
    rate-limited marketplaces) and built only when it is due, since a busy SKU changes its channels
    many times an interval and each record lists every location of the channel.

    `channels_of` answers a location's channels from the location master, and `master_generation`
    names the state of that master (app/domain/network.py)."""

    def __init__(self, throttle: PublishThrottle, published: PublishedVersions,
                 channels_of: Callable[[str], list[str]], master_generation: Callable[[], int | None],
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.throttle, self.published = throttle, published
        self.channels_of, self.master_generation, self.clock = channels_of, master_generation, clock

    def fold(self, network: SkuNetwork, location_id: str, available: int,
             version: int) -> list[ChannelAvailability] | None:
        """The channel records to publish now, or None when no channel changed. What a held-back
        record is built from stays as it is now: the network must not be changed after this fold
        (the next fold works on a copy) and its channel sums name the members this fold counted.
        A change folded before, at the version the network holds, sends again what this worker
        has not sent (`_folded_before`)."""
        generation = self.master_generation()
        current = network.by_location.get(location_id)
        changed = fold_location(network, location_id, available, version, self.channels_of, generation)
        if not changed and current is not None and current[1] == version:
            changed = self._folded_before(network)
        if not changed:
            return None
        settle_pending(network, lambda channel: self.published.get(channel_key(channel, network.sku)))
        now = self.clock()
        ready = []
        for channel in changed:
            version = network.channel_versions[channel]
            record_of = HeldRecord(version, functools.partial(self.record, network, channel, generation))
            if self.throttle.offer(channel_key(channel, network.sku), record_of, now) is None:
                network.pending[channel] = version
            else:
                network.pending.pop(channel, None)
                ready.append(record_of())
        return ready

    def _folded_before(self, network: SkuNetwork) -> list[str]:
        """The channels to send again when a location's change is folded a second time, at the
        version the network holds for it: the record that changed it is being read again, so the
        worker that folded it stopped before its input offset was committed, maybe with the
        network written and the channel records not yet with the broker. Nothing in the network
        says which channels that fold changed, so each channel goes again that this worker has
        neither published nor held at its current version: the same version with the same content,
        which a consumer keeping the highest version ignores. Without this such a channel stays at
        its previous total until the SKU's next change there (RELIABILITY.md §4)."""
        sku = network.sku
        return [channel for channel, version in network.channel_versions.items()
                if channel in network.channel_totals and not self._sent(channel_key(channel, sku), version)]

    def _sent(self, key: str, version: int) -> bool:
        """Whether this worker has published `version` (or a later one) of a channel key, or holds it back."""
        published, held = self.published.get(key), self.throttle.held(key)
        return (published is not None and published >= version) or \
            (isinstance(held, HeldRecord) and held.version >= version)

    def resume(self, network: SkuNetwork) -> None:
        """Hold what a previous owner left pending in a SKU's network, as read from the table after
        an assignment, so that it goes out through the throttle like any coalesced value (SPEC §3:
        the final state survives a crash or a rebalance).

        Only a version newer than what this worker already published or holds for the channel: the
        agent folds while this runs, so a channel may already hold a later value than the table's
        (a batch folded it and has not written the network yet). Replacing it with the table's
        would publish the older value last (a chaos soak found a channel left at a stale total)."""
        for channel, version in network.pending.items():
            key = channel_key(channel, network.sku)
            if channel not in network.channel_totals or self._sent(key, version):
                continue
            # Built when due, from the master as it is then: a network read from the table has no sums.
            self.throttle.keep(key, HeldRecord(version, functools.partial(self.record, network, channel, None)))

    def record(self, network: SkuNetwork, channel: str, master_generation: int | None) -> ChannelAvailability:
        return ChannelAvailability(
            channel=channel, sku=network.sku, available=network.channel_totals[channel],
            by_location=channel_shares(network, channel, self.channels_of, master_generation),
            version=network.channel_versions[channel], emitted_at=datetime.now(UTC))
