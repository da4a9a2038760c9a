"""The input limits of SPEC §4, checked while a raw record is parsed: beyond them it is a dead letter.

Pydantic constraints are fixed when a model class is built, but the limits are configurable
(Settings → `configure` at start), so the raw models check them in validators that read `LIMITS`.
A violation raises a PydanticCustomError whose type says which DLQ code it earns: `too_large`
(a record, an identifier or a list beyond its size) or `out_of_range` (a number or date beyond its
bound); `app.domain.sources.map_raw` turns the types into codes.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Annotated

from pydantic import AfterValidator
from pydantic_core import PydanticCustomError

TOO_LARGE = "too_large"
OUT_OF_RANGE = "out_of_range"


@dataclass(frozen=True)
class Limits:
    record_bytes: int = 512 * 1024       # a raw record
    identifier_chars: int = 128          # ids, SKUs, location ids, references
    text_chars: int = 2000               # free text (item descriptions)
    lines: int = 1000                    # lines of one event (and other lists in a record)
    quantity: int = 1_000_000            # |quantity| in eaches or cases
    money_integer_digits: int = 12
    money_fraction_digits: int = 4
    earliest: date = date(2000, 1, 1)
    future_years: int = 10               # dates up to this many years after now

    def latest(self, now: datetime | None = None) -> datetime:
        now = now or datetime.now(UTC)
        return now + timedelta(days=365 * self.future_years + self.future_years // 4)


LIMITS = Limits()


def configure(limits: Limits) -> None:
    """Set the limits for this process (the app calls it once, from Settings)."""
    global LIMITS
    LIMITS = limits


def _too_large(what: str, size: int, limit: int) -> PydanticCustomError:
    return PydanticCustomError(TOO_LARGE, "{what} has {size} items or characters, more than the limit of {limit}",
                               {"what": what, "size": size, "limit": limit})


def _out_of_range(detail: str) -> PydanticCustomError:
    return PydanticCustomError(OUT_OF_RANGE, "{detail}", {"detail": detail})


def _at_most(what: str, limit: str):
    """A validator refusing a string, list or mapping longer than the LIMITS field named `limit`
    (read at validation time, so configure() applies)."""
    def check(value):
        allowed = getattr(LIMITS, limit)
        if len(value) > allowed:
            raise _too_large(what, len(value), allowed)
        return value
    return check


def _quantity(value: int) -> int:
    if abs(value) > LIMITS.quantity:
        raise _out_of_range(f"quantity {str(value)[:20]} is beyond ±{LIMITS.quantity}")
    return value


def money_digits(value: Decimal) -> tuple[int, int]:
    """(digits before the point, digits after it) of a finite Decimal, trailing zeros ignored."""
    # Not `normalize()`: it overflows the context on exponents like 1E+1000000.
    _, digits, exponent = value.as_tuple()
    assert isinstance(exponent, int)
    kept = len(digits)
    while kept > 1 and digits[kept - 1] == 0 and exponent < 0:
        kept -= 1
        exponent += 1
    if kept == 1 and digits[0] == 0:
        return 0, 0
    return max(0, kept + exponent), max(0, -exponent)


def _money(value: Decimal) -> Decimal:
    # A Decimal is parsed without limits ("1E+1000000" is one digit and an exponent): every later
    # quantize or multiplication would raise or allocate without bound, so the edge refuses it.
    whole, fraction = money_digits(value)
    if whole > LIMITS.money_integer_digits or fraction > LIMITS.money_fraction_digits:
        raise _out_of_range(f"amount {str(value)[:30]} has more than {LIMITS.money_integer_digits} digits before "
                            f"or {LIMITS.money_fraction_digits} after the point")
    return value


def _date(value: date) -> date:
    day = value.date() if isinstance(value, datetime) else value
    if day < LIMITS.earliest or day > LIMITS.latest().date():
        raise _out_of_range(f"date {value.isoformat()} is outside {LIMITS.earliest.isoformat()} .. "
                            f"{LIMITS.future_years} years from now")
    return value


Identifier = Annotated[str, AfterValidator(_at_most("identifier", "identifier_chars"))]
Text = Annotated[str, AfterValidator(_at_most("text", "text_chars"))]
Quantity = Annotated[int, AfterValidator(_quantity)]
Money = Annotated[Decimal, AfterValidator(_money)]
InRangeDate = Annotated[date, AfterValidator(_date)]
Lines = AfterValidator(_at_most("list", "lines"))
Mapping = AfterValidator(_at_most("mapping", "lines"))
in_range = _date   # for the datetime validator chain in raw.py
