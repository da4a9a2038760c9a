"""Audit entries of admin actions: who (role and token fingerprint, never the token), what, when, outcome.

An action writes two entries sharing an `audit_id`: `started` before it runs and `succeeded` or
`failed` after. Where they go, and the fail-closed rule, is the trail's business (app/audit.py).
"""
from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from app.audit import AuditUnavailable, record
from app.models.records import AuditEntry
from app.web.auth import Principal

__all__ = ["AuditUnavailable", "actor_of", "audit_entry", "record"]


def actor_of(principal: Principal) -> str:
    return f"{principal.role}:{principal.fingerprint}"


def audit_entry(principal: Principal, action: str, request: dict[str, Any], status: str,
                outcome: dict[str, Any] | None = None, *, audit_id: str | None = None,
                request_id: str | None = None) -> AuditEntry:
    return AuditEntry(actor=actor_of(principal), action=action, at=datetime.now(UTC), detail={
        "audit_id": audit_id or uuid.uuid4().hex,
        "status": status,            # started | succeeded | failed
        "role": principal.role,
        "token_fingerprint": principal.fingerprint,
        "request": request,
        "outcome": outcome or {},
        "request_id": request_id,
    })
