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
    totals: dict[str, int] = {}
    members: dict[str, list[str]] = {}
    for loc, (avail, _) in network.by_location.items():   # one pass: one master look-up per location
        for channel in channels_of(loc):
            totals[channel] = totals.get(channel, 0) + avail
            members.setdefault(channel, []).append(loc)
    # Every channel the SKU is known on, not only the location's own today: one it has just left
    # must stop counting it (SPEC §3 "Master data changes reach the channels").
    own = channels_of(location_id)
    changed = []
    for channel in [*own, *(c for c in network.channel_totals if c not in own)]:
        total = totals.get(channel, 0)
        # by_location keeps its order in the stored JSON, so the same members give the same mark.
        membership = mark_of(",".join(members.get(channel, ())))
        # No membership kept yet (state saved before it was): take today's as the one published.
        moved = network.channel_totals.get(channel) != total or \
            network.channel_members.get(channel, membership) != membership
        network.channel_members[channel] = membership
        if moved and channel not in changed:
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
