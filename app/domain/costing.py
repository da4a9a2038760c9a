"""Moving-average cost per SKU@LOCATION (SPEC §5.1)."""
from __future__ import annotations

from decimal import Decimal

from app.domain.money import to_unit_cost


def average_after_inflow(on_hand: int, avg_cost: Decimal | None, quantity: int, unit_cost: Decimal) -> Decimal:
    """Average after `quantity` units come in at `unit_cost` (receipt, transfer in, return).

    Negative stock carries no value: units sold before they were received must not drag the
    average of the goods that finally arrive, so only positive on_hand is weighted.
    """
    held = max(on_hand, 0)
    if held == 0 or avg_cost is None:
        return to_unit_cost(unit_cost)
    if quantity <= 0:
        return avg_cost
    return to_unit_cost((held * avg_cost + quantity * unit_cost) / (held + quantity))


def current_cost(avg_cost: Decimal | None, standard_cost: Decimal | None) -> Decimal | None:
    """Cost an outflow is valued at: the moving average, or the item's standard cost before any receipt."""
    return avg_cost if avg_cost is not None else standard_cost
