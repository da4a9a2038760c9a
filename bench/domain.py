"""The core job every system does in the side-by-side runs: a stateful count per SKU@LOCATION, one delta out.

Framework-free, so the ceiling and Quix Streams run exactly the same logic; only the plumbing differs.
"""
from __future__ import annotations

# Signed on_hand effect of a canonical movement type (a simplification of SPEC §3, enough for the job).
SIGN = {"SALE": -1, "FULFIL": -1, "TRANSFER_OUT": -1, "RETURN": 1, "RECEIPT": 1, "TRANSFER_IN": 1}


def apply_movement(state: dict | None, movement: dict) -> tuple[dict, dict]:
    """Count the movement into its key's state; return the new state and the delta to emit."""
    count, on_hand = (state["count"], state["on_hand"]) if state else (0, 0)
    delta = SIGN.get(movement["movement_type"], 0) * movement["quantity"]
    new = {"count": count + 1, "on_hand": on_hand + delta}
    return new, {"old": on_hand, "new": on_hand + delta, "delta": delta, "count": count + 1,
                 "movement_id": movement["movement_id"], "source_event_id": movement["source_event_id"]}
