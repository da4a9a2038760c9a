"""Posting rules (SPEC §5.2): the balanced journal entries one applied movement posts, and tender checks."""
from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from app.domain.accounts import Account, Charts
from app.domain.money import ZERO, to_amount
from app.models.canonical import Applied, Channel, Movement, MovementType, Role, SourceSystem
from app.models.raw import Location, PosTransaction, PosType
from app.models.records import FinanceException, FinanceExceptionCode, Posting, PostingKind, PostingLine

Leg = tuple[Account, Decimal]  # signed amount: positive is a debit, negative a credit


@dataclass(frozen=True)
class Entry:
    """One journal entry in account roles, before the chart turns roles into numbers."""

    kind: PostingKind
    legs: tuple[Leg, ...]
    quantity: int


@dataclass(frozen=True)
class Plan:
    """What the rules decided for one movement: entries to post, and problems to report."""

    entries: tuple[Entry, ...] = ()
    problems: tuple[tuple[FinanceExceptionCode, str], ...] = ()
    missing_cost: tuple[PostingKind, ...] = ()

    def __add__(self, other: Plan) -> Plan:
        return Plan(self.entries + other.entries, self.problems + other.problems,
                    self.missing_cost + other.missing_cost)


NOTHING = Plan()


@dataclass(frozen=True)
class PostingResult:
    postings: list[Posting] = field(default_factory=list)
    exceptions: list[FinanceException] = field(default_factory=list)


def posting_id(movement_id: str, kind: PostingKind) -> str:
    """Stable across runs and workers, so consumers can dedupe a re-sent posting."""
    digest = hashlib.sha256(f"{movement_id}\x1f{kind.value}".encode()).hexdigest()
    return f"{kind.value}-{digest[:32]}"


# --- Building blocks -----------------------------------------------------------------------------

def at_cost(a: Applied, kind: PostingKind, debit: Account, credit: Account, quantity: int) -> Plan:
    """Dr `debit` / Cr `credit` for `quantity` units at the movement's unit cost."""
    if quantity == 0:
        return NOTHING
    if a.unit_cost is None:
        return Plan(missing_cost=(kind,))
    amount = to_amount(abs(quantity) * a.unit_cost)
    return Plan(entries=(Entry(kind, ((debit, amount), (credit, -amount)), abs(quantity)),))


def stock_change(a: Applied, kind: PostingKind, signed_quantity: int) -> Plan:
    """Value a change of on_hand that is no sale: a gain debits inventory, a loss debits shrink."""
    if signed_quantity > 0:
        return at_cost(a, kind, Account.INVENTORY, Account.SHRINK_WRITE_OFF, signed_quantity)
    return at_cost(a, kind, Account.SHRINK_WRITE_OFF, Account.INVENTORY, signed_quantity)


def revenue(m: Movement, kind: PostingKind, sign: int, revenue_account: Account) -> Plan:
    """Revenue (sign +1) or its refund (sign −1) of a line: gross to clearing, net and tax against it."""
    if m.revenue_on_hold:
        return NOTHING  # the transaction's finance exception explains why; stock and cost still move
    if m.unit_price is None:
        return Plan(problems=((FinanceExceptionCode.MISSING_PRICE,
                               f"{m.movement_type} of {m.quantity} x {m.sku} at {m.location_id} has no "
                               f"unit price: {kind} not posted"),))
    net = to_amount(m.unit_price * m.quantity - m.discount)
    tax = to_amount(m.tax)
    gross = net + tax  # derived from the rounded parts so the entry balances to the cent
    # Store tenders settle through tender clearing; other channels' platforms pay out later.
    clearing = Account.TENDER_CLEARING if m.channel is Channel.STORE else Account.CHANNEL_RECEIVABLE
    legs = ((clearing, sign * gross), (revenue_account, -sign * net),
            (Account.SALES_TAX_PAYABLE, -sign * tax))
    return Plan(entries=(Entry(kind, legs, m.quantity),))


def intended_on_hand_change(a: Applied) -> int:
    # The position stage is the one place that decides which reasons move on_hand (DAMAGED does not);
    # taking its result keeps the inventory account in step with on_hand by construction.
    return a.on_hand_delta + a.late_quantity


# --- One rule per movement type ------------------------------------------------------------------

def sale(a: Applied) -> Plan:
    m = a.movement
    return (revenue(m, PostingKind.SALE_REVENUE, +1, Account.SALES_REVENUE)
            + at_cost(a, PostingKind.COGS, Account.COGS, Account.INVENTORY, m.quantity))


def customer_return(a: Applied) -> Plan:
    m = a.movement
    return (revenue(m, PostingKind.RETURN_REVENUE, -1, Account.SALES_RETURNS)
            + at_cost(a, PostingKind.RETURN_COGS, Account.INVENTORY, Account.COGS, m.quantity))


def receipt(a: Applied) -> Plan:
    return at_cost(a, PostingKind.RECEIPT, Account.INVENTORY, Account.GRNI, a.movement.quantity)


def transfer_out(a: Applied) -> Plan:
    if a.movement.role is Role.DESTINATION:
        return NOTHING  # the in-transit leg at the receiving location; the origin posted the value
    return at_cost(a, PostingKind.TRANSFER_OUT, Account.INVENTORY_IN_TRANSIT, Account.INVENTORY,
                   a.movement.quantity)


def transfer_in(a: Applied) -> Plan:
    return at_cost(a, PostingKind.TRANSFER_IN, Account.INVENTORY, Account.INVENTORY_IN_TRANSIT,
                   a.movement.quantity)


def count(a: Applied) -> Plan:
    return stock_change(a, PostingKind.COUNT_VARIANCE, a.count_difference)


def adjust(a: Applied) -> Plan:
    """SHRINK and RECON_LOSS lose units, FOUND and RECON_GAIN gain them; all post kind SHRINK.

    WRITE_OFF takes damaged units off the books like a SCRAP disposition (kind WRITE_OFF). DAMAGED
    and REPAIRED units stay on the books (on_hand unchanged), so they post nothing.
    """
    kind = PostingKind.WRITE_OFF if a.movement.reason == "WRITE_OFF" else PostingKind.SHRINK
    return stock_change(a, kind, intended_on_hand_change(a))


def disposition(a: Applied) -> Plan:
    """SCRAP writes the units off; RESTOCK and DAMAGED leave on_hand, and the books, as they were."""
    return stock_change(a, PostingKind.WRITE_OFF, intended_on_hand_change(a))


def transfer_close(a: Applied) -> Plan:
    """What never arrived of a closed transfer: Dr shrink / Cr inventory in transit, at the carried cost."""
    return at_cost(a, PostingKind.LOST_IN_TRANSIT, Account.SHRINK_WRITE_OFF, Account.INVENTORY_IN_TRANSIT,
                   a.lost_in_transit)


def cost_adjustment(a: Applied) -> Plan:
    """Units that covered negative stock, revalued from the cost they left at to the inflow's (SPEC §5.1)."""
    amount = to_amount(a.cost_adjustment)
    if not amount:
        return NOTHING
    legs = ((Account.COGS, amount), (Account.INVENTORY, -amount))
    return Plan(entries=(Entry(PostingKind.COST_ADJUSTMENT, legs, a.revalued_quantity),))


def no_posting(a: Applied) -> Plan:
    return NOTHING


def late_count_reversal(a: Applied) -> Plan:
    """A count taken after this movement booked its units as loss or gain already: take that back."""
    return stock_change(a, PostingKind.LATE_COUNT_REVERSAL, -a.late_quantity)


RULES: dict[MovementType, Callable[[Applied], Plan]] = {
    MovementType.SALE: sale,
    MovementType.FULFIL: sale,
    MovementType.RETURN: customer_return,
    MovementType.RESERVE: no_posting,
    MovementType.RELEASE: no_posting,
    MovementType.RECEIPT: receipt,
    MovementType.TRANSFER_OUT: transfer_out,
    MovementType.TRANSFER_IN: transfer_in,
    MovementType.COUNT: count,
    MovementType.ADJUST: adjust,
    MovementType.DISPOSITION: disposition,
    MovementType.TRANSFER_CLOSE: transfer_close,
}


def plan_for(a: Applied) -> Plan:
    return RULES[a.movement.movement_type](a) + late_count_reversal(a) + cost_adjustment(a)


# --- From plan to postings -----------------------------------------------------------------------

def postings_for(applied: Applied, location: Location | None, charts: Charts,
                 created_at: datetime) -> PostingResult:
    """The postings and finance exceptions of one applied movement; the stock has moved either way."""
    m = applied.movement
    problems = []
    if location is not None and _carries_revenue(m) and m.currency != location.currency:
        # Revenue in a currency the location's books are not kept in cannot be posted as it is;
        # cost is the location's own (its average), so COGS still posts, like a tender mismatch.
        problems.append((FinanceExceptionCode.CURRENCY_MISMATCH,
                         f"{m.movement_type} of {m.sku} at {m.location_id} is in {m.currency}, the location "
                         f"keeps its books in {location.currency}: revenue held, stock and cost posted"))
        if not m.revenue_on_hold:
            applied = applied.model_copy(update={"movement": m.model_copy(update={"revenue_on_hold": True})})
            m = applied.movement
    plan = plan_for(applied)
    problems += list(plan.problems)
    if plan.missing_cost:
        problems.append((FinanceExceptionCode.NO_COST,
                         f"no unit cost known for {m.movement_type} of {m.quantity} x {m.sku} "
                         f"at {m.location_id}: "
                         f"{', '.join(plan.missing_cost)} not posted (stock already moved)"))
    entries = [e for e in plan.entries if any(amount for _, amount in e.legs)]
    legal_entity = applied.legal_entity or (location.legal_entity if location is not None else None)
    if not legal_entity:
        if entries or problems:
            problems.append((FinanceExceptionCode.UNKNOWN_LEGAL_ENTITY,
                             f"no legal entity for location {m.location_id!r}: nothing posted for "
                             f"{m.movement_type} of {m.sku}"))
        return PostingResult([], [_exception(m, code, detail, created_at) for code, detail in problems])

    chart = charts.for_entity(legal_entity)
    # A location keeps its books in one currency; WMS events carry none of their own.
    currency = location.currency if location is not None else m.currency
    postings = []
    for entry in entries:
        posting = Posting(
            posting_id=posting_id(m.movement_id, entry.kind), kind=entry.kind, legal_entity=legal_entity,
            location_id=m.location_id, business_date=m.business_date, currency=currency,
            source_system=m.source_system.value, source_event_id=m.source_event_id,
            correlation_id=m.correlation_id, movement_id=m.movement_id,
            lines=[_line(chart.number(account), amount, m.sku, entry.quantity)
                   for account, amount in entry.legs if amount],
            created_at=created_at,
        )
        debits, credits = posting_totals(posting)
        if debits != credits:
            problems.append((FinanceExceptionCode.UNBALANCED,
                             f"{entry.kind} of {m.movement_id}: debits {debits} != credits {credits}"))
            continue
        postings.append(posting)
    return PostingResult(postings, [_exception(m, code, detail, created_at) for code, detail in problems])


def _carries_revenue(m: Movement) -> bool:
    # Only channel sales and returns name a currency of their own; WMS and inspection movements
    # carry the model's default, which says nothing about the location.
    return m.movement_type in (MovementType.SALE, MovementType.FULFIL, MovementType.RETURN) and (
        m.source_system in (SourceSystem.POS, SourceSystem.ECOM, SourceSystem.MARKETPLACE))


def posting_totals(posting: Posting) -> tuple[Decimal, Decimal]:
    return (sum((line.debit for line in posting.lines), ZERO),
            sum((line.credit for line in posting.lines), ZERO))


def _line(account: str, amount: Decimal, sku: str, quantity: int) -> PostingLine:
    if amount > 0:
        return PostingLine(account=account, debit=amount, credit=ZERO, sku=sku, quantity=quantity)
    return PostingLine(account=account, debit=ZERO, credit=-amount, sku=sku, quantity=quantity)


def _exception(m: Movement, code: FinanceExceptionCode, detail: str,
               created_at: datetime) -> FinanceException:
    return FinanceException(source_event_id=m.source_event_id, source_system=m.source_system.value,
                            movement_id=m.movement_id, location_id=m.location_id, reason_code=code,
                            detail=detail, created_at=created_at)


# --- POS tenders ---------------------------------------------------------------------------------

def check_tenders(txn: PosTransaction, created_at: datetime | None = None) -> FinanceException | None:
    """A SALE's tenders must pay its lines exactly; a RETURN's refunds must equal them (either sign)."""
    if txn.type not in (PosType.SALE, PosType.RETURN):
        return None
    basket = to_amount(sum((ln.unit_price * ln.quantity - ln.discount + ln.tax for ln in txn.lines), ZERO))
    tendered = to_amount(sum((t.amount for t in txn.tenders), ZERO))
    if txn.type is PosType.RETURN:
        # POS systems differ on whether refunds are negative tenders; either convention is accepted.
        matches = abs(basket) == abs(tendered)
    else:
        matches = basket == tendered
    if matches:
        return None
    return FinanceException(
        source_event_id=txn.transaction_id, source_system=SourceSystem.POS.value, movement_id=None,
        location_id=txn.store_id, reason_code=FinanceExceptionCode.TENDER_MISMATCH,
        detail=f"{txn.type} {txn.transaction_id}: tenders {tendered} != lines {basket} "
               f"(unit_price x quantity - discount + tax); revenue held, stock and cost posted",
        created_at=created_at or txn.occurred_at,
    )
