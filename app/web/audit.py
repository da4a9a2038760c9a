"""Audit trail of admin actions: who (role and token fingerprint, never the token), what, when, outcome.

Each `AuditEntry` goes to a JSON-lines file (AUDIT_LOG, default DATA_DIR/audit.log) and to the
`ops.audit` topic keyed by the actor, so the trail outlives the worker's disk. An action writes
two entries sharing an `audit_id`: `started` before it runs and `succeeded` or `failed` after.
"""
from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from app.models.records import AuditEntry
from app.web.auth import Principal

log = logging.getLogger("app.web.audit")


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


def append_line(path: Path, entry: AuditEntry) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("ab") as f:
        f.write(entry.to_json() + b"\n")


async def record(entry: AuditEntry, path: Path | None, topic: Any) -> None:
    """Write one entry to the file and the topic; a failure of one is logged and does not stop the other."""
    if path is not None:
        try:
            append_line(path, entry)
        except OSError:
            log.exception("cannot write audit log %s", path)
    try:
        await topic.send(key=entry.actor.encode(), value=entry.to_json())
    except Exception:
        log.exception("cannot publish audit entry %s", entry.detail.get("audit_id"))
