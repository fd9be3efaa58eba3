"""`ragtune status`: freshness per source, index size and version, the last runs.

A damaged index (files missing, or gone since a source was indexed into it) is one error
line with the rebuild command, never a table of zeros that looks current.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

from ragtune.adapters.changelog import Changelog
from ragtune.adapters.quality import latest_page
from ragtune.adapters.sources import SqlSource
from ragtune.config import Params
from ragtune.core.freshness import lag_summary
from ragtune.errors import RagtuneError
from ragtune.index_health import verify
from ragtune.workspace import open_index, open_state


def collect_status(params: Params) -> dict[str, Any]:
    state = open_state(params)
    index = open_index(params)
    try:
        verify(params, index, state, params.sources)
        sources: dict[str, Any] = {}
        for name, config in params.sources.items():
            stats = index.stats(name)
            saved = state.load(name)
            entry: dict[str, Any] = {
                "capture": config.capture,
                "documents": stats.documents,
                "chunks": stats.chunks,
                **lag_summary(stats.lags_s),
                "as_of": _iso(saved.as_of),
                "pending": None,
                "quarantined": len(state.quarantined(name)),
                "error": None,
            }
            entry.update(_pending(name, config, params.workspace.path))
            sources[name] = entry
        location = str(params.index.path) if params.index.backend == "lancedb" else params.index.url
        return {
            "sources": sources,
            "index": {
                "backend": params.index.backend,
                "version": index.version(),
                "location": location,
            },
            "workspace": str(params.workspace.path),
            "quality": _quality(params),
            "last_runs": state.last_runs(),
            "ui": _ui(params),
            **_model(params),
        }
    finally:
        index.close()


def _ui(params: Params) -> dict[str, str] | None:
    """The UI URLs while `ragtune up` runs for this workspace, else None."""
    from ragtune.services import running, urls

    return urls(params) if running(params) else None


def _model(params: Params) -> dict[str, Any]:
    """`tracking_uri` and `champion` at the top level (null before the first promotion)."""
    from ragtune.training import model_status

    try:
        found = model_status(params)
    except RagtuneError as exc:  # tracking server down: the rest of the status still shows
        found = {"tracking_uri": params.tracking_uri(), "champion": None, "error": str(exc)}
    return {
        "tracking_uri": found["tracking_uri"],
        "champion": found["champion"],
        "model": found,
    }


def _quality(params: Params) -> dict[str, Any]:
    """Where the Data Docs are: the site's index and the newest validation page."""
    site_index = params.workspace.path / "quality" / "gx" / "uncommitted" / "data_docs"
    site_index = site_index / "local_site" / "index.html"
    page = latest_page(params.workspace.path)
    return {
        "enabled": params.quality.enabled,
        "data_docs": str(site_index) if site_index.is_file() else None,
        "latest_validation": str(page) if page else None,
    }


def _pending(name: str, config: Any, workspace: Path) -> dict[str, Any]:
    """Queued changes not yet in the index (changelog capture), or why it is unknown."""
    try:
        source = SqlSource.open(name, config)
    except RagtuneError as exc:
        return {"error": str(exc)}
    try:
        if config.capture != "changelog":
            return {}
        changelog = Changelog(source, workspace)
        if not changelog.is_installed():
            return {"error": f"changelog not installed; run `ragtune source install {name}`"}
        return {"pending": changelog.count()}
    finally:
        source.close()


def _iso(timestamp: float | None) -> str | None:
    if timestamp is None:
        return None
    return dt.datetime.fromtimestamp(timestamp, dt.UTC).isoformat(timespec="milliseconds")
