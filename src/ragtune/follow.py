"""`sync --follow`: keep every source in step until asked to stop.

PostgreSQL changelog sources LISTEN to their trigger's NOTIFY and sync at once; every
source is also polled every `sync.poll_interval_s` (the only wake-up on SQLite and
MySQL, and a safety net should a notification be missed). A stop request lets the
current batch finish; since capture positions advance only after durable index writes,
stopping at any point loses nothing. Transient source errors are logged and retried with
backoff instead of ending the follower.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence

from ragtune.adapters.changelog import NotifyListener
from ragtune.adapters.state import RunCounts
from ragtune.errors import BusyError, DeletesHeldError
from ragtune.sync import SourceSync

log = logging.getLogger(__name__)
WAIT_SLICE_S = 0.2
MAX_BACKOFF_S = 30.0
HELD_WARNING_EVERY_S = 60.0  # how often a source with held deletes says so while following

PassHook = Callable[[str, RunCounts], None]


def follow(
    syncs: Sequence[SourceSync],
    poll_interval_s: float,
    stop: threading.Event,
    on_pass: PassHook | None = None,
    full: bool = False,
    allow_mass_delete: bool = False,
) -> None:
    listener = Listener(syncs)
    for one in syncs:  # Data Docs at most every docs_interval_s while following
        if one.gate is not None:
            one.gate.docs_interval_s = one.params.quality.docs_interval_s
    due = {one.name: 0.0 for one in syncs}
    failures = dict.fromkeys(due, 0)
    first_pass = dict.fromkeys(due, True)
    warned: dict[str, float] = {}
    try:
        while not stop.is_set():
            for one in syncs:
                if stop.is_set() or time.monotonic() < due[one.name]:
                    continue
                delay = poll_interval_s
                try:
                    counts = one.run(
                        full=full and first_pass[one.name],
                        stop=stop,
                        allow_mass_delete=allow_mass_delete,
                    )
                    first_pass[one.name] = False
                    failures[one.name] = 0
                    if on_pass is not None:
                        on_pass(one.name, counts)
                except BusyError:
                    pass  # another process syncs this source right now
                except DeletesHeldError as exc:  # new rows keep flowing; say it now and then
                    first_pass[one.name] = False
                    if on_pass is not None and isinstance(exc.counts, RunCounts):
                        on_pass(one.name, exc.counts)
                    if time.monotonic() >= warned.get(one.name, 0.0):
                        log.warning("source %s: %s", one.name, exc)
                        warned[one.name] = time.monotonic() + HELD_WARNING_EVERY_S
                except Exception as exc:  # keep following the others
                    failures[one.name] += 1
                    delay = min(MAX_BACKOFF_S, poll_interval_s * 2 ** failures[one.name])
                    log.error(
                        "source %s: sync failed (%s); retrying in %.0fs", one.name, exc, delay
                    )
                due[one.name] = time.monotonic() + delay
            listener.wait_until_due(due, stop)
    finally:
        listener.close()
        for one in syncs:
            if one.gate is not None:
                one.gate.build_docs(force=True)


class Listener:
    """NOTIFY wake-ups for PostgreSQL changelog sources, re-established if the link drops."""

    RETRY_S = 5.0

    def __init__(self, syncs: Sequence[SourceSync]):
        self.syncs = [
            s for s in syncs if s.changelog is not None and s.source.dialect == "postgresql"
        ]
        self.by_channel = {s.changelog.channel: s.name for s in self.syncs if s.changelog}
        self.notify = NotifyListener()
        self.retry_at = 0.0
        self.connect()

    def connect(self) -> bool:
        self.notify.close()
        self.notify = NotifyListener()
        for one in self.syncs:
            assert one.changelog is not None
            try:
                self.notify.add(one.changelog)
            except Exception as exc:  # polling still covers this source
                log.warning("source %s: LISTEN failed (%s); polling until it works", one.name, exc)
                self.notify.close()
                self.retry_at = time.monotonic() + self.RETRY_S
                return False
        return bool(self.syncs)

    def wait_until_due(self, due: dict[str, float], stop: threading.Event) -> None:
        """Sleep until a source is due, a NOTIFY arrives, or a stop is requested."""
        while not stop.is_set():
            remaining = min(due.values()) - time.monotonic()
            if remaining <= 0:
                return
            slice_s = min(remaining, WAIT_SLICE_S)
            deaf = self.syncs and not self.notify and time.monotonic() >= self.retry_at
            if deaf and self.connect():  # notifications sent while deaf are lost: sync now
                for one in self.syncs:
                    due[one.name] = 0.0
                return
            if not self.notify:
                stop.wait(slice_s)
                continue
            try:
                fired = self.notify.wait(slice_s)
            except Exception as exc:  # the server went away: poll, re-listen
                log.warning("LISTEN connection lost (%s); polling until it is back", exc)
                self.notify.close()
                self.retry_at = time.monotonic() + self.RETRY_S
                continue
            if fired:
                for channel in fired:
                    if channel in self.by_channel:
                        due[self.by_channel[channel]] = 0.0
                return

    def close(self) -> None:
        self.notify.close()
