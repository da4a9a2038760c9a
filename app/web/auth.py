"""Bearer tokens and roles of the operator API: who is calling, and may they? (pure, no web imports)."""
from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass

VIEWER = "viewer"
ADMIN = "admin"
# A role may do what every role below it may do.
ROLE_RANK = {VIEWER: 1, ADMIN: 2}


@dataclass(frozen=True)
class Principal:
    """An authenticated caller, as logs and the audit trail see it: a role and a fingerprint, never the token."""

    role: str
    fingerprint: str

    def as_actor(self) -> dict[str, str]:
        return {"role": self.role, "token_fingerprint": self.fingerprint}


class Denied(Exception):
    """The request may not proceed: 401 (who are you?) or 403 (you may not)."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def fingerprint(token: str) -> str:
    """A stable, non-reversible name for a token: enough to tell two callers apart in an audit trail."""
    return "sha256:" + hashlib.sha256(token.encode()).hexdigest()[:12]


def bearer_token(authorization: str | None) -> str | None:
    if not authorization:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        return None
    return token


def authenticate(authorization: str | None, tokens: Mapping[str, str], needed: str) -> Principal:
    """Check an `Authorization` header against the configured `{token: role}`; raise Denied or return the caller."""
    token = bearer_token(authorization)
    if token is None:
        raise Denied(401, "UNAUTHENTICATED", "an 'Authorization: Bearer <token>' header is required")
    role = None
    # Compare against every configured token in constant time, so timing does not reveal a prefix.
    for known, known_role in tokens.items():
        if hmac.compare_digest(known.encode(), token.encode()):
            role = known_role
    if role is None:
        raise Denied(401, "UNAUTHENTICATED", "the bearer token is not valid")
    if ROLE_RANK.get(role, 0) < ROLE_RANK[needed]:
        raise Denied(403, "FORBIDDEN", f"this view needs the {needed} role; the token has the {role} role")
    return Principal(role=role, fingerprint=fingerprint(token))
