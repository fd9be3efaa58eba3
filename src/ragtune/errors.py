"""User-facing errors: each says what is wrong and how to fix it, on one line.

The CLI prints `error: <message>` for any `RagtuneError` and exits non-zero; anything
else is a bug and keeps its traceback.
"""

from __future__ import annotations


class RagtuneError(Exception):
    """A problem the user can fix (bad config, unreachable database, missing install)."""

    exit_code = 1


class ConfigError(RagtuneError):
    """params.yaml is malformed or names something that does not exist."""

    exit_code = 2


class SourceError(RagtuneError):
    """A source database is unreachable or does not match its configuration."""

    exit_code = 3


class IndexStoreError(RagtuneError):
    """The vector index is unreachable or incompatible with the configuration."""

    exit_code = 4


class BusyError(RagtuneError):
    """Another process holds the lock this command needs."""

    exit_code = 5


class QualityGateError(RagtuneError):
    """A change batch or training snapshot failed a batch-level expectation."""

    exit_code = 6


class DeletesHeldError(QualityGateError):
    """A pass applied its inserts and updates; the mass-delete guard held its deletes."""

    def __init__(self, message: str, counts: object = None):
        super().__init__(message)
        self.counts = counts  # what the pass did apply (a RunCounts)


class TrackingError(RagtuneError):
    """The MLflow tracking server or model registry is unreachable or misconfigured."""

    exit_code = 7


class ServiceError(RagtuneError):
    """A service of `ragtune up` could not start, or its port is taken."""

    exit_code = 8
