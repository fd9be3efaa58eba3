"""Data Docs are built for every validation and render fully offline, checked in headless
Chromium (Debian's package, installed by `make test`) with every non-file request refused."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from ragtune.adapters.changelog import Changelog
from ragtune.adapters.docs_assets import CDN_TO_NPM, available, remote_urls
from ragtune.adapters.quality import latest_page
from ragtune.adapters.sources import SqlSource
from ragtune.config import load_params
from ragtune.workspace import open_syncs
from tests.support import Database, create_documents, write_params

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
    "--disable-quic",
]


def synced_workspace(db: Database, tmp_path: Path, embedder: Any) -> Any:
    table = create_documents(db)
    with db.engine.begin() as c:
        c.execute(
            table.insert(),
            [
                {"id": 1, "title": "Fine", "body": "A good row."},
                {"id": 2, "title": "", "body": "  "},
            ],
        )
    params = load_params(write_params(tmp_path / "ws", db.url))
    source = SqlSource.open("docs", params.sources["docs"])
    Changelog(source, params.workspace.path).install()
    source.close()
    (one,) = open_syncs(params, embedder=embedder)
    one.run()
    return params


def test_every_validation_gets_a_page_without_cdn_links(
    sqlite_db: Database, tmp_path: Path, embedder: Any
) -> None:
    assert available(), "Data Docs assets missing: run `make install` (it fetches them from npm)"
    params = synced_workspace(sqlite_db, tmp_path, embedder)
    site = params.workspace.path / "quality" / "gx" / "uncommitted" / "data_docs" / "local_site"
    pages = sorted(site.glob("validations/*/*/*/*.html"))
    suites = {p.relative_to(site).parts[1] for p in pages}
    assert {"docs_change_rows", "change_batch"} <= suites
    left = remote_urls(site)
    assert not set(CDN_TO_NPM) & set(left)
    assert not [u for u in left if "amazonaws" in u]


def test_data_docs_render_styled_and_offline_in_chromium(
    sqlite_db: Database, tmp_path: Path, embedder: Any
) -> None:
    if not Path(CHROMIUM).exists():
        pytest.fail(
            "Debian's chromium is not installed; `make test` installs it (apt-get install chromium)"
        )
    from playwright.sync_api import sync_playwright

    params = synced_workspace(sqlite_db, tmp_path, embedder)
    page_path = latest_page(params.workspace.path)
    assert page_path is not None
    rows_page = next(page_path.parent.parent.parent.parent.glob("docs_change_rows/*/*/*.html"))
    outside: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        context = browser.new_context()

        def guard(route: Any) -> None:
            url = route.request.url
            if url.startswith(("file://", "data:")):
                route.continue_()
            else:
                outside.append(url)
                route.abort()

        context.route("**/*", guard)
        page = context.new_page()
        page.goto(rows_page.as_uri(), wait_until="load")
        page.wait_for_function("document.fonts.status === 'loaded'")
        text = page.inner_text("body")
        font = page.evaluate("getComputedStyle(document.body).fontFamily")
        icons = page.evaluate("document.fonts.check('900 16px \"Font Awesome 6 Free\"')")
        failed, passed = page.locator(".fa-times").count(), page.locator(".fa-check-circle").count()
        page.screenshot(path=str(tmp_path / "data_docs.png"), full_page=True)
        browser.close()
    assert outside == [], f"requests left the machine: {outside}"
    assert "docs_change_rows" in text and "Overview" in text
    assert "key" in text and "text" in text
    assert failed >= 1 and passed >= 1  # the blank row failed the length expectation
    assert "apple-system" in font or "Segoe UI" in font  # Bootstrap's stylesheet applied
    assert icons  # Font Awesome loaded from the local webfonts
