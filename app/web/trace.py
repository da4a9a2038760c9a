"""What became of one source event: its lineage facts, grouped by stage, from the owner of its key."""
from __future__ import annotations

from faust.web import Request, Response, View

from app.faust_app import app, lineage_topic
from app.models.records import TraceFact, TraceStage
from app.web.auth import VIEWER
from app.web.http import (
    at_owner,
    bad_request,
    guarded,
    json_response,
    not_found,
    owner_url,
    partition_of,
    table_named,
)
from app.domain.lineage import MAX_FACTS, read_entry, trace_key
from tables.names import LINEAGE as TABLE


def _detail(fact: TraceFact) -> dict:
    return {**fact.detail, "at": fact.at.isoformat()}


def trace_view(source_system: str, source_event_id: str, facts: list[TraceFact], dropped: int) -> dict:
    """Group an event's facts into the questions operators ask: received? moved what? posted? parked?"""
    by_stage: dict[TraceStage, list[dict]] = {stage: [] for stage in TraceStage}
    for fact in facts:
        by_stage[fact.stage].append(_detail(fact))
    received = by_stage[TraceStage.RECEIVED]
    applied = by_stage[TraceStage.APPLIED]
    return {
        "source_system": source_system,
        "source_event_id": source_event_id,
        "received": bool(received),             # read and accepted by ingest (mapped to movements)
        "received_at": received[0]["at"] if received else None,
        "times_received": len(received),        # > 1: a producer resent it (its movements were duplicates)
        "dead_lettered": bool(by_stage[TraceStage.DEAD_LETTER]),
        "movements": by_stage[TraceStage.MOVEMENT],
        "applied": applied,
        # Each applied movement produced exactly one inventory.availability record, at that version.
        "availability_records": [
            {"key": a.get("key"), "version": a.get("version"), "available": a.get("available"),
             "on_hand": a.get("on_hand"), "movement_id": a.get("movement_id")} for a in applied],
        "duplicates_ignored": by_stage[TraceStage.DUPLICATE],
        "postings": by_stage[TraceStage.POSTING],
        "finance_exceptions": by_stage[TraceStage.FINANCE_EXCEPTION],
        "dead_letters": by_stage[TraceStage.DEAD_LETTER],
        "facts": [f.model_dump(mode="json") for f in facts],
        "facts_dropped": dropped,
        "facts_bound": MAX_FACTS,
    }


@app.page("/v1/trace/{source_system}/{source_event_id}")
class TraceView(View):
    @guarded(VIEWER)
    async def get(self, request: Request, source_system: str, source_event_id: str) -> Response:
        if not source_system.strip() or not source_event_id.strip():
            raise bad_request("source_system and source_event_id must not be blank")
        lineage = table_named(TABLE, "lineage")
        key = trace_key(source_system, source_event_id)

        async def answer() -> Response:
            raw = lineage.get(key.encode())
            if raw is None:
                raise not_found("trace for source event", key)
            facts, dropped = read_entry(raw)
            return json_response(self, {**trace_view(source_system, source_event_id, facts, dropped),
                                        "served_by": owner_url(), "partition": partition_of(TABLE, key)})

        return await at_owner(self, request, TABLE, key, lineage_topic, answer)
