"""A store day's ledger kept as a small head and fixed pages, so what a finance batch writes per
store day stays small however busy the day is (SPEC §4: bounded in bytes, the writes as well as the
state).

A busy day's ledger holds the marks of its last 4,000 postings and 4,000 POS transactions and lists
up to 1,000 posting ids (app/domain/day_batches.py): ~100 KB of JSON. A finance batch rewrote all of
it, in RocksDB and as a changelog record, for every store day it touched; at a steady 14 postings
per store and batch that was 6.7 KB written per posting, and the more stores a worker holds the
fewer postings share each rewrite (`python -m bench.day_pages`). So each of those three lists is
cut into pages of a fixed size. A page is written once, when it fills, and deleted when its marks
are forgotten or its ids went out in a batch; the head is the rest of the ledger with, of each
list, only what does not fill a page yet, and `paged` says how many of the list's items are in
pages. A whole ledger (the one the day-batch rules work on) has `paged` empty.

Pages are named by where their items sit in the list for good: a mark's place counts every mark
the day ever added (`postings_marked`), an id's place counts from its batch's start, under its
batch's sequence. So a page's content never changes once full, except that a window of marks
forgets its oldest from the front: a stored page that holds more than the window needs is still
right, and is not written again. Plain functions, no Faust: tables/day_ledgers.py reads and writes
heads and pages with them.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from app.domain.day_batches import DayLedger
from app.domain.marks import MARK_CHARS

MARKS_PER_PAGE = 100    # 1.2 KB a page
IDS_PER_PAGE = 50       # ~2.3 KB a page (posting ids are ~45 characters)
ID_SEPARATOR = "\n"     # never in a posting id (app/domain/postings.py, posting_id)


@dataclass(frozen=True)
class _Marks:
    """A list of marks written end to end, and the counter of marks ever added that places them."""
    name: str           # the page names' prefix
    field: str          # DayLedger's field holding the marks
    counter: str        # DayLedger's field counting every mark the day added


_MARK_LISTS = (_Marks("postings", "counted_postings", "postings_marked"),
               _Marks("pos", "counted_pos_transactions", "pos_transactions_marked"))
_COUNTERS = {marks.field: marks.counter for marks in _MARK_LISTS}
_IDS = "posting_ids"


def pages_of(ledger: DayLedger) -> dict[str, str]:
    """Every full page a whole ledger's lists span, by name, with what the ledger holds of it."""
    return {_name(prefix, page): _text(ledger, field, page)
            for field, (prefix, pages) in _page_ranges(ledger).items() for page in pages}


def _page_ranges(ledger: DayLedger) -> dict[str, tuple[str, range]]:
    """Of each list of a ledger, the full pages it spans: their names' prefix and numbers. For a whole
    ledger (`paged` empty) and for its stored head alike: a head holds each list's unfilled end, and
    `paged` counts the items before it, which are in these pages."""
    ranges = {}
    for marks in _MARK_LISTS:
        held = len(getattr(ledger, marks.field)) // MARK_CHARS + ledger.paged.get(marks.field, 0)
        total = getattr(ledger, marks.counter)
        first = total - held          # the place of the oldest mark held
        ranges[marks.field] = (marks.name, range(first // MARKS_PER_PAGE, total // MARKS_PER_PAGE))
    listed = len(ledger.posting_ids) + ledger.paged.get(_IDS, 0)
    ranges[_IDS] = (f"ids.{ledger.sequence}", range(listed // IDS_PER_PAGE))
    return ranges


def _name(prefix: str, page: int) -> str:
    return f"{prefix}.{page}"


def _text(ledger: DayLedger, field: str, page: int) -> str:
    """What a whole ledger holds of one of its full pages."""
    if field == _IDS:
        return ID_SEPARATOR.join(ledger.posting_ids[page * IDS_PER_PAGE:(page + 1) * IDS_PER_PAGE])
    text = getattr(ledger, field)
    first = getattr(ledger, _COUNTERS[field]) - len(text) // MARK_CHARS
    start, end = max(page * MARKS_PER_PAGE, first) - first, (page + 1) * MARKS_PER_PAGE - first
    return text[start * MARK_CHARS:end * MARK_CHARS]


def head_of(ledger: DayLedger) -> DayLedger:
    """What is stored under the day's own key: the ledger with each list cut to what follows its
    last full page, and how many items went to pages."""
    update: dict[str, object] = {}
    paged: dict[str, int] = {}
    for marks in _MARK_LISTS:
        text, total = getattr(ledger, marks.field), getattr(ledger, marks.counter)
        tail = min(total % MARKS_PER_PAGE, len(text) // MARK_CHARS)
        if len(text) // MARK_CHARS > tail:
            paged[marks.field] = len(text) // MARK_CHARS - tail
            update[marks.field] = text[len(text) - tail * MARK_CHARS:]
    full = len(ledger.posting_ids) // IDS_PER_PAGE * IDS_PER_PAGE
    if full:
        paged[_IDS] = full
        update[_IDS] = ledger.posting_ids[full:]
    if not paged:
        return ledger
    update["paged"] = paged
    return ledger.model_copy(update=update)


def page_names(head: DayLedger) -> list[str]:
    """The pages a stored head needs to be whole again."""
    return [_name(prefix, page) for prefix, pages in _page_ranges(head).values() for page in pages]


def whole(head: DayLedger, read_pages: Callable[[list[str]], list[str | None]]
          ) -> tuple[DayLedger, list[str]]:
    """The whole ledger of a stored head, its pages read at once with `read_pages(names)` (their texts,
    None for a page not there); and the names of pages that were not there (a changelog cut short:
    the ledger is whole but for what they held)."""
    if not head.paged:
        return head, []
    names = {field: [_name(prefix, page) for page in pages]
             for field, (prefix, pages) in _page_ranges(head).items() if field in head.paged}
    every_page = [name for in_pages in names.values() for name in in_pages]
    stored = dict(zip(every_page, read_pages(every_page), strict=True))
    missing = [name for name in every_page if stored[name] is None]
    update: dict[str, object] = {"paged": {}}
    for field, in_pages in names.items():
        texts = [stored[name] for name in in_pages if stored[name]]
        if field == _IDS:
            listed = [posting_id for text in texts for posting_id in text.split(ID_SEPARATOR)]
            update[field] = listed + head.posting_ids
        else:
            held = "".join(texts)
            update[field] = held[max(0, len(held) - head.paged[field] * MARK_CHARS):] + getattr(head, field)
    return head.model_copy(update=update), missing


def page_changes(before: DayLedger | None, after: DayLedger | None, *, before_stored: bool = True
                 ) -> dict[str, str | None]:
    """The page writes (name -> text) and deletes (name -> None) that take the stored pages of the
    whole ledger `before` to those of `after` (None: no ledger). `before_stored` is false when
    `before` was read from a record written before pages existed: none of its pages is stored.

    A page both ledgers have is not written again when `after` grew from `before` (its text is the
    same, or the same with its oldest marks forgotten since, and `whole` takes only the marks the
    window needs); it is when the day was forgotten and opened again within the batch."""
    old = _page_ranges(before) if before is not None else {}
    new = _page_ranges(after) if after is not None else {}
    kept = before_stored and before is not None and after is not None and _grew_from(before, after)
    changes: dict[str, str | None] = {}
    # Pages are counted, not listed: a batch costs the pages that changed, not all a busy day has.
    for field, (prefix, pages) in old.items():
        still = new.get(field, (prefix, range(0)))
        for page in _outside(pages, still[1] if still[0] == prefix else range(0)):
            changes[_name(prefix, page)] = None
    for field, (prefix, pages) in new.items():
        was = old.get(field, (prefix, range(0)))
        for page in _outside(pages, was[1] if kept and was[0] == prefix else range(0)):
            changes[_name(prefix, page)] = _text(after, field, page)
    return changes


def _outside(pages: range, other: range) -> list[int]:
    """The pages of one run of page numbers that are not in another (neither runs backwards, so an
    empty `other` leaves all of `pages`)."""
    return [*range(pages.start, min(pages.stop, other.start)),
            *range(max(pages.start, other.stop), pages.stop)]


def _grew_from(before: DayLedger, after: DayLedger) -> bool:
    """Whether `after` is `before` with items added and its oldest marks forgotten: what both hold
    of each list is the same, at the same places (one comparison of the part they share)."""
    for marks in _MARK_LISTS:
        was, now = getattr(before, marks.counter), getattr(after, marks.counter)
        held_before, held_after = getattr(before, marks.field), getattr(after, marks.field)
        first_after = now - len(held_after) // MARK_CHARS
        if now < was:
            return False
        if first_after < was and not held_before.endswith(held_after[:(was - first_after) * MARK_CHARS]):
            return False   # held in another order, or from a place before held (not grown from it)
    # Listed ids' pages are named by their batch's sequence: only under the same one can they clash.
    listed = before.posting_ids
    return after.sequence != before.sequence or after.posting_ids[:len(listed)] == listed
