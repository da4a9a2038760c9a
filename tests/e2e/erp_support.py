"""ERP e2e support: the real Tryton server (app/erp/launcher.py) and reads of its ledger over JSON-RPC."""
from __future__ import annotations

import asyncio
from collections import defaultdict
from decimal import Decimal

from app.erp.client import TrytonLedger, TrytonRpc


def ledger(url: str) -> TrytonLedger:
    return TrytonLedger(TrytonRpc(url, "stocksync", "admin", "admin"))


def _run(url: str, work):
    async def go():
        erp = ledger(url)
        try:
            return await work(erp)
        finally:
            await erp.rpc.close()
    return asyncio.run(go())


def entries_for(url: str, batch_id: str, legal_entity: str = "US01") -> list[dict]:
    """The account.move records (id, state) whose description is `batch_id`."""
    async def work(erp: TrytonLedger):
        company = await erp.company(legal_entity)
        return await erp.rpc.call("model.account.move.search_read", [["description", "=", batch_id]], 0, None,
                                  None, ["id", "state", "date"], {"company": company, "companies": [company]})
    return _run(url, work)


def totals_of(url: str, batch_id: str, legal_entity: str = "US01") -> dict[str, tuple[Decimal, Decimal]]:
    """Per account code, (Σ debit, Σ credit) of the ERP lines of the entries described `batch_id`."""
    async def work(erp: TrytonLedger):
        return await erp.ledger_lines(legal_entity)
    sums: dict[str, list[Decimal]] = defaultdict(lambda: [Decimal(0), Decimal(0)])
    for line in _run(url, work):
        if line["move."]["description"] == batch_id:
            sums[line["account."]["code"]][0] += line["debit"]
            sums[line["account."]["code"]][1] += line["credit"]
    return {code: (d, c) for code, (d, c) in sums.items()}


def set_account_closed(url: str, code: str, closed: bool, legal_entity: str = "US01") -> None:
    async def work(erp: TrytonLedger):
        company = await erp.company(legal_entity)
        context = {"company": company, "companies": [company]}
        ids = await erp.rpc.call("model.account.account.search", [["code", "=", code], ["company", "=", company]],
                                 0, None, None, context)
        await erp.rpc.call("model.account.account.write", ids, {"closed": closed}, context)
    _run(url, work)
