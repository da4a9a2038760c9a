"""The benchmark's data: the realistic retail mix over K SKUs x L locations, pre-serialized once.

Raw events come from `app.simulation.workload.RetailWorkload` (the SPEC §2.1 mix, a few percent
producer re-sends). The canonical movements the position stage and the peers consume are made from
the same raw events by the pipeline's own pure mappers, so every system sees identical records.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import orjson

from app.domain.keys import position_key
from app.domain.master import InMemoryMasterData
from app.domain.parsing import event_id_in
from app.domain.sources import SOURCES, Mapped, MappingContext, map_raw
from app.models.raw import Item, Location
from app.simulation.workload import Catalogue, RetailWorkload

Record = tuple[str, bytes, bytes]  # (topic, key, value)


@dataclass
class SizedCatalogue(Catalogue):
    """The simulation's catalogue with its id lists built once: at 20,000 SKUs the generator asks for
    them for every event, and rebuilding them dominated generation time. Same lists, same sequence."""

    def __post_init__(self) -> None:
        self._skus, self._stores, self._dcs = super().skus(), super().stores(), super().dcs()

    def skus(self) -> list[str]:
        return self._skus

    def stores(self) -> list[str]:
        return self._stores

    def dcs(self) -> list[str]:
        return self._dcs


def catalogue_for(skus: int, locations: int) -> Catalogue:
    """K SKUs at L locations: one DC per ten locations, the rest stores."""
    dcs = max(1, locations // 10)
    return SizedCatalogue(n_skus=skus, n_stores=max(1, locations - dcs), n_dcs=dcs)


def _encode(topic: str, key: str | None, value: dict) -> Record:
    return topic, (key or "").encode(), orjson.dumps(value)


def position_template() -> str:
    """A position's JSON as a store's SKU holds it after a few sales (three applied marks, an average
    cost, a count), with `@SKU@` and `@LOC@` where its key goes: what the recovery and the expiry
    sweep benchmarks fill their stores with."""
    from decimal import Decimal

    from app.models.canonical import Position

    marks = {f"pos:S001-R1-{i:08d}:1:line": [1795766400, 1795766400, -1] for i in range(3)}
    return Position(sku="@SKU@", location_id="@LOC@", on_hand=37, reserved=1, safety_stock=1, version=5,
                    avg_cost=Decimal("7.1234"), applied=marks,
                    last_count_at=datetime(2026, 11, 27, 9, tzinfo=UTC)).model_dump_json()


def master_records(catalogue: Catalogue) -> list[Record]:
    return [_encode(t, k, v) for t, k, v in catalogue.master_events()]


def master_data(catalogue: Catalogue) -> InMemoryMasterData:
    items, locations = [], []
    for topic, _, value in catalogue.master_events():
        (items if topic == "master.items" else locations).append(
            Item.model_validate(value) if topic == "master.items" else Location.model_validate(value))
    return InMemoryMasterData(items, locations)


@dataclass
class Dataset:
    """One run's data: raw channel records and the canonical movements the ingest stage makes of them."""

    raw: list[Record]
    movements: list[Record]   # key SKU@LOCATION, value canonical Movement JSON (as ingest publishes it)
    ends: list[int]           # ends[i]: how many movements the first i+1 raw events make

    def prefix(self, raw_events: int) -> Dataset:
        """The first `raw_events` raw events and exactly the movements they make."""
        n = min(raw_events, len(self.raw))
        cut = self.ends[n - 1] if n else 0
        return Dataset(self.raw[:n], self.movements[:cut], self.ends[:n])


def raw_events(catalogue: Catalogue, count: int, seed: int, duplicate_rate: float = 0.03,
               start: datetime | None = None) -> list[Record]:
    workload = RetailWorkload(catalogue=catalogue, seed=seed, duplicate_rate=duplicate_rate,
                              start=start or datetime(2026, 11, 27, 8, tzinfo=UTC))
    out = [_encode(t, k, v) for t, k, v in workload.events(count)]
    return out[:count]


def to_movements(catalogue: Catalogue, raw: list[Record],
                 master: InMemoryMasterData | None = None) -> tuple[list[Record], list[int]]:
    """Map raw records to canonical movements with the pipeline's own mappers (what ingest would send).

    Returns the movements and, per raw record, how many movements the records up to it make.
    """
    master = master or master_data(catalogue)
    now = datetime(2026, 11, 27, 8, tzinfo=UTC)
    ctx = MappingContext(master, timedelta(days=3), now)
    out: list[Record] = []
    ends: list[int] = []
    for topic, _, value in raw:
        mapped = map_raw(SOURCES[topic], value, ctx)
        if isinstance(mapped, Mapped):
            for m in mapped.movements:
                stamped = m.model_copy(update={"received_at": now})
                out.append(("inventory.movements", position_key(m.sku, m.location_id).encode(),
                            stamped.model_dump_json().encode()))
        ends.append(len(out))
    return out, ends


def build(skus: int, locations: int, count: int, seed: int = 11, duplicate_rate: float = 0.03) -> Dataset:
    catalogue = catalogue_for(skus, locations)
    raw = raw_events(catalogue, count, seed, duplicate_rate)
    movements, ends = to_movements(catalogue, raw)
    return Dataset(raw=raw, movements=movements, ends=ends)


def source_event_id(topic: str, value: bytes) -> str | None:
    """The id the availability record's cause carries for a raw record (None if it has none)."""
    try:
        return event_id_in(orjson.loads(value), SOURCES[topic].id_field)
    except (KeyError, orjson.JSONDecodeError):
        return None
