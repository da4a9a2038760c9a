"""JSON Schemas (draft 2020-12) of every contract topic, generated from the pydantic models.

One table says which model each topic carries; `python -m app.cli schemas` writes them to
docs/schemas/<topic>.json, `GET /v1/schemas/{topic}` serves them, and a unit test fails when the
committed files no longer match the models.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, Union

from pydantic import TypeAdapter
from pydantic.json_schema import GenerateJsonSchema

from app import topics as t
from app.models import raw
from app.models.canonical import Movement
from app.models.records import (
    AvailabilityRecord, ChannelAvailability, DeadLetter, DriftRecord, ErpAck, ErpRejection, FinanceException,
    JournalBatch, Posting, ReconciliationSummary,
)
from app.settings import REPO_ROOT

DRAFT = "https://json-schema.org/draft/2020-12/schema"
SCHEMA_DIR = REPO_ROOT / "docs" / "schemas"
DECIMAL_STRING = r"^-?\d+(\.\d+)?$"


@dataclass(frozen=True)
class TopicSchema:
    topic: str
    model: Any            # a pydantic model, or a Union of them
    key: str
    produced_by: str      # "producer" (we read it) or "pipeline" (we write it)
    description: str

    @property
    def is_input(self) -> bool:
        return self.produced_by != "pipeline"


CONTRACT: tuple[TopicSchema, ...] = (
    TopicSchema(t.POS, raw.PosTransaction, "store_id", "store POS", "sales, returns, click-and-collect, day close"),
    TopicSchema(t.ECOM, raw.EcomOrder, "order_id", "ecommerce platform", "order created / cancelled / fulfilled"),
    TopicSchema(t.MARKETPLACE, raw.MarketplaceOrder, "order_id", "marketplace connectors",
                "order accepted / cancelled / shipped"),
    TopicSchema(t.OMS, raw.OmsReservationEvent, "order_id", "order management", "reservation re-sourcing and release"),
    TopicSchema(t.WMS, raw.WmsEvent, "location_id", "WMS and store back office",
                "receipts, transfers, cycle counts, adjustments"),
    TopicSchema(t.INSPECTIONS, raw.ReturnInspection, "location_id", "store / returns centre",
                "disposition of returned units"),
    TopicSchema(t.MASTER_ITEMS, raw.Item, "sku", "PIM / ERP", "item master (compacted)"),
    TopicSchema(t.MASTER_LOCATIONS, raw.Location, "location_id", "ERP", "location master (compacted)"),
    TopicSchema(t.ERP_SNAPSHOTS, raw.StockSnapshot, "location_id", "ERP", "stock ledger balances for reconciliation"),
    TopicSchema(t.MOVEMENTS, Movement, "SKU@LOCATION", "pipeline", "canonical movements, the audit trail"),
    TopicSchema(t.AVAILABILITY, AvailabilityRecord, "SKU@LOCATION", "pipeline", "one record per change of a position"),
    TopicSchema(t.CHANNEL_AVAILABILITY, ChannelAvailability, "CHANNEL:SKU", "pipeline",
                "network availability per channel, coalesced"),
    TopicSchema(t.POSTINGS, Posting, "posting_id", "pipeline", "balanced journal entries"),
    TopicSchema(t.JOURNAL_BATCHES, JournalBatch, "LEGAL_ENTITY:LOCATION:DATE", "pipeline",
                "store day batches and late batches"),
    TopicSchema(t.FINANCE_EXCEPTIONS, FinanceException, "source event id", "pipeline",
                "what could not be posted, with a reason"),
    TopicSchema(t.ERP_ACKS, ErpAck, "batch_id", "pipeline", "what the ERP did with each journal batch (SPEC §9)"),
    TopicSchema(t.ERP_REJECTIONS, ErpRejection, "batch_id", "pipeline",
                "journal batches the ERP refused, with its message (SPEC §9)"),
    TopicSchema(t.DLQ, DeadLetter, "source event id or null", "pipeline",
                "raw input that could not be processed, with the reason; replayable"),
    TopicSchema(t.RECONCILIATION, Union[DriftRecord, ReconciliationSummary], "LOCATION", "pipeline",  # noqa: UP007
                "drift records (kind DRIFT, MISSING_IN_PIPELINE, MISSING_IN_ERP) and snapshot summaries (kind SUMMARY)"),
)
BY_TOPIC = {s.topic: s for s in CONTRACT}


class ContractJsonSchema(GenerateJsonSchema):
    """Money and other decimals travel as strings (SPEC §2): the schema says so, never "number"."""

    def decimal_schema(self, schema: Any) -> dict[str, Any]:
        return {"type": "string", "pattern": DECIMAL_STRING}


@cache
def schema_for(topic: str) -> dict[str, Any]:
    """The JSON Schema of one contract topic's values (KeyError for a topic outside the contract)."""
    spec = BY_TOPIC[topic]
    # What a producer may send is what we accept (validation); what we publish is what we write.
    mode = "validation" if spec.is_input else "serialization"
    generated = TypeAdapter(spec.model).json_schema(mode=mode, schema_generator=ContractJsonSchema)
    generated.pop("title", None)
    return {
        "$schema": DRAFT,
        "$id": f"urn:retail-stock-sync:topic:{topic}",
        "title": topic,
        "description": f"{spec.description}. Key: {spec.key}. Produced by: {spec.produced_by}.",
        "x-kafka-key": spec.key,
        "x-produced-by": spec.produced_by,
        **generated,
    }


def render(topic: str) -> str:
    return json.dumps(schema_for(topic), indent=2, ensure_ascii=False) + "\n"


def write_all(directory: Path = SCHEMA_DIR) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for spec in CONTRACT:
        path = directory / f"{spec.topic}.json"
        path.write_text(render(spec.topic))
        written.append(path)
    return written
