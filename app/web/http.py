"""The one way an operator view answers: bearer auth, JSON bodies and errors, routing to the key's owner."""
from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from functools import wraps
from typing import Any

import orjson
from aiohttp.web import HTTPRequestEntityTooLarge, RequestKey
from faust.exceptions import SameNode
from faust.types import TopicT
from faust.web import Request, Response, View
from faust.web.exceptions import ServiceUnavailable

from app.faust_app import app, settings
from app.logging_setup import correlated
from app.web.audit import AuditUnavailable
from app.web.auth import Denied, Principal, authenticate

log = logging.getLogger("app.web")

REQUEST_ID_HEADER = "X-Request-Id"
PRINCIPAL = RequestKey("principal", Principal)  # where `guarded` leaves the caller on the request


class Problem(Exception):
    """An answer that is not the happy path: status, a stable code, and a sentence for people."""

    def __init__(self, status: int, code: str, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.extra = extra


def not_found(what: str, key: str) -> Problem:
    return Problem(404, "NOT_FOUND", f"no {what} {key!r}", key=key)


def bad_request(message: str, **extra: Any) -> Problem:
    return Problem(400, "BAD_REQUEST", message, **extra)


def json_response(view: View, body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    # orjson, with pydantic-style fallbacks: Decimal and datetime arrive already as strings from
    # model_dump(mode="json"); anything else is turned into its str().
    return view.bytes(orjson.dumps(body, default=str), content_type="application/json", status=status,
                      headers=headers)


def problem_response(view: View, problem: Problem, request_id: str | None = None) -> Response:
    body = {"error": problem.code, "message": problem.message, "status": problem.status, **problem.extra}
    if request_id:
        body["request_id"] = request_id
    headers = {"WWW-Authenticate": 'Bearer realm="stock-sync"'} if problem.status == 401 else None
    return json_response(view, body, problem.status, headers)


def too_large() -> Problem:
    return Problem(413, "BODY_TOO_LARGE", f"request body over {settings.web_max_body} bytes (WEB_MAX_BODY)",
                   limit=settings.web_max_body)


def principal_of(request: Request) -> Principal:
    return request[PRINCIPAL]


def guarded(role: str) -> Callable:
    """Decorate a view method: authenticate the bearer token for `role`, answer errors as JSON, log the call.

    Every /v1 view uses it, and only it: 401 without a valid token, 403 below the role, the view's
    `Problem`s as their status, anything unexpected as 500. Tokens are never logged, only the role
    and the token's fingerprint.
    """
    def decorate(method: Callable[..., Awaitable[Response]]) -> Callable[..., Awaitable[Response]]:
        @wraps(method)
        async def handle(view: View, request: Request, **match_info: Any) -> Response:
            request_id = request.headers.get(REQUEST_ID_HEADER) or uuid.uuid4().hex[:16]
            started = time.perf_counter()
            principal: Principal | None = None
            with correlated(request_id):
                try:
                    principal = authenticate(request.headers.get("Authorization"), settings.api_tokens, role)
                    request[PRINCIPAL] = principal
                    # A declared length over the limit is refused before the body is read; a chunked
                    # body is cut by aiohttp at client_max_size (same limit) when the view reads it.
                    if (request.content_length or 0) > settings.web_max_body:
                        raise too_large()
                    response = await method(view, request, **match_info)
                except Denied as denied:
                    response = problem_response(view, Problem(denied.status, denied.code, denied.message),
                                                request_id)
                except Problem as problem:
                    response = problem_response(view, problem, request_id)
                except HTTPRequestEntityTooLarge:
                    response = problem_response(view, too_large(), request_id)
                except AuditUnavailable:
                    response = problem_response(view, Problem(
                        503, "AUDIT_UNAVAILABLE", "the audit trail cannot be written (file and topic); "
                        "the action was not run"), request_id)
                except ServiceUnavailable:
                    response = problem_response(view, Problem(
                        503, "NOT_ASSIGNED", "partitions are not assigned yet (worker starting or rebalancing)"),
                        request_id)
                except Exception:
                    log.exception("view %s failed", request.url.path, extra={"correlation_id": request_id})
                    response = problem_response(view, Problem(500, "INTERNAL", "internal error; see worker log"),
                                                request_id)
                log.info("%s %s -> %s", request.method, request.url.path, response.status, extra={
                    "correlation_id": request_id, "http_status": response.status, "role": principal.role if principal else None,
                    "token_fingerprint": principal.fingerprint if principal else None,
                    "duration_ms": round((time.perf_counter() - started) * 1000, 2)})
                response.headers[REQUEST_ID_HEADER] = request_id
                return response
        return handle
    return decorate


def owner_url() -> str:
    return str(app.conf.canonical_url)


async def at_owner(view: View, request: Request, table_name: str, key: str, via: TopicT,
                   answer: Callable[[], Awaitable[Response]]) -> Response:
    """Answer here if this worker owns `key`'s partition of `table_name`, else proxy to the owner.

    Faust's router hashes the key with the table's changelog key serializer (raw UTF-8 here, the same
    bytes the topics are keyed with) and forwards method, path, query and headers, so the owner runs
    the same guarded view, with the same bearer token, and its answer comes back verbatim.

    `via` is the topic whose events write the table: its partition p is processed by the worker that
    writes (and owns) partition p of the table. When the table's changelog is missing from the routing
    map (Faust leaves out a changelog topic created after the group's last assignment, logging "Ignoring
    missing topic"), the request is routed by that topic instead of failing until the next rebalance.
    """
    await _know_partitions(app.tables[table_name].changelog_topic.get_topic_name())
    try:
        try:
            return await app.router.route_req(table_name, key.encode(), view.web, request)
        except ServiceUnavailable:
            await _know_partitions(via.get_topic_name())
            return await app.router.route_topic_req(via, key.encode(), view.web, request)
    except SameNode:
        return await answer()


_known_topics: set[str] = set()


async def _know_partitions(topic: str) -> None:
    # The router hashes with the producer's metadata; a worker that has not written to a changelog
    # yet may not have that topic's partitions, so fetch them once.
    if topic in _known_topics:
        return
    try:
        await app.producer._ensure_producer().partitions_for(topic)
    except Exception as exc:
        raise Problem(503, "NOT_READY", f"partition metadata of {topic} not available yet: {exc!r}") from exc
    _known_topics.add(topic)


def partition_of(table_name: str, key: str) -> int | None:
    """The partition of `key` in a table's changelog (for answers that say who served them)."""
    table = app.tables[table_name]
    try:
        return app.producer.key_partition(table.changelog_topic.get_topic_name(), key.encode()).partition
    except (KeyError, TypeError, AttributeError, RuntimeError):  # metadata not there yet: the answer is
        return None                                            # still right, only less informative


def table_named(name: str, stage: str):
    """A table another stage registers, looked up when asked: the view works whichever STAGES run."""
    table = app.tables.get(name)
    if table is None:
        raise Problem(404, "STAGE_NOT_RUNNING", f"the {stage} stage is not running here (no {name!r} table)")
    return table
