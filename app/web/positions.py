"""Position views: one SKU at one location (asked of its owner), and one SKU at every location (fan-out).

`GET /v1/positions/{sku}` asks every worker for the positions of the SKU in the partitions it owns
and merges the answers. It reads the `positions` table itself rather than the SKU-keyed
`sku-network` table of the channel stage: that table is derived downstream, lags the positions,
and holds only availability per location, while operators asking "where is this SKU?" want the
same buckets, cost and reservations as the single-position view. The answer says whether every
partition answered; a missing one makes it a 503 (with what was found), never a silent gap.
"""
from __future__ import annotations

import asyncio
from urllib.parse import quote

import aiohttp
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
LOCAL_SCOPE = "local"      # ?scope=local: only this worker's partitions (the fan-out's inner call)
PEER_TIMEOUT = aiohttp.ClientTimeout(total=10)


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


def _owned_partitions() -> list[int]:
    # Partition p of the positions table is written by whoever processes partition p of
    # inventory.movements (Faust assigns the two together), so that is who answers for it.
    topic = movements_topic.get_topic_name()
    return sorted(tp.partition for tp in app.assignor.assigned_actives() if tp.topic == topic)


def local_positions_of(sku: str, partitions: list[int]) -> list[Position]:
    """Positions of `sku` in this worker's own partitions, by a prefix seek in each partition's RocksDB."""
    prefix = position_key(sku, "").encode()
    found: list[Position] = []
    dbs = getattr(positions.table.data, "_dbs", None)  # faust's RocksDB store: one DB per partition
    if dbs is None:  # another store (memory://): scan what the table shows
        rows = ((k, v) for k, v in positions.table.items() if k.startswith(prefix))
    else:
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
        if request.query.get("scope") == LOCAL_SCOPE:
            partitions = _owned_partitions()
            return json_response(self, {
                "sku": sku, "served_by": owner_url(), "partitions": partitions,
                "positions": [position_view(p) for p in local_positions_of(sku, partitions)]})
        return await self._gather(request, sku)

    async def _gather(self, request: Request, sku: str) -> Response:
        topic = movements_topic.get_topic_name()
        owners = {url: tps.get(topic, []) for url, tps in app.router.external_topics_metadata().items()}
        asked = [url for url, partitions in owners.items() if partitions]
        answers = await asyncio.gather(*(self._ask(url, request, sku) for url in asked))
        covered: set[int] = set()
        found: dict[str, dict] = {}
        workers = []
        for url, answer in zip(asked, answers, strict=True):
            if isinstance(answer, str):
                workers.append({"url": url, "error": answer})
                continue
            workers.append({"url": url, "partitions": answer["partitions"]})
            covered.update(answer["partitions"])
            for row in answer["positions"]:
                found[row["key"]] = {**row, "served_by": answer["served_by"]}
        total = positions.table.partitions or 0
        missing = sorted(set(range(total)) - covered)
        body = {"sku": sku, "locations": len(found),
                "positions": [found[k] for k in sorted(found)],
                "totals": _totals(found.values()),
                "complete": not missing, "missing_partitions": missing, "workers": workers}
        if missing:
            raise Problem(503, "INCOMPLETE", f"partitions {missing} did not answer (rebalancing or a worker "
                                             "is down); the positions found are included", **body)
        if not found:
            raise not_found("positions for SKU", sku)
        return json_response(self, body)

    async def _ask(self, url: str, request: Request, sku: str) -> dict | str:
        if url.rstrip("/") == owner_url().rstrip("/"):
            partitions = _owned_partitions()
            return {"served_by": owner_url(), "partitions": partitions,
                    "positions": [position_view(p) for p in local_positions_of(sku, partitions)]}
        # The peer runs the same guarded view and checks the same bearer token itself.
        headers = {"Authorization": request.headers.get("Authorization", "")}
        try:
            async with app.http_client.get(f"{url.rstrip('/')}/v1/positions/{quote(sku, safe='')}",
                                           params={"scope": LOCAL_SCOPE}, headers=headers,
                                           timeout=PEER_TIMEOUT) as response:
                if response.status != 200:
                    return f"HTTP {response.status}"
                return await response.json()
        except (TimeoutError, aiohttp.ClientError) as exc:
            return f"{type(exc).__name__}: {exc}"


def _totals(rows) -> dict[str, int]:
    fields = ("on_hand", "reserved", "quality_control", "damaged", "in_transit", "available")
    rows = list(rows)
    return {f: sum(r[f] for r in rows) for f in fields}
