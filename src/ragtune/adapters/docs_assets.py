"""Data Docs and API docs that work offline: the CSS, JavaScript and fonts GX's pages and
the HTTP API's /docs and /redoc would load from CDNs, shipped locally.

`fetch()` (run by `make install`) takes each asset from the npm registry at the exact
version the pages reference (`npm pack`) into `ragtune/_assets/`, which is package data.
`localize(site)` runs after every Data Docs build: it copies the assets into the site and
rewrites every page to relative paths, dropping the SRI/crossorigin attributes a browser
refuses on file:// pages, and the remote logo. The API serves Swagger UI and ReDoc from
`_assets/` itself (`api_docs_files()`).

    python -m ragtune.adapters.docs_assets fetch
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

log = logging.getLogger(__name__)

ASSETS = Path(__file__).resolve().parent.parent / "_assets"

# URL exactly as GX 1.24's templates emit it -> (npm package@version, file in the package)
CDN_TO_NPM: dict[str, tuple[str, str]] = {
    "https://unpkg.com/bootstrap-table@1.19.1/dist/bootstrap-table.min.css": (
        "bootstrap-table@1.19.1",
        "dist/bootstrap-table.min.css",
    ),
    "https://unpkg.com/bootstrap-table@1.19.1/dist/bootstrap-table.min.js": (
        "bootstrap-table@1.19.1",
        "dist/bootstrap-table.min.js",
    ),
    "https://unpkg.com/bootstrap-table@1.19.1/dist/extensions/filter-control/bootstrap-table-filter-control.min.js": (
        "bootstrap-table@1.19.1",
        "dist/extensions/filter-control/bootstrap-table-filter-control.min.js",
    ),
    "https://unpkg.com/bootstrap-table@1.19.0/dist/extensions/filter-control/bootstrap-table-filter-control.css": (
        "bootstrap-table@1.19.0",
        "dist/extensions/filter-control/bootstrap-table-filter-control.css",
    ),
    "https://unpkg.com/bootstrap-table@1.19.0/dist/extensions/filter-control/bootstrap-table-filter-control.min.css": (
        "bootstrap-table@1.19.0",
        "dist/extensions/filter-control/bootstrap-table-filter-control.min.css",
    ),
    "https://maxcdn.bootstrapcdn.com/bootstrap/4.3.1/css/bootstrap.min.css": (
        "bootstrap@4.3.1",
        "dist/css/bootstrap.min.css",
    ),
    "https://stackpath.bootstrapcdn.com/bootstrap/4.3.1/js/bootstrap.min.js": (
        "bootstrap@4.3.1",
        "dist/js/bootstrap.min.js",
    ),
    "https://cdnjs.cloudflare.com/ajax/libs/bootstrap-datepicker/1.9.0/css/bootstrap-datepicker.min.css": (
        "bootstrap-datepicker@1.9.0",
        "dist/css/bootstrap-datepicker.min.css",
    ),
    "https://cdnjs.cloudflare.com/ajax/libs/bootstrap-datepicker/1.9.0/js/bootstrap-datepicker.min.js": (
        "bootstrap-datepicker@1.9.0",
        "dist/js/bootstrap-datepicker.min.js",
    ),
    "https://cdn.jsdelivr.net/npm/@forevolve/bootstrap-dark@1.1.0/dist/css/bootstrap-prefers-dark.css": (
        "@forevolve/bootstrap-dark@1.1.0",
        "dist/css/bootstrap-prefers-dark.css",
    ),
    "https://cdn.jsdelivr.net/npm/vega@5": ("vega@5.33.1", "build/vega.min.js"),
    "https://cdn.jsdelivr.net/npm/vega-lite@5": ("vega-lite@5.23.0", "build/vega-lite.min.js"),
    "https://cdn.jsdelivr.net/npm/vega-embed@6": ("vega-embed@6.29.0", "build/vega-embed.min.js"),
    "https://cdnjs.cloudflare.com/ajax/libs/font-awesome/6.6.0/css/all.min.css": (
        "@fortawesome/fontawesome-free@6.6.0",
        "css/all.min.css",
    ),
    "https://code.jquery.com/jquery-3.7.1.min.js": ("jquery@3.7.1", "dist/jquery.min.js"),
    "https://cdnjs.cloudflare.com/ajax/libs/popper.js/1.12.9/umd/popper.min.js": (
        "popper.js@1.12.9",
        "dist/umd/popper.min.js",
    ),
}
# Swagger UI and ReDoc for the HTTP API (ragtune.api): role -> (npm package@version, file)
API_DOCS: dict[str, tuple[str, str]] = {
    "swagger_js": ("swagger-ui-dist@5.35.0", "swagger-ui-bundle.js"),
    "swagger_css": ("swagger-ui-dist@5.35.0", "swagger-ui.css"),
    "swagger_favicon": ("swagger-ui-dist@5.35.0", "favicon-32x32.png"),
    "redoc_js": ("redoc@2.5.4", "bundles/redoc.standalone.js"),
}
EXTRA_DIRS = {"@fortawesome/fontawesome-free@6.6.0": ["webfonts"]}  # all.min.css loads ../webfonts
REMOTE_LOGO = re.compile(
    r"https://great-expectations-web-assets\.s3\.us-east-2\.amazonaws\.com/[A-Za-z_-]+\.png[^\"'\s)]*"
)
SRI = re.compile(r'\s+(?:integrity|crossorigin)="[^"]*"')
REMOTE_URL = re.compile(r"""https?://[^\s"'<>)]+""")


def folder(spec: str) -> str:
    return spec.replace("/", "__")


def needed_files() -> set[tuple[str, str]]:
    files = set(CDN_TO_NPM.values())
    return files


def available() -> bool:
    return all((ASSETS / folder(spec) / path).is_file() for spec, path in needed_files())


def api_docs_files(target: Path | None = None) -> dict[str, str] | None:
    """The API docs' files by role, as paths relative to `target`; None until fetched."""
    root = ASSETS if target is None else target
    files = {role: f"{folder(spec)}/{path}" for role, (spec, path) in API_DOCS.items()}
    return files if all((root / path).is_file() for path in files.values()) else None


def fetch(target: Path = ASSETS) -> None:
    """Download the assets' npm packages and keep just the files the pages use."""
    target.mkdir(parents=True, exist_ok=True)
    every = [*CDN_TO_NPM.values(), *API_DOCS.values()]
    specs = sorted({spec for spec, _ in every})
    with tempfile.TemporaryDirectory() as scratch:
        for spec in specs:
            wanted = sorted({p for s, p in every if s == spec})
            if all((target / folder(spec) / p).is_file() for p in wanted):
                continue
            packed = (
                subprocess.run(
                    ["npm", "pack", spec, "--silent", "--pack-destination", scratch],
                    check=True,
                    capture_output=True,
                    text=True,
                )
                .stdout.strip()
                .splitlines()[-1]
            )
            with tarfile.open(Path(scratch) / packed) as archive:
                archive.extractall(Path(scratch) / folder(spec), filter="data")
            package = Path(scratch) / folder(spec) / "package"
            for path in wanted:
                (target / folder(spec) / path).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(package / path, target / folder(spec) / path)
            for extra in EXTRA_DIRS.get(spec, []):
                shutil.copytree(package / extra, target / folder(spec) / extra, dirs_exist_ok=True)
            for license_file in package.glob("LICENSE*"):
                shutil.copyfile(license_file, target / folder(spec) / license_file.name)


def localize(site: Path) -> int:
    """Copy the assets into a Data Docs site and point every page at them; pages changed."""
    if not available():
        log.warning(
            "Data Docs assets missing in %s: pages keep CDN links; run "
            "`python -m ragtune.adapters.docs_assets fetch` (make install does)",
            ASSETS,
        )
        return 0
    vendor = site / "static" / "vendor"
    for spec in {spec for spec, _ in CDN_TO_NPM.values()}:
        shutil.copytree(ASSETS / folder(spec), vendor / folder(spec), dirs_exist_ok=True)
    logo = site / "static" / "images" / "logo-long.png"
    changed = 0
    for page in site.rglob("*.html"):
        text = page.read_text(encoding="utf-8", errors="surrogateescape")

        def relative(path: Path, page: Path = page) -> str:
            return os.path.relpath(path, page.parent).replace(os.sep, "/")

        new = text
        for url, (spec, path) in CDN_TO_NPM.items():
            new = new.replace(f'"{url}"', f'"{relative(vendor / folder(spec) / path)}"')
        new = REMOTE_LOGO.sub(relative(logo), new)
        new = SRI.sub("", new)
        if new != text:
            page.write_text(new, encoding="utf-8", errors="surrogateescape")
            changed += 1
    return changed


def remote_urls(site: Path) -> dict[str, set[str]]:
    """http(s) URLs still referenced by the pages (links a reader may click included)."""
    found: dict[str, set[str]] = {}
    for page in sorted(site.rglob("*.html")):
        for url in REMOTE_URL.findall(page.read_text(encoding="utf-8", errors="surrogateescape")):
            found.setdefault(url, set()).add(str(page.relative_to(site)))
    return found


if __name__ == "__main__":
    if sys.argv[1:] == ["fetch"]:
        fetch()
        print(f"Data Docs and API docs assets ready in {ASSETS}")
    else:
        print("usage: python -m ragtune.adapters.docs_assets fetch", file=sys.stderr)
        sys.exit(2)
