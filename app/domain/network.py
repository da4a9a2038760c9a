"""A SKU's network view: fold location availability in, and say which channels changed."""
from __future__ import annotations

from collections.abc import Callable

from app.models.canonical import SkuNetwork


def fold_location(network: SkuNetwork, location_id: str, available: int, version: int,
                  channels_of: Callable[[str], list[str]]) -> list[str]:
    """Record a location's availability (ignoring stale versions); return the channels whose total moved."""
    current = network.by_location.get(location_id)
    if current is not None and current[1] >= version:
        return []
    network.by_location[location_id] = [available, version]
    changed = []
    for channel in channels_of(location_id):
        total = sum(avail for loc, (avail, _) in network.by_location.items() if channel in channels_of(loc))
        if network.channel_totals.get(channel) != total:
            network.channel_totals[channel] = total
            network.channel_versions[channel] = network.channel_versions.get(channel, 0) + 1
            changed.append(channel)
    return changed


def channel_shares(network: SkuNetwork, channel: str, channels_of: Callable[[str], list[str]]) -> dict[str, int]:
    return {loc: avail for loc, (avail, _) in sorted(network.by_location.items()) if channel in channels_of(loc)}


def settle_pending(network: SkuNetwork, published_version: Callable[[str], int | None]) -> None:
    """Forget pending channels whose version (or a later one) this worker has published since."""
    for channel, version in list(network.pending.items()):
        published = published_version(channel)
        if published is not None and published >= version:
            del network.pending[channel]
