"""A SKU's network view: fold location availability in, and say which channels changed."""
from __future__ import annotations

from collections.abc import Callable

from app.domain.marks import mark_of
from app.models.canonical import SkuNetwork


def fold_location(network: SkuNetwork, location_id: str, available: int, version: int,
                  channels_of: Callable[[str], list[str]]) -> list[str]:
    """Record a location's availability (ignoring stale versions); return the channels that changed:
    their total, or which locations they count (a location whose master dropped the channel)."""
    current = network.by_location.get(location_id)
    if current is not None and current[1] >= version:
        return []
    network.by_location[location_id] = [available, version]
    served = {loc: set(channels_of(loc)) for loc in network.by_location}
    # Every channel the SKU is known on, not only the location's own today: one it has just left
    # must stop counting it (SPEC §3 "Master data changes reach the channels").
    known = [c for c in network.channel_totals if c not in served[location_id]]
    changed = []
    for channel in [*channels_of(location_id), *known]:
        members = sorted(loc for loc, channels in served.items() if channel in channels)
        total = sum(network.by_location[loc][0] for loc in members)
        membership = mark_of(",".join(members))
        # No membership kept yet (state saved before it was): take today's as the one published.
        moved = network.channel_totals.get(channel) != total or \
            network.channel_members.get(channel, membership) != membership
        network.channel_members[channel] = membership
        if moved:
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
