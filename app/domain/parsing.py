"""The one way a raw record becomes a typed model or a DLQ reason: size, JSON, object, model limits."""
from __future__ import annotations

from typing import TypeVar

import orjson
from pydantic import BaseModel, ValidationError

from app.models import limits
from app.models.records import ErrorCode, Rejection

M = TypeVar("M", bound=BaseModel)


def event_id_in(payload: object, id_field: str | None) -> str | None:
    """The record's own id, cut to the identifier limit: it keys the dead letter and the trace even
    when it is the oversized field."""
    if id_field is None or not isinstance(payload, dict):
        return None
    value = payload.get(id_field)
    return str(value)[:limits.LIMITS.identifier_chars] if value is not None else None


def rejection_for(exc: ValidationError, source_event_id: str | None = None) -> Rejection:
    """A model's validation errors as one DLQ reason: a size limit beats a range limit beats the rest."""
    errors = exc.errors(include_url=False, include_input=False)
    kinds = {e["type"] for e in errors}
    code = (ErrorCode.TOO_LARGE if limits.TOO_LARGE in kinds else
            ErrorCode.OUT_OF_RANGE if limits.OUT_OF_RANGE in kinds else ErrorCode.SCHEMA_INVALID)
    detail = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in errors[:5])
    return Rejection(error_code=code, error_detail=detail[:2000], source_event_id=source_event_id)


def parse_record(model: type[M], raw: bytes, id_field: str | None = None) -> M | Rejection:
    """Never raises on bad input: every way a producer can get a record wrong is a Rejection."""
    if len(raw) > limits.LIMITS.record_bytes:
        return Rejection(error_code=ErrorCode.TOO_LARGE,
                         error_detail=f"record of {len(raw)} bytes, more than the limit of {limits.LIMITS.record_bytes}")
    try:
        payload = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        return Rejection(error_code=ErrorCode.MALFORMED_JSON, error_detail=str(exc)[:2000])
    if not isinstance(payload, dict):
        return Rejection(error_code=ErrorCode.SCHEMA_INVALID, error_detail="payload is not a JSON object")
    event_id = event_id_in(payload, id_field)
    try:
        return model.model_validate(payload)
    except ValidationError as exc:
        return rejection_for(exc, event_id)
