"""Bearer auth of the operator API: 401 without a valid token, 403 below the role; tokens never leak."""
from __future__ import annotations

import json
import logging

import orjson
import pytest
from aiohttp.test_utils import make_mocked_request
from faust.web import View

from app.faust_app import app, settings
from app.logging_setup import JsonFormatter, RedactSecrets, correlated, redact
from app.web import audit
from app.web.auth import ADMIN, VIEWER, Denied, Principal, authenticate, bearer_token, fingerprint
from app.web.http import Problem, guarded, principal_of

TOKENS = {"viewer-secret-123": VIEWER, "admin-secret-456": ADMIN}


# --- authenticate: the decision ------------------------------------------------------------------

@pytest.mark.parametrize("header", [None, "", "Bearer", "Bearer   ", "Basic dmlld2VyOnB3", "viewer-secret-123"])
def test_missing_or_malformed_authorization_is_401(header):
    with pytest.raises(Denied) as denied:
        authenticate(header, TOKENS, VIEWER)
    assert denied.value.status == 401


def test_unknown_token_is_401():
    with pytest.raises(Denied) as denied:
        authenticate("Bearer not-a-token", TOKENS, VIEWER)
    assert denied.value.status == 401 and denied.value.code == "UNAUTHENTICATED"


def test_no_configured_tokens_means_nobody_gets_in():
    with pytest.raises(Denied) as denied:
        authenticate("Bearer anything", {}, VIEWER)
    assert denied.value.status == 401


def test_viewer_on_admin_view_is_403():
    with pytest.raises(Denied) as denied:
        authenticate("Bearer viewer-secret-123", TOKENS, ADMIN)
    assert denied.value.status == 403 and denied.value.code == "FORBIDDEN"


def test_viewer_may_view_and_admin_may_do_both():
    assert authenticate("Bearer viewer-secret-123", TOKENS, VIEWER).role == VIEWER
    assert authenticate("bearer admin-secret-456", TOKENS, VIEWER).role == ADMIN
    assert authenticate("Bearer admin-secret-456", TOKENS, ADMIN).role == ADMIN


def test_bearer_scheme_is_case_insensitive_and_token_trimmed():
    assert bearer_token("BEARER  admin-secret-456 ") == "admin-secret-456"


def test_fingerprint_is_stable_distinct_and_does_not_contain_the_token():
    one, other = fingerprint("admin-secret-456"), fingerprint("viewer-secret-123")
    assert one == fingerprint("admin-secret-456") and one != other
    assert "admin-secret-456" not in one and "secret" not in one
    principal = authenticate("Bearer admin-secret-456", TOKENS, ADMIN)
    assert principal == Principal(role=ADMIN, fingerprint=one)
    assert "admin-secret-456" not in repr(principal)


def test_denial_messages_never_echo_the_token():
    for header, needed in (("Bearer wrong-token-999", VIEWER), ("Bearer viewer-secret-123", ADMIN)):
        with pytest.raises(Denied) as denied:
            authenticate(header, TOKENS, needed)
        assert header.split()[1] not in denied.value.message


# --- guarded: the one mechanism every /v1 view uses ----------------------------------------------

class Sample(View):
    @guarded(ADMIN)
    async def post(self, request, **kw):
        return self.bytes(orjson.dumps({"role": principal_of(request).role}), content_type="application/json")

    @guarded(VIEWER)
    async def get(self, request, thing: str = ""):
        if thing == "missing":
            raise Problem(404, "NOT_FOUND", f"no thing {thing!r}")
        if thing == "boom":
            raise RuntimeError("unexpected")
        return self.bytes(orjson.dumps({"thing": thing, "role": principal_of(request).role}),
                          content_type="application/json")


@pytest.fixture()
def view(monkeypatch):
    # Settings is frozen: swap the whole object the decorator reads.
    from app.web import http
    monkeypatch.setattr(http, "settings", type(settings)(api_tokens=TOKENS))
    return Sample(app, app.web)


def request(method: str = "GET", token: str | None = None, path: str = "/v1/sample"):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return make_mocked_request(method, path, headers=headers)


def body(response) -> dict:
    return json.loads(response.body)


async def test_guarded_view_without_token_answers_401_json_with_challenge(view):
    response = await view.get(request())
    assert response.status == 401
    assert response.content_type == "application/json"
    assert body(response)["error"] == "UNAUTHENTICATED"
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert response.headers["X-Request-Id"]


async def test_guarded_view_with_wrong_token_is_401(view):
    response = await view.get(request(token="guess"))
    assert response.status == 401 and body(response)["status"] == 401


async def test_viewer_on_admin_view_is_403_json(view):
    response = await view.post(request("POST", token="viewer-secret-123"))
    assert response.status == 403 and body(response)["error"] == "FORBIDDEN"


async def test_admin_on_admin_view_is_200(view):
    response = await view.post(request("POST", token="admin-secret-456"))
    assert response.status == 200 and body(response) == {"role": ADMIN}


async def test_viewer_on_viewer_view_is_200_and_sees_its_role(view):
    response = await view.get(request(token="viewer-secret-123"), thing="x")
    assert response.status == 200 and body(response) == {"thing": "x", "role": VIEWER}


async def test_a_views_problem_becomes_its_status_as_json(view):
    response = await view.get(request(token="viewer-secret-123"), thing="missing")
    assert response.status == 404
    assert body(response)["error"] == "NOT_FOUND" and "missing" in body(response)["message"]


async def test_an_unexpected_error_is_500_json(view, caplog):
    with caplog.at_level(logging.ERROR, logger="app.web"):
        response = await view.get(request(token="viewer-secret-123"), thing="boom")
    assert response.status == 500 and body(response)["error"] == "INTERNAL"


async def test_tokens_never_reach_the_logs(view, caplog):
    formatter = JsonFormatter()
    with caplog.at_level(logging.DEBUG):
        await view.get(request(token="viewer-secret-123"), thing="x")
        await view.get(request(token="wrong-token-999"))
        await view.post(request("POST", token="viewer-secret-123"))
        await view.post(request("POST", token="admin-secret-456"))
        await view.get(request(token="viewer-secret-123"), thing="boom")
    assert caplog.records, "the calls were logged"
    lines = [formatter.format(r) for r in caplog.records]
    for secret in ("viewer-secret-123", "admin-secret-456", "wrong-token-999"):
        assert not any(secret in line for line in lines), secret
    calls = [json.loads(line) for line in lines if "/v1/sample" in json.loads(line)["message"]]
    assert {c.get("role") for c in calls} >= {VIEWER, ADMIN, None}
    assert all(c.get("correlation_id") for c in calls)
    assert fingerprint("admin-secret-456") in {c.get("token_fingerprint") for c in calls}


# --- the audit trail -----------------------------------------------------------------------------

class FakeTopic:
    def __init__(self) -> None:
        self.sent: list[tuple[bytes, bytes]] = []

    async def send(self, key: bytes, value: bytes) -> None:
        self.sent.append((key, value))


async def test_audit_entries_name_role_and_fingerprint_never_the_token(tmp_path):
    principal = authenticate("Bearer admin-secret-456", TOKENS, ADMIN)
    topic, path = FakeTopic(), tmp_path / "audit" / "audit.log"
    started = audit.audit_entry(principal, "dlq.replay", {"error_code": "UNKNOWN_ITEM"}, "started")
    await audit.record(started, path, topic)
    await audit.record(audit.audit_entry(principal, "dlq.replay", {"error_code": "UNKNOWN_ITEM"}, "succeeded",
                                         {"replayed": 3}, audit_id=started.detail["audit_id"]), path, topic)
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [line["detail"]["status"] for line in lines] == ["started", "succeeded"]
    assert lines[0]["detail"]["audit_id"] == lines[1]["detail"]["audit_id"]
    assert lines[1]["actor"] == f"admin:{fingerprint('admin-secret-456')}"
    assert lines[1]["detail"]["outcome"] == {"replayed": 3} and lines[1]["at"]
    assert "admin-secret-456" not in path.read_text()
    assert len(topic.sent) == 2 and all(b"admin-secret-456" not in k + v for k, v in topic.sent)


async def test_audit_file_failure_still_publishes(tmp_path):
    principal = authenticate("Bearer admin-secret-456", TOKENS, ADMIN)
    blocker = tmp_path / "file"
    blocker.write_text("")
    topic = FakeTopic()
    await audit.record(audit.audit_entry(principal, "x", {}, "started"), blocker / "audit.log", topic)
    assert len(topic.sent) == 1


# --- defence in depth: whatever logs a credential, the handler redacts it ----------------------

def test_redaction_of_bearer_headers_and_configured_tokens(monkeypatch):
    import app.logging_setup as ls
    monkeypatch.setattr(ls, "_secrets", {"admin-secret-456"})
    assert redact("headers={'Authorization': 'Bearer abc.def'}") == "headers={'Authorization': 'Bearer [REDACTED]'}"
    assert "admin-secret-456" not in redact("token admin-secret-456 in a message")
    record = logging.LogRecord("x", logging.INFO, "", 0, "got %s", ("Bearer admin-secret-456",), None)
    RedactSecrets().filter(record)
    assert "admin-secret-456" not in record.getMessage()


def test_json_log_lines_carry_the_correlation_id():
    record = logging.LogRecord("app.test", logging.INFO, "", 0, "hello %s", ("world",), None)
    record.sku = "SKU-1"
    with correlated("req-42"):
        line = json.loads(JsonFormatter().format(record))
    assert line["message"] == "hello world" and line["level"] == "INFO" and line["logger"] == "app.test"
    assert line["correlation_id"] == "req-42" and line["sku"] == "SKU-1"
