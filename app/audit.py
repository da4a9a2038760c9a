"""The audit trail itself: each `AuditEntry` to a JSON-lines file (AUDIT_LOG, default
DATA_DIR/audit.log) and to the `ops.audit` topic keyed by the actor, so the trail outlives the
worker's disk. Written by the operators' admin actions (app/web/audit.py says who did what) and by
the reconciliation agent's corrections.

Fail-closed (SPEC §7): an action whose `started` entry reaches neither the file nor the topic does
not run; the caller answers 503 (`AuditUnavailable`).
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from app.models.records import AuditEntry

log = logging.getLogger("app.audit")


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
