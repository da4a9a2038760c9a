"""Audit trail of admin actions: who (role and token fingerprint, never the token), what, when, outcome.

Each `AuditEntry` goes to a JSON-lines file (AUDIT_LOG, default DATA_DIR/audit.log) and to the
`ops.audit` topic keyed by the actor, so the trail outlives the worker's disk. An action writes
two entries sharing an `audit_id`: `started` before it runs and `succeeded` or `failed` after.

Fail-closed (SPEC §7): an action whose `started` entry reaches neither the file nor the topic does
not run; the caller answers 503 (`AuditUnavailable`).
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


class AuditUnavailable(Exception):
    """Neither the audit file nor the audit topic took the entry: the action must not run."""


async def record(entry: AuditEntry, path: Path | None, topic: Any, *, required: bool = False) -> None:
    """Write one entry to the file and the topic; a failure of one is logged and does not stop the other.

    With `required` (the `started` entry, written before the action runs), failing both raises
    AuditUnavailable. A closing entry that fails both is only logged: the action has already run and
    its answer is still the truth; the `started` entry says it was attempted.
    """
    written = False
    if path is not None:
        try:
            append_line(path, entry)
            written = True
        except OSError:
            log.exception("cannot write audit log %s", path)
    try:
        await topic.send(key=entry.actor.encode(), value=entry.to_json())
        written = True
    except Exception:
        log.exception("cannot publish audit entry %s", entry.detail.get("audit_id"))
    if not written:
        log.error("audit entry %s written nowhere", entry.detail.get("audit_id"))
        if required:
            raise AuditUnavailable(entry.detail.get("audit_id"))
