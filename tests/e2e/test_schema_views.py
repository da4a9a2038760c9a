"""`GET /v1/schemas` and `/v1/schemas/{topic}`: a worker serves the committed topic schemas to viewers."""
from __future__ import annotations

import json

import pytest

from app.schemas import SCHEMA_DIR
from tests.e2e.harness import api

pytestmark = pytest.mark.e2e


def test_a_viewer_lists_the_schemas_and_reads_one_as_committed(pipeline):
    listing = api(pipeline, "/v1/schemas")
    assert listing.status == 200
    topics = {s["topic"] for s in listing.json["schemas"]}
    assert {"pos.transactions", "inventory.availability", "inventory.dlq"} <= topics
    answer = api(pipeline, "/v1/schemas/pos.transactions")
    assert answer.status == 200
    assert answer.json == json.loads((SCHEMA_DIR / "pos.transactions.json").read_text())


def test_schemas_need_a_token_and_unknown_topics_are_404(pipeline):
    assert api(pipeline, "/v1/schemas", token=None).status == 401
    missing = api(pipeline, "/v1/schemas/internal.lineage")
    assert missing.status == 404 and missing.json["error"] == "NOT_FOUND"
