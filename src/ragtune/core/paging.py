"""Paging a delete past a server's per-call cap (Weaviate deletes at most 10,000 a call)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

F = TypeVar("F")
MAX_PAGES = 100_000


class DeletePagingError(RuntimeError):
    """A delete page failed some objects or made no progress."""


def page_deletes(delete_page: Callable[[F], tuple[int, int]], where: F) -> int:
    """Call `delete_page(where) -> (matches, successful)` until nothing matches.

    Stops with an error when a page deletes fewer objects than it matched: running the
    same filter again would meet the same failures forever. Returns the number deleted.
    """
    deleted = 0
    for _ in range(MAX_PAGES):
        matches, successful = delete_page(where)
        if matches < 0 or successful < 0 or successful > matches:
            raise ValueError(f"impossible delete counts: matches={matches} successful={successful}")
        deleted += successful
        if matches == 0:
            return deleted
        if successful < matches:
            raise DeletePagingError(
                f"{matches - successful} of {matches} matched objects were not deleted"
            )
    raise DeletePagingError(f"delete still matching after {MAX_PAGES} pages")
