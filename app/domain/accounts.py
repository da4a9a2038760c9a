"""The chart of accounts: account roles, their default numbers, and overrides per legal entity."""
from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType


class Account(StrEnum):
    """What an account is for. Posting rules name roles; the chart turns a role into a number."""

    TENDER_CLEARING = "TENDER_CLEARING"
    CHANNEL_RECEIVABLE = "CHANNEL_RECEIVABLE"
    INVENTORY = "INVENTORY"
    INVENTORY_IN_TRANSIT = "INVENTORY_IN_TRANSIT"
    GRNI = "GRNI"
    SALES_TAX_PAYABLE = "SALES_TAX_PAYABLE"
    SALES_REVENUE = "SALES_REVENUE"
    SALES_RETURNS = "SALES_RETURNS"
    COGS = "COGS"
    SHRINK_WRITE_OFF = "SHRINK_WRITE_OFF"


# The one table of the default chart (SPEC §5.2).
DEFAULT_NUMBERS: Mapping[Account, str] = MappingProxyType({
    Account.TENDER_CLEARING: "1000",       # store tenders awaiting settlement
    Account.CHANNEL_RECEIVABLE: "1100",    # web and marketplace sales awaiting payout
    Account.INVENTORY: "1200",
    Account.INVENTORY_IN_TRANSIT: "1210",
    Account.GRNI: "2000",                  # goods received not invoiced
    Account.SALES_TAX_PAYABLE: "2100",
    Account.SALES_REVENUE: "4000",
    Account.SALES_RETURNS: "4100",
    Account.COGS: "5000",
    Account.SHRINK_WRITE_OFF: "5100",
})

ALL_ENTITIES = "*"
_NUMBER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_EXAMPLE = "US01.INVENTORY=1250,CA01.COGS=5010"


@dataclass(frozen=True)
class ChartOfAccounts:
    """Account number of every role for one legal entity."""

    numbers: Mapping[Account, str] = field(default_factory=lambda: dict(DEFAULT_NUMBERS))

    def number(self, account: Account) -> str:
        return self.numbers[account]

    def overridden(self, overrides: Mapping[Account, str]) -> ChartOfAccounts:
        numbers = {**self.numbers, **overrides}
        _require_distinct(numbers)
        return ChartOfAccounts(numbers)


@dataclass(frozen=True)
class Charts:
    """The chart of each legal entity; entities without overrides use the default chart."""

    default: ChartOfAccounts = field(default_factory=ChartOfAccounts)
    by_entity: Mapping[str, ChartOfAccounts] = field(default_factory=dict)

    def for_entity(self, legal_entity: str) -> ChartOfAccounts:
        return self.by_entity.get(legal_entity, self.default)


def parse_chart_overrides(text: str) -> Charts:
    """`ENTITY.ROLE=NUMBER,...` (e.g. CHART_OVERRIDES) → Charts; `*.ROLE=NUMBER` applies to every entity.

    Raises ValueError naming the bad entry: a typo here would post to the wrong account silently.
    """
    overrides: dict[str, dict[Account, str]] = {}
    for entry in filter(None, (part.strip() for part in text.split(","))):
        entity, account, number = _parse_entry(entry)
        per_entity = overrides.setdefault(entity, {})
        if per_entity.get(account, number) != number:
            raise ValueError(f"chart override {entity}.{account} is given twice, as "
                             f"{per_entity[account]!r} and {number!r}")
        per_entity[account] = number
    try:
        default = ChartOfAccounts().overridden(overrides.pop(ALL_ENTITIES, {}))
        by_entity = {entity: default.overridden(numbers) for entity, numbers in overrides.items()}
    except ValueError as problem:
        raise ValueError(f"chart overrides {text.strip()!r}: {problem}") from None
    return Charts(default=default, by_entity=by_entity)


def _parse_entry(entry: str) -> tuple[str, Account, str]:
    target, sep, number = (s.strip() for s in entry.partition("="))
    entity, dot, role = (s.strip() for s in target.rpartition("."))
    if not sep or not dot or not entity or not role:
        raise ValueError(f"chart override {entry!r} must look like ENTITY.ROLE=NUMBER, e.g. {_EXAMPLE}")
    try:
        account = Account[role.upper()]
    except KeyError:
        raise ValueError(f"chart override {entry!r}: unknown account role {role!r}; "
                         f"roles are {', '.join(a.name for a in Account)}") from None
    if not _NUMBER.match(number):
        raise ValueError(f"chart override {entry!r}: account number {number!r} must be letters, digits, "
                         "'.', '-' or '_'")
    return entity, account, number


def _require_distinct(numbers: Mapping[Account, str]) -> None:
    # Two roles on one number would merge, e.g., inventory into GRNI and hide it from every control total.
    seen: dict[str, Account] = {}
    for account, number in numbers.items():
        if number in seen:
            raise ValueError(f"{seen[number]} and {account} would share account number {number}")
        seen[number] = account
