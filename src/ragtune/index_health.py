"""Index health: a damaged index is never taken for a current one.

The workspace's state remembers, per source, whether a sync wrote chunks of it and into
which index (the id the index got when it was created). Three calls use that:

- `check_before_pass` runs as every sync pass starts. An index whose files are missing or
  unreadable stops the pass; so does one that is gone, or was created anew, since the
  source was indexed into it, unless the pass re-reads every row anyway (`--full`, or a
  full pass owed), in which case that pass is owed until it completes.
- `verify` runs before `search` and `status`: the same judgement, nothing written.
- `rebuild` is `ragtune sync --full --rebuild`: drop a damaged index, forget what the
  state says the source has in it, and owe a full pass, which then re-reads every row.

Every refusal is one IndexDamagedError line naming that command.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from ragtune.adapters.index.base import IndexDamagedError, VectorIndex
from ragtune.adapters.state import StateStore
from ragtune.config import Params
from ragtune.core.index_health import Holding, lost

if TYPE_CHECKING:
    from ragtune.sync import SourceSync


def index_location(params: Params) -> str:
    """Where the index is, as users name it: the LanceDB folder or the Weaviate URL."""
    if params.index.backend == "lancedb":
        return str(params.index.path)
    return f"{params.index.url} (collection {params.index.collection})"


def check_before_pass(sync: SourceSync, full: bool) -> None:
    """Refuse an incremental pass over an index that lost this source's chunks; record
    which index the source is indexed into."""
    found = sync.index.identity()  # IndexDamagedError when files are missing or unreadable
    holding = sync.state.holding(sync.name)
    problem = lost(sync.name, holding, found, index_location(sync.params))
    if problem is not None:
        if not full:
            raise IndexDamagedError(problem)
        # this pass re-reads every row into the index there is now; owed until it completes
        sync.state.forget_index(sync.name)
        sync.state.require_full(sync.name)
        holding = Holding()
    if found is not None and holding.index_id != found:
        sync.state.record_index(sync.name, found)


def verify(params: Params, index: VectorIndex, state: StateStore, sources: Iterable[str]) -> None:
    """IndexDamagedError when the index is damaged or lost what a source had in it."""
    found = index.identity()
    for name in sources:
        problem = lost(name, state.holding(name), found, index_location(params))
        if problem is not None:
            raise IndexDamagedError(problem)


def rebuild(sync: SourceSync) -> str:
    """Drop the index if it is damaged and owe this source a full pass; what was done."""
    with sync.lock():
        dropped = sync.index.drop_if_damaged()
        sync.state.forget_index(sync.name)
        sync.state.require_full(sync.name)
    where = index_location(sync.params)
    if dropped:
        return f"dropped the damaged index at {where}; re-reading every row of '{sync.name}'"
    return f"re-reading every row of '{sync.name}' into the index at {where}"
