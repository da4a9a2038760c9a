"""Money and cost arithmetic: Decimal only, one rounding rule for amounts, one for unit costs."""
from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

CENT = Decimal("0.01")
COST_PLACES = Decimal("0.0001")
ZERO = Decimal("0.00")


def to_amount(value: Decimal) -> Decimal:
    """Round a money amount half-up to 2 decimals (SPEC §5.2)."""
    return value.quantize(CENT, rounding=ROUND_HALF_UP)


def to_unit_cost(value: Decimal) -> Decimal:
    """Round a unit cost half-up to 4 decimals (SPEC §5.1)."""
    return value.quantize(COST_PLACES, rounding=ROUND_HALF_UP)
