"""Position views: one SKU at one location, and one SKU at every location, each asked of the SKU's owner.

`inventory.movements` is partitioned by SKU, so all of a SKU's positions sit in one partition of
the `positions` table, held by one worker: both views are routed to it (or answered here) by the
SKU. `GET /v1/positions/{sku}` reads the `positions` table itself rather than the SKU's
`sku-network` entry: that one holds only availability per location, while operators asking "where
is this SKU?" want the same buckets, cost and reservations as the single-position view. A
partition nobody owns yet (a worker starting, a rebalance) is a 503 NOT_ASSIGNED, never a silent gap.
"""
from __future__ import annotations

from faust.web import Request, Response, View

from app.domain.keys import position_key, split_position_key
from app.faust_app import app, movements_topic
from app.models.canonical import Position
from app.web.auth import VIEWER
from app.web.http import (
    Problem,
    at_owner,
    guarded,
    json_response,
    not_found,
    owner_url,
    partition_of,
)
from tables.definitions import positions

TABLE = positions.table.name


def position_view(position: Position) -> dict:
    """The operator's picture of a position: buckets, availability, cost and open reservations."""
    reservations = sorted(position.reservations.values(), key=lambda r: (r.order_id, r.line_id or ""))
    return {
        "key": position_key(position.sku, position.location_id),
        "sku": position.sku,
        "location_id": position.location_id,
        "on_hand": position.on_hand,
        "reserved": position.reserved,
        "quality_control": position.quality_control,
        "damaged": position.damaged,
        "in_transit": position.in_transit,
        "safety_stock": position.safety_stock,
        "available": position.available,
        "negative": position.negative,
        "version": position.version,
        "avg_cost": None if position.avg_cost is None else str(position.avg_cost),
        "open_reservations": [r.model_dump(mode="json") for r in reservations],
        "transfers_in_transit": {tid: t.model_dump(mode="json") for tid, t in sorted(position.transfers.items())},
        "last_count_at": position.last_count_at.isoformat() if position.last_count_at else None,
    }


def _required(value: str, name: str) -> str:
    value = value.strip()
    if not value or len(value) > 200:
        raise Problem(400, "BAD_REQUEST", f"{name} must be 1..200 characters")
    return value


@app.page("/v1/positions/{sku}/{location_id}")
class PositionAtLocation(View):
    @guarded(VIEWER)
    async def get(self, request: Request, sku: str, location_id: str) -> Response:
        sku = _required(sku, "sku")
        key = position_key(sku, _required(location_id, "location_id"))

        async def answer() -> Response:
            position = positions.get(key)
            if position is None:
                raise not_found("position", key)
            return json_response(self, {**position_view(position), "served_by": owner_url(),
                                        "partition": partition_of(TABLE, sku)})

        # Routed by the SKU: the partition of inventory.movements, so of the table, that holds it.
        return await at_owner(self, request, TABLE, sku, movements_topic, answer)


def local_positions_of(sku: str, partition: int | None) -> list[Position]:
    """Positions of `sku` held here, by a prefix seek in its partition's RocksDB (every partition
    this worker has, when the partition is not known yet)."""
    prefix = position_key(sku, "").encode()
    found: list[Position] = []
    dbs = getattr(positions.table.data, "_dbs", None)  # faust's RocksDB store: one DB per partition
    if dbs is None:  # another store (memory://): scan what the table shows
        rows = ((k, v) for k, v in positions.table.items() if k.startswith(prefix))
    else:
        partitions = [partition] if partition is not None else list(dbs)
        rows = ((k, v) for p in partitions if p in dbs for k, v in _prefixed(dbs[p], prefix))
    for key, raw in rows:
        if split_position_key(key.decode())[0] == sku:  # "A@B@LOC" is SKU "A@B", not "A"
            found.append(Position.model_validate_json(raw))
    return found


def _prefixed(db, prefix: bytes):
    for key, value in db.items(from_key=prefix):
        if not key.startswith(prefix):
            break
        yield key, value


@app.page("/v1/positions/{sku}")
class PositionsOfSku(View):
    @guarded(VIEWER)
    async def get(self, request: Request, sku: str) -> Response:
        sku = _required(sku, "sku")

        async def answer() -> Response:
            partition = partition_of(TABLE, sku)
            rows = [position_view(p) for p in local_positions_of(sku, partition)]
            if not rows:
                raise not_found("positions for SKU", sku)
            rows.sort(key=lambda row: row["location_id"])
            return json_response(self, {"sku": sku, "locations": len(rows), "positions": rows,
                                        "totals": _totals(rows), "served_by": owner_url(), "partition": partition})

        return await at_owner(self, request, TABLE, sku, movements_topic, answer)


def _totals(rows: list[dict]) -> dict[str, int]:
    fields = ("on_hand", "reserved", "quality_control", "damaged", "in_transit", "available")
    return {f: sum(r[f] for r in rows) for f in fields}
