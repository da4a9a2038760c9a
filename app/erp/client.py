"""Tryton over JSON-RPC (SPEC §9): the three things the poster asks — look up, create, post.

One HTTP request per `call`; the caller (agents/erp.py) paces and retries. The seam is
`ErpLedger` (lookup / create / post): the poster's decisions are tested against any implementation,
the real one is `TrytonLedger`, talking to a real Tryton server.
"""
from __future__ import annotations

import asyncio
import base64
import datetime
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Protocol

import aiohttp
import orjson

from app.domain.erp_entries import EntryLine

# Tryton answers a refused request (a closed account, a closed period, a missing access right) with
# one of these; anything else that comes back as an error is the server's problem, retried.
BUSINESS_ERRORS = frozenset({"UserError", "UserWarning"})


class ErpUnavailable(Exception):
    """Transport error, time-out, 5xx, 429, a database lock: try again later."""


class ErpRejected(Exception):
    """The ERP refused the request for a business reason; the message is the ERP's own."""


@dataclass(frozen=True)
class FoundEntry:
    erp_reference: str
    posted: bool


class ErpLedger(Protocol):
    async def lookup(self, legal_entity: str, batch_id: str) -> FoundEntry | None: ...
    async def create(self, legal_entity: str, batch_id: str, day: datetime.date,
                     lines: list[EntryLine]) -> str: ...
    async def post(self, legal_entity: str, erp_reference: str) -> None: ...


def classify_error(error: Any) -> Exception:
    """A JSON-RPC `error` member → the exception the poster acts on.

    Tryton sends `[name, args]` for its own exceptions (UserError: `[message, description, domain]`)
    and `[str(exc), traceback]` for anything unexpected."""
    if isinstance(error, list | tuple) and error and error[0] in BUSINESS_ERRORS:
        args = error[1] if len(error) > 1 else []
        parts = [str(a) for a in (args if isinstance(args, list | tuple) else [args])[:2] if a]
        return ErpRejected(" - ".join(parts) or str(error[0]))
    if isinstance(error, list | tuple) and error and error[0] == "LoginException":
        return ErpUnavailable(f"login needed: {error}")
    return ErpUnavailable(f"ERP error: {str(error)[:500]}")


def encode(value: Any) -> Any:
    if isinstance(value, Decimal):
        return {"__class__": "Decimal", "decimal": str(value)}
    if isinstance(value, datetime.date) and not isinstance(value, datetime.datetime):
        return {"__class__": "date", "year": value.year, "month": value.month, "day": value.day}
    raise TypeError(f"cannot send {type(value).__name__} to Tryton")


def decode(value: Any) -> Any:
    if isinstance(value, dict):
        kind = value.get("__class__")
        if kind == "Decimal":
            return Decimal(value["decimal"])
        if kind == "date":
            return datetime.date(value["year"], value["month"], value["day"])
        return {k: decode(v) for k, v in value.items()}
    if isinstance(value, list):
        return [decode(v) for v in value]
    return value


class TrytonRpc:
    """Session-authenticated JSON-RPC calls to one Tryton database."""

    def __init__(self, url: str, database: str, user: str, password: str, timeout: float = 10.0,
                 before_call: Callable[[], Awaitable[None]] | None = None,
                 after_call: Callable[[str, float, str], None] | None = None) -> None:
        self.endpoint = f"{url.rstrip('/')}/{database}/rpc/"
        self.user = user
        self.password = password
        self.timeout = timeout
        self.before_call = before_call        # the throttle: awaited before every request
        self.after_call = after_call          # (method, seconds, outcome): metrics and call times
        self._auth: str | None = None
        self._http: aiohttp.ClientSession | None = None

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()
            self._http = None

    async def call(self, method: str, *params: Any) -> Any:
        if self._auth is None:
            await self._login()
        try:
            return await self._request(method, list(params), self._auth)
        except _SessionExpired:
            self._auth = None
            raise ErpUnavailable("session expired; logging in again") from None

    async def _login(self) -> None:
        try:
            result = await self._request("common.db.login", [self.user, {"password": self.password}, "en"], None)
        except _SessionExpired as exc:
            raise ErpUnavailable(f"login of {self.user!r} refused by the ERP ({exc})") from None
        user_id, session = result[0], result[1]
        token = base64.b64encode(f"{self.user}:{user_id}:{session}".encode()).decode()
        self._auth = f"Session {token}"

    async def _request(self, method: str, params: list, auth: str | None) -> Any:
        if self.before_call is not None:
            await self.before_call()
        if self._http is None:
            self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout))
        headers = {"Content-Type": "application/json"}
        if auth:
            headers["Authorization"] = auth
        body = orjson.dumps({"id": 1, "method": method, "params": params}, default=encode)
        started = time.monotonic()
        outcome = "error"
        try:
            async with self._http.post(self.endpoint, data=body, headers=headers) as response:
                if response.status in (401, 403):
                    raise _SessionExpired(f"HTTP {response.status}")
                if response.status >= 400:
                    raise ErpUnavailable(f"HTTP {response.status} from {method}: {(await response.text())[:300]}")
                answer = orjson.loads(await response.read())
            if answer.get("error") is not None:
                problem = classify_error(answer["error"])
                outcome = "rejected" if isinstance(problem, ErpRejected) else "error"
                raise problem
            outcome = "ok"
            return decode(answer.get("result"))
        except (aiohttp.ClientError, asyncio.TimeoutError, orjson.JSONDecodeError) as exc:
            raise ErpUnavailable(f"{method}: {type(exc).__name__}: {exc}") from None
        finally:
            if self.after_call is not None:
                self.after_call(method, time.monotonic() - started, outcome)


class _SessionExpired(Exception):
    pass


class TrytonLedger:
    """ErpLedger on Tryton's account module: entries are account.move records in the MISC journal,
    described by the batch id, one company per legal entity (the company's party is named like it)."""

    JOURNAL_CODE = "MISC"

    def __init__(self, rpc: TrytonRpc) -> None:
        self.rpc = rpc
        self._companies: dict[str, int] = {}
        self._accounts: dict[int, dict[str, int]] = {}
        self._periods: dict[tuple[int, datetime.date], int] = {}
        self._journal: int | None = None

    async def company(self, legal_entity: str) -> int:
        if legal_entity not in self._companies:
            ids = await self.rpc.call("model.company.company.search", [["party.name", "=", legal_entity]],
                                      0, 1, None, {})
            if not ids:
                raise ErpRejected(f"no company for legal entity {legal_entity!r} in the ERP")
            self._companies[legal_entity] = ids[0]
        return self._companies[legal_entity]

    def _context(self, company: int) -> dict:
        return {"company": company, "companies": [company]}

    async def lookup(self, legal_entity: str, batch_id: str) -> FoundEntry | None:
        company = await self.company(legal_entity)
        found = await self.rpc.call("model.account.move.search_read",
                                    [["description", "=", batch_id], ["company", "=", company]],
                                    0, None, [["id", "ASC"]], ["id", "state"], self._context(company))
        if not found:
            return None
        # Only ever one (the poster looks before it creates); if there were more, the first counts.
        first = found[0]
        return FoundEntry(erp_reference=str(first["id"]), posted=first["state"] == "posted")

    async def create(self, legal_entity: str, batch_id: str, day: datetime.date, lines: list[EntryLine]) -> str:
        company = await self.company(legal_entity)
        context = self._context(company)
        accounts = await self._account_ids(company, context)
        missing = sorted({line.account for line in lines} - set(accounts))
        if missing:
            raise ErpRejected(f"accounts {', '.join(missing)} are not in the chart of {legal_entity} in the ERP")
        values = {
            "company": company, "journal": await self._journal_id(context), "period": await self._period_id(
                company, day, context),
            "date": day, "description": batch_id,
            "lines": [["create", [{"account": accounts[line.account], "debit": line.debit, "credit": line.credit,
                                   "description": line.description} for line in lines]]],
        }
        (move_id,) = await self.rpc.call("model.account.move.create", [values], context)
        return str(move_id)

    async def post(self, legal_entity: str, erp_reference: str) -> None:
        company = await self.company(legal_entity)
        await self.rpc.call("model.account.move.post", [int(erp_reference)], self._context(company))

    async def _account_ids(self, company: int, context: dict) -> dict[str, int]:
        if company not in self._accounts:
            rows = await self.rpc.call("model.account.account.search_read",
                                       [["company", "=", company], ["code", "!=", None]], 0, None, None,
                                       ["id", "code"], context)
            self._accounts[company] = {row["code"]: row["id"] for row in rows}
        return self._accounts[company]

    async def _journal_id(self, context: dict) -> int:
        if self._journal is None:
            ids = await self.rpc.call("model.account.journal.search", [["code", "=", self.JOURNAL_CODE]],
                                      0, 1, None, context)
            if not ids:
                raise ErpRejected(f"no journal with code {self.JOURNAL_CODE} in the ERP")
            self._journal = ids[0]
        return self._journal

    async def _period_id(self, company: int, day: datetime.date, context: dict) -> int:
        key = (company, day.replace(day=1))
        if key not in self._periods:
            ids = await self.rpc.call("model.account.period.search",
                                      [["company", "=", company], ["type", "=", "standard"],
                                       ["start_date", "<=", day], ["end_date", ">=", day]], 0, 1, None, context)
            if not ids:
                raise ErpRejected(f"no open accounting period for {day.isoformat()} in the ERP")
            self._periods[key] = ids[0]
        return self._periods[key]

    async def ledger_lines(self, legal_entity: str, day: datetime.date | None = None) -> list[dict]:
        """Posted and draft lines of the pipeline's entries (erp-reconcile): date, account code,
        the location (line description), debit, credit, and the batch id (the move's description)."""
        company = await self.company(legal_entity)
        domain: list = [["move.company", "=", company], ["move.journal.code", "=", self.JOURNAL_CODE]]
        if day is not None:
            domain.append(["move.date", "=", day])
        return await self.rpc.call("model.account.move.line.search_read", domain, 0, None, None,
                                   ["debit", "credit", "description", "account.code", "move.date",
                                    "move.description", "move.state"], self._context(company))
