"""A SKU's network view: fold location availability in, and say which channels changed."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from app.domain.marks import mark_of
from app.models.canonical import SkuNetwork

NO_MEMBERS = mark_of("")


@dataclass(frozen=True, slots=True)
class ChannelSums:
    """What the last fold computed for a network, held in memory beside it and never stored: each
    channel's total over the network's locations, the locations it counts (in the network's order)
    and the mark of that list.

    A fold used to walk every location of the SKU, with a master look-up each, and re-mark every
    channel's members: O(locations) per movement, most of the position stage's own work once a SKU
    sells in a few hundred stores (BENCHMARKS.md). While the location master is unchanged since these
    sums were taken (`master_generation`), the channels every location serves are the same, so the
    next fold only adds the moving location's difference. The dicts are never changed in place: a
    fold makes new ones, so a working copy of the network may share them with its original.
    """

    master_generation: int
    totals: dict[str, int]
    members: dict[str, list[str]]
    marks: dict[str, str]


def fold_location(network: SkuNetwork, location_id: str, available: int, version: int,
                  channels_of: Callable[[str], list[str]], master_generation: int | None = None) -> list[str]:
    """Record a location's availability (ignoring stale versions); return the channels that changed:
    their total, or which locations they count (a location whose master dropped the channel).

    `master_generation` names the state of the location master that `channels_of` reads (it must
    change whenever a location's channels may have); with it, the sums of the network's previous
    fold are reused while it is unchanged. None: every location is summed again."""
    current = network.by_location.get(location_id)
    if current is not None and current[1] >= version:
        return []
    sums = _current_sums(network, master_generation)
    own = channels_of(location_id)
    network.by_location[location_id] = [available, version]
    if sums is not None:
        totals, members, marks = _add_location(sums, location_id, available - current[0] if current else available,
                                               joined=current is None, channels=own)
    else:
        totals, members, marks = _sum_all(network, channels_of)
    network.channel_sums = None if master_generation is None else \
        ChannelSums(master_generation, totals, members, marks)
    # Every channel the SKU is known on, not only the location's own today: one it has just left
    # must stop counting it (SPEC §3 "Master data changes reach the channels").
    changed = []
    for channel in [*own, *(c for c in network.channel_totals if c not in own)]:
        total = totals.get(channel, 0)
        # by_location keeps its order in the stored JSON, so the same members give the same mark.
        membership = marks.get(channel, NO_MEMBERS)
        # No membership kept yet (state saved before it was): take today's as the one published.
        moved = network.channel_totals.get(channel) != total or \
            network.channel_members.get(channel, membership) != membership
        network.channel_members[channel] = membership
        if moved and channel not in changed:
            network.channel_totals[channel] = total
            network.channel_versions[channel] = network.channel_versions.get(channel, 0) + 1
            changed.append(channel)
    return changed


def _current_sums(network: SkuNetwork, master_generation: int | None) -> ChannelSums | None:
    """The network's sums if they were taken under this master (None: sum every location)."""
    sums = network.channel_sums
    if sums is None or master_generation is None or sums.master_generation != master_generation:
        return None
    return sums


def _sum_all(network: SkuNetwork, channels_of: Callable[[str], list[str]]) -> tuple[dict, dict, dict]:
    totals: dict[str, int] = {}
    members: dict[str, list[str]] = {}
    for loc, (avail, _) in network.by_location.items():   # one pass: one master look-up per location
        for channel in channels_of(loc):
            totals[channel] = totals.get(channel, 0) + avail
            members.setdefault(channel, []).append(loc)
    return totals, members, {channel: mark_of(",".join(locs)) for channel, locs in members.items()}


def _add_location(sums: ChannelSums, location_id: str, difference: int, joined: bool,
                  channels: list[str]) -> tuple[dict, dict, dict]:
    """The sums with one location's availability changed by `difference` (`joined`: it is new to the
    network, so it goes last in each of its channels' members, where `_sum_all` would put it)."""
    totals, members, marks = dict(sums.totals), dict(sums.members), dict(sums.marks)
    for channel in channels:
        totals[channel] = totals.get(channel, 0) + difference
        if joined:
            members[channel] = [*members.get(channel, ()), location_id]
            marks[channel] = mark_of(",".join(members[channel]))
    return totals, members, marks


def channel_shares(network: SkuNetwork, channel: str, channels_of: Callable[[str], list[str]],
                   master_generation: int | None = None) -> dict[str, int]:
    """Each location's availability counted in the channel, by location id (`master_generation` as
    for `fold_location`)."""
    sums = _current_sums(network, master_generation)
    if sums is not None:   # the members as the last fold found them: no master look-up per location
        return {loc: network.by_location[loc][0] for loc in sorted(sums.members.get(channel, ()))}
    return {loc: avail for loc, (avail, _) in sorted(network.by_location.items()) if channel in channels_of(loc)}


def settle_pending(network: SkuNetwork, published_version: Callable[[str], int | None]) -> None:
    """Forget pending channels whose version (or a later one) this worker has published since."""
    for channel, version in list(network.pending.items()):
        published = published_version(channel)
        if published is not None and published >= version:
            del network.pending[channel]
