"""Cursor pagination shared by ``runs.list`` and ``schedules.list``."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")

MAX_PAGE_SIZE = 100


def check_limit(limit: object) -> int:
    """A page size: an int from 1 to 100, else a ValueError naming the value."""
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_PAGE_SIZE:
        raise ValueError(f"limit must be an int from 1 to {MAX_PAGE_SIZE}, got {limit!r}")
    return limit


@dataclass
class Page(Generic[T]):
    """One page of results; iterate it to walk every following page too."""

    data: list[T]
    _next_cursor: str | None
    _fetch: Callable[[str], Page[T]]

    def has_next_page(self) -> bool:
        return self._next_cursor is not None

    def get_next_page(self) -> Page[T]:
        if self._next_cursor is None:
            raise StopIteration("this is the last page")
        return self._fetch(self._next_cursor)

    def __iter__(self) -> Iterator[T]:
        page: Page[T] | None = self
        while page is not None:
            yield from page.data
            page = page.get_next_page() if page.has_next_page() else None
