"""Whether the index still holds what the workspace says it does, and how to say it when not.

The workspace's state records, per source, whether a sync ever wrote chunks of it and
which physical index they went into (an id the index gets when it is created). An index
that is gone, or was created anew since, has lost those chunks: an incremental sync would
add only what changes next and report the rest as current. Such an index is damaged, and
so is one whose files are missing or unreadable; the fix is one command, `REBUILD`.

Pure: the adapters gather the facts, this module judges them and words the verdict.
"""

from __future__ import annotations

import errno
import re
from dataclasses import dataclass

REBUILD = "ragtune sync --full --rebuild"
UNMARKED = "unmarked"  # the id of an index created before indexes carried one

DISK_FULL = (errno.ENOSPC, errno.EDQUOT)
NO_ACCESS = (errno.EACCES, errno.EPERM, errno.EROFS)
_DISK_FULL_TEXT = ("no space left on device", "disk quota exceeded", "os error 28", "disk is full")
_NO_ACCESS_TEXT = ("permission denied", "read-only file system", "os error 13", "os error 30")
_SOURCE_LOCATION = re.compile(r",?\s*/\S+\.rs:\d+:\d+")  # where in Lance's Rust code it failed


@dataclass(frozen=True)
class Holding:
    """What the workspace's state says the index holds for one source."""

    index_id: str | None = None  # the index its chunks were written into, once seen
    written: bool = False  # a sync wrote chunks of it (forgotten only by a rebuild)


def lost(source: str, holding: Holding, found: str | None, location: str) -> str | None:
    """Why the index at `location` (id `found`, None when there is none) no longer holds
    what `holding` says it does for `source`, ending with the fix; None when it does."""
    if not holding.written:
        return None
    if found is None:
        problem = (
            f"the index at {location} is gone, but source '{source}' was indexed into it "
            "(the workspace state says so)"
        )
    elif holding.index_id is not None and holding.index_id != found:
        problem = (
            f"the index at {location} is not the one source '{source}' was indexed into "
            "(it was deleted or replaced since)"
        )
    else:
        return None
    return f"{problem}; rebuild it: `{REBUILD}`"


def failure_kind(text: str, code: int | None = None) -> str:
    """What an index failure means for the user: disk_full, no_access or damaged."""
    lowered = text.lower()
    if code in DISK_FULL or any(t in lowered for t in _DISK_FULL_TEXT):
        return "disk_full"
    if code in NO_ACCESS or any(t in lowered for t in _NO_ACCESS_TEXT):
        return "no_access"
    return "damaged"


def failure_reason(text: str) -> str:
    """A store error's own words, on one line, without Rust source locations."""
    lines = [line.strip() for line in str(text).splitlines() if line.strip()]
    first = lines[0] if lines else "unknown error"
    return _SOURCE_LOCATION.sub("", first).rstrip(" ,;") or first


def failure_message(location: str, action: str, kind: str, reason: str) -> str:
    """One line: what failed, why, and the fix."""
    if kind == "disk_full":
        return (
            f"the disk holding the index at {location} is full ({action}: {reason}); free "
            "space and run the command again: nothing is lost, a sync position advances "
            "only after its index write is durable"
        )
    if kind == "no_access":
        return (
            f"cannot {action} the index at {location}: {reason}; give this user read and "
            "write access to that folder"
        )
    return f"the index at {location} is damaged ({action}: {reason}); rebuild it: `{REBUILD}`"


def missing_files_message(location: str, missing: list[str], total: int) -> str:
    """One line for an index whose files are gone or cut short."""
    shown = ", ".join(sorted(missing)[:3]) + (", ..." if len(missing) > 3 else "")
    return (
        f"the index at {location} is damaged: {len(missing)} of its {total} files are missing "
        f"or cut short ({shown}); rebuild it: `{REBUILD}`"
    )
