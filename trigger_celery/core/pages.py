"""Cursor pagination: one page type and one keyset query, for every list the package shows.

``runs.list``, ``schedules.list`` and the dashboard's lists page by the rows' primary
key: a page is ``WHERE id < cursor ORDER BY id DESC LIMIT n + 1`` (or ascending), so a
page is as fast on the millionth row as on the first and stays stable while rows are
inserted. The query is written against the queryset protocol only, so this module
stays free of Django.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

from trigger_celery.core.serialization import text_problem

T = TypeVar("T")

MAX_PAGE_SIZE = 100


class _Keyed(Protocol):
    def filter(self, **kwargs: Any) -> Any: ...
    def order_by(self, *fields: str) -> Any: ...


def check_limit(limit: object, *, maximum: int = MAX_PAGE_SIZE) -> int:
    """A page size: an int from 1 to ``maximum``, else a ValueError naming the value."""
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= maximum:
        raise ValueError(f"limit must be an int from 1 to {maximum}, got {limit!r}")
    return limit


def check_cursor(after: object, id_prefix: str | None = None) -> str | None:
    """``after`` as a page's ``next_cursor`` is: None, or the id of a row of the list.

    Anything else is a ValueError naming it: a number, a string the database cannot
    compare (a NUL character), or, given ``id_prefix``, a string no id of the list starts
    like. Such a cursor used to give an empty page, or the first page again."""
    if after is None or after == "":
        return None
    if not isinstance(after, str):
        raise ValueError(f"after: {after!r} is not a cursor; pass a page's next_cursor")
    problem = text_problem(after)
    if problem is not None:  # no row has such an id
        raise ValueError(f"after: {after!r} {problem}")
    if id_prefix is not None and not after.startswith(f"{id_prefix}_"):
        raise ValueError(
            f"after: {after!r} is not a {id_prefix} id ({id_prefix}_...); pass a page's next_cursor"
        )
    return after


def keyset_rows(
    queryset: _Keyed,
    *,
    limit: int,
    after: str | None,
    descending: bool = True,
    id_prefix: str | None = None,
) -> tuple[Sequence[Any], str | None]:
    """One page of ``queryset`` by primary key, and the cursor of the next page (or None).

    A cursor that is not one (:func:`check_cursor`) is a ValueError naming it."""
    after = check_cursor(after, id_prefix)
    if after:
        queryset = queryset.filter(**{"pk__lt" if descending else "pk__gt": after})
    rows = list(queryset.order_by("-pk" if descending else "pk")[: limit + 1])
    more = len(rows) > limit
    rows = rows[:limit]
    return rows, (str(rows[-1].pk) if more and rows else None)


@dataclass
class Page(Generic[T]):
    """One page of results; iterate it to walk every following page too."""

    data: list[T]
    _next_cursor: str | None
    _fetch: Callable[[str], Page[T]]

    @property
    def next_cursor(self) -> str | None:
        return self._next_cursor

    def has_next_page(self) -> bool:
        return self._next_cursor is not None

    def get_next_page(self) -> Page[T]:
        if self._next_cursor is None:
            # Not StopIteration: raised inside a generator, that becomes a RuntimeError.
            raise LookupError("this is the last page; check has_next_page() first")
        return self._fetch(self._next_cursor)

    def __iter__(self) -> Iterator[T]:
        page: Page[T] | None = self
        while page is not None:
            yield from page.data
            page = page.get_next_page() if page.has_next_page() else None


def keyset_page(
    queryset: _Keyed,
    *,
    limit: int,
    after: str | None,
    convert: Callable[[Any], T],
    descending: bool = True,
    wrap: Callable[[Callable[[str], Page[T]]], Callable[[str], Page[T]]] = lambda f: f,
    id_prefix: str | None = None,
) -> Page[T]:
    """A :class:`Page` of ``convert(row)`` whose next pages come from the same query.

    ``wrap`` wraps the fetch of each next page: the API passes ``off_loop.off_event_loop``
    so that a page fetched or iterated from async code reads off the event loop, as the
    first page did."""
    rows, cursor = keyset_rows(
        queryset, limit=limit, after=after, descending=descending, id_prefix=id_prefix
    )
    return Page(
        data=[convert(r) for r in rows],
        _next_cursor=cursor,
        _fetch=wrap(
            lambda c: keyset_page(
                queryset,
                limit=limit,
                after=c,
                convert=convert,
                descending=descending,
                wrap=wrap,
                id_prefix=id_prefix,
            )
        ),
    )
