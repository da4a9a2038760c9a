"""What the `sale-costs` table holds (SPEC §5.2): a sale's unit cost, so that a return naming the sale
is valued at it, with when it was written, so that the table forgets sales older than the return
window (`SALE_COST_RETENTION`) and stays bounded whatever the traffic."""
from __future__ import annotations

from decimal import Decimal, InvalidOperation

import orjson


def sale_cost_value(unit_cost: Decimal, written_epoch: int) -> bytes:
    return orjson.dumps({"unit_cost": str(unit_cost), "written_at": written_epoch})


def parse_sale_cost(raw: bytes) -> tuple[Decimal | None, int]:
    """(unit cost, epoch written). A value written before the time was kept (a bare decimal) has
    epoch 0: the first sweep forgets it and its returns are valued at the average cost, as when no
    sale is named."""
    try:
        if raw.startswith(b"{"):
            value = orjson.loads(raw)
            return Decimal(value["unit_cost"]), int(value["written_at"])
        return Decimal(raw.decode()), 0
    except (InvalidOperation, ValueError, KeyError, TypeError, UnicodeDecodeError, orjson.JSONDecodeError):
        return None, 0


def sale_cost_expired(raw: bytes, now_epoch: int, retention: int) -> bool:
    return parse_sale_cost(raw)[1] + retention <= now_epoch
