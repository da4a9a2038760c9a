"""What a day batch becomes in the ERP (SPEC §9): one journal entry, referenced by the batch id.

Pure: the poster (agents/erp.py) hands in the batch and the ERP's ids, and gets the entry's values.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal

from app.domain.money import ZERO
from app.models.records import JournalBatch


@dataclass(frozen=True)
class EntryLine:
    account: str
    debit: Decimal
    credit: Decimal
    description: str


def entry_description(batch: JournalBatch) -> str:
    """Tryton's account.move has no reference field: the batch id is the entry's description, the
    one thing the poster looks an entry up by (never twice). Each line's description is the batch's
    location (the ERP has no location on a move line), which erp-reconcile reads back."""
    return batch.batch_id


def entry_lines(batch: JournalBatch) -> list[EntryLine]:
    """One line per account and side: an account with both debits and credits in the batch gets a
    debit line and a credit line (Tryton refuses a line with both), so each side reconciles as is.
    Accounts with nothing on a side get no line for it."""
    lines: list[EntryLine] = []
    where = batch.location_id
    for account in sorted(batch.totals):
        sides = batch.totals[account]
        debit, credit = sides.get("debit", ZERO), sides.get("credit", ZERO)
        if debit:
            lines.append(EntryLine(account, debit, ZERO, where))
        if credit:
            lines.append(EntryLine(account, ZERO, credit, where))
    return lines


def accounts_of(batch: JournalBatch) -> set[str]:
    return {line.account for line in entry_lines(batch)}


# --- comparing the ledger with the batches (erp-reconcile) ---------------------------------------

Balances = dict[tuple[date, str, str], dict[str, Decimal]]  # (date, location, account) -> debit/credit


def batch_balances(batches: list[JournalBatch]) -> Balances:
    """Per date, location and account, what the pipeline's batches say (each batch id counted once)."""
    balances: Balances = {}
    seen: set[str] = set()
    for batch in batches:
        if batch.batch_id in seen:
            continue
        seen.add(batch.batch_id)
        for line in entry_lines(batch):
            _add(balances, (batch.business_date, batch.location_id, line.account), line.debit, line.credit)
    return balances


def add_ledger_line(balances: Balances, day: date, location: str, account: str, debit: Decimal,
                    credit: Decimal) -> None:
    _add(balances, (day, location, account), debit, credit)


def _add(balances: Balances, key: tuple[date, str, str], debit: Decimal, credit: Decimal) -> None:
    before = balances.get(key, {"debit": ZERO, "credit": ZERO})
    balances[key] = {"debit": before["debit"] + debit, "credit": before["credit"] + credit}


@dataclass(frozen=True)
class BalanceDifference:
    business_date: date
    location_id: str
    account: str
    pipeline_debit: Decimal
    pipeline_credit: Decimal
    erp_debit: Decimal
    erp_credit: Decimal


def differences(pipeline: Balances, erp: Balances) -> list[BalanceDifference]:
    empty = {"debit": ZERO, "credit": ZERO}
    found = []
    for key in sorted(set(pipeline) | set(erp)):
        ours, theirs = pipeline.get(key, empty), erp.get(key, empty)
        if ours["debit"] != theirs["debit"] or ours["credit"] != theirs["credit"]:
            found.append(BalanceDifference(*key, ours["debit"], ours["credit"], theirs["debit"], theirs["credit"]))
    return found
