"""`ragtune api`: search and answers over HTTP (FastAPI, served by one uvicorn worker).

One `Service` per process holds what every request shares: the index, the embedding model
and the sync state, opened at startup (or on first use), and the generator, loaded on the
first /ask. Requests that use the models run one at a time: their tokenizers are not
thread-safe, and one request already keeps every core busy. /healthz and /status never
wait for them.

Callers are known by API keys (`ragtune.api_auth`): with keys configured, every endpoint
but /healthz (and the docs) needs `Authorization: Bearer <key>`, and a request reads only
the tenants its key allows; without keys the API serves localhost only.

Errors are one-line `detail`s: 422 for a request that breaks the schema (FastAPI's list of
problems), 400 for one that makes no sense (a blank question, a `RagtuneError` from
below), 401 without a known key, 403 for a tenant the key may not read, 503 when the
index or a model cannot be loaded or reached. /docs (Swagger UI) and /redoc load their
JavaScript and CSS from the package's own copies under /_assets, never from a CDN
(`python -m ragtune.adapters.docs_assets fetch`; `make install` runs it).

    ragtune api --port 8000        # then open http://127.0.0.1:8000/docs
"""

from __future__ import annotations

import html
import logging
import math
import sys
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, TypeVar

from fastapi import Depends, FastAPI, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.staticfiles import StaticFiles

from ragtune import __version__
from ragtune.adapters import docs_assets
from ragtune.adapters.embeddings import Embedder
from ragtune.adapters.index.base import SearchFilter, VectorIndex
from ragtune.adapters.state import StateStore
from ragtune.answer import Answerer, load_generator
from ragtune.api_auth import (
    ANYONE,
    ApiKey,
    Forbidden,
    KeyRing,
    Unauthorized,
    binding_note,
    check_binding,
    load_keys,
)
from ragtune.api_schemas import (
    AskRequest,
    AskResponse,
    Health,
    Problem,
    SearchQuery,
    SearchRequest,
    SearchResponse,
    StatusResponse,
)
from ragtune.config import Params, load_params
from ragtune.errors import ConfigError, IndexStoreError, RagtuneError, TrackingError
from ragtune.search import SearchResult, as_of, search

log = logging.getLogger(__name__)

ASSETS_URL = "/_assets"
# the docs pages may load nothing from elsewhere (inline script and styles are their own)
LOCAL_ONLY = (
    "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; worker-src 'self' blob:"
)
ECHO_CHARS = 200  # of a rejected input, in a 422's detail
UNREACHABLE = (IndexStoreError, TrackingError)  # RagtuneErrors that mean 503, not 400
T = TypeVar("T")


# -- the service ------------------------------------------------------------------------------


class Unavailable(Exception):
    """The index or a model cannot be loaded: 503."""


@dataclass(frozen=True)
class Retrieval:
    index: VectorIndex
    embedder: Embedder
    state: StateStore


class Service:
    """What the endpoints share, loaded once per process."""

    def __init__(self, params: Params, answerer: Answerer | None = None, which: str = "champion"):
        if which not in ("champion", "base"):
            raise ConfigError(f"model {which!r}: choose champion or base")
        self.params = params
        self.which = which
        self._answerer = answerer
        self._parts = (
            Retrieval(answerer.index, answerer.embedder, answerer.state) if answerer else None
        )
        self._loading_retrieval = threading.Lock()
        self._loading_generator = threading.Lock()
        self._models = threading.Lock()

    def retrieval(self) -> Retrieval:
        with self._loading_retrieval:
            if self._parts is None:
                self._parts = _load("the index or embedding model", self._open_retrieval)
            return self._parts

    def answerer(self) -> Answerer:
        parts = self.retrieval()
        with self._loading_generator:
            if self._answerer is None:
                self._answerer = _load("the generator model", lambda: self._open_answerer(parts))
            return self._answerer

    def _open_answerer(self, parts: Retrieval) -> Answerer:
        """Only the generator is loaded here: the index, embedder and state are shared."""
        generator = load_generator(self.params, self.which)
        return Answerer.over(self.params, parts.index, parts.embedder, parts.state, generator)

    def _open_retrieval(self) -> Retrieval:
        from ragtune.workspace import open_embedder, open_index, open_state

        embedder = open_embedder(self.params)
        embedder.encode(["warm up"])  # load the model now: a broken one is a 503, once
        return Retrieval(open_index(self.params), embedder, open_state(self.params))

    def search(self, request: SearchQuery, tenant: str | None) -> dict[str, Any]:
        """`tenant`: what the caller's key allows of the tenant the request names."""
        from ragtune.index_health import verify

        parts = self.retrieval()
        verify(self.params, parts.index, parts.state, self.params.sources)
        where = SearchFilter(tuple(self.params.sources), (), tenant)
        with self._models:
            hits = search(
                parts.index,
                parts.embedder,
                request.q,
                self.params.search,
                where,
                k=request.k,
                mode=request.mode,
            )
        result = SearchResult(request.q, as_of(parts.state, list(self.params.sources)), hits)
        payload = result.to_json()
        payload.pop("query")
        return payload

    def ask(self, request: AskRequest, tenant: str | None) -> dict[str, Any]:
        answerer = self.answerer()
        with self._models:
            return answerer.ask(request.question, request.k, tenant).to_json()

    def close(self) -> None:
        if self._parts is not None:
            self._parts.index.close()


def _load(what: str, opener: Callable[[], T]) -> T:
    try:
        return opener()
    except Exception as exc:  # any failure to load is the same to a client: not now
        log.exception("cannot load %s", what)
        raise Unavailable(f"cannot load {what}: {_one_line(exc)}") from exc


def _one_line(exc: BaseException) -> str:
    lines = _encodable(str(exc)).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def _encodable(text: str) -> str:
    return text.encode("utf-8", "surrogatepass").decode("utf-8", "replace")


def _scrub(value: Any) -> Any:
    """Echoed input made valid, short JSON: lone surrogates become U+FFFD, NaN and
    infinities strings, long strings cut; inside lists and dicts too."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, str):
        return _encodable(value[:ECHO_CHARS] + "…" if len(value) > ECHO_CHARS else value)
    if isinstance(value, list):
        return [_scrub(v) for v in value]
    if isinstance(value, dict):
        return {k: _scrub(v) for k, v in value.items()}
    return value


def _not_blank(text: str, what: str) -> None:
    if not text.strip():
        raise RagtuneError(f"{what} is blank; send some words")


# -- the app ----------------------------------------------------------------------------------

PROBLEMS: dict[int | str, dict[str, Any]] = {
    400: {"model": Problem, "description": "a request that makes no sense"},
    503: {"model": Problem, "description": "the index or a model cannot be loaded or reached"},
}
AUTH_PROBLEMS: dict[int | str, dict[str, Any]] = {
    401: {"model": Problem, "description": "no API key, or one that is not configured"},
    403: {"model": Problem, "description": "a tenant this API key may not read"},
}


def create_app(
    params: Params,
    answerer: Answerer | None = None,
    which: str = "champion",
    keys: KeyRing | None = None,
) -> FastAPI:
    """The API over one workspace; `answerer` (already loaded) is used as is, e.g. in tests.
    `keys`: who may call it; by default those of `api.keys_file` and `api.keys_env`."""
    service = Service(params, answerer, which)
    ring = load_keys(params.api) if keys is None else keys
    caller = Depends(_caller(ring))  # a default, not an annotation: those resolve globally
    problems = PROBLEMS | AUTH_PROBLEMS if ring else PROBLEMS

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        try:
            await run_in_threadpool(service.retrieval)
        except Unavailable as exc:  # keep serving: /healthz works, searches answer 503
            log.warning("%s", exc)
        yield
        service.close()

    app = FastAPI(
        title="ragtune",
        version=__version__,
        summary="Search the live index and ask the fine-tuned model, with citations.",
        docs_url=None,
        redoc_url=None,
        lifespan=lifespan,
    )
    app.state.service = service

    @app.exception_handler(RagtuneError)
    async def ragtune_error(request: Request, exc: RagtuneError) -> JSONResponse:
        status = 503 if isinstance(exc, UNREACHABLE) else 400
        return JSONResponse({"detail": _one_line(exc)}, status_code=status)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        """FastAPI's 422, with the echoed input made encodable (a lone surrogate or a NaN
        in the request would otherwise turn the error report itself into a 500)."""
        return JSONResponse({"detail": _scrub(jsonable_encoder(exc.errors()))}, status_code=422)

    @app.exception_handler(Unavailable)
    async def unavailable(request: Request, exc: Unavailable) -> JSONResponse:
        return JSONResponse({"detail": _one_line(exc)}, status_code=503)

    @app.exception_handler(Unauthorized)
    async def unauthorized(request: Request, exc: Unauthorized) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"}
        return JSONResponse({"detail": _one_line(exc)}, status_code=401, headers=headers)

    @app.exception_handler(Forbidden)
    async def forbidden(request: Request, exc: Forbidden) -> JSONResponse:
        return JSONResponse({"detail": _one_line(exc)}, status_code=403)

    @app.get("/healthz", response_model=Health, tags=["service"])
    def healthz() -> dict[str, str]:
        """Liveness: answers without touching the index or the models."""
        return {"status": "ok"}

    @app.get(
        "/status",
        response_model=StatusResponse,
        responses=problems,
        tags=["service"],
        dependencies=[caller],
    )
    def status() -> dict[str, Any]:
        """Freshness per source, index size and version, the champion model, last runs."""
        from ragtune.status import collect_status

        return collect_status(params)

    @app.get("/search", response_model=SearchResponse, responses=problems, tags=["search"])
    def search_get(query: Annotated[SearchQuery, Query()], key: ApiKey = caller) -> dict[str, Any]:
        """Hybrid (or vector, or full-text) retrieval over the index."""
        _not_blank(query.q, "q")
        return service.search(query, key.tenant_for(query.tenant))

    @app.post("/search", response_model=SearchResponse, responses=problems, tags=["search"])
    def search_post(body: SearchRequest, key: ApiKey = caller) -> dict[str, Any]:
        """The same as GET /search, with the parameters in a JSON body."""
        _not_blank(body.q, "q")
        return service.search(body, key.tenant_for(body.tenant))

    @app.post("/ask", response_model=AskResponse, responses=problems, tags=["answer"])
    def ask(body: AskRequest, key: ApiKey = caller) -> dict[str, Any]:
        """An answer by the champion model (the base model before the first promotion),
        citing the retrieved chunks as [n]. The first call loads the model."""
        _not_blank(body.question, "question")
        return service.ask(body, key.tenant_for(body.tenant))

    _add_docs(app)
    return app


def _caller(ring: KeyRing) -> Callable[..., ApiKey]:
    """The dependency that names the caller: the key of its bearer token, or, with no keys
    configured, anyone (the API then listens on localhost only)."""
    if not ring:

        def anyone() -> ApiKey:
            return ANYONE

        return anyone

    bearer = HTTPBearer(
        auto_error=False, description="an API key from api.keys_file or RAGTUNE_API_KEYS"
    )

    token = Depends(bearer)  # a default, not an annotation: those resolve globally

    def key_holder(credentials: HTTPAuthorizationCredentials | None = token) -> ApiKey:
        return ring.identify(None if credentials is None else credentials.credentials)

    return key_holder


def _add_docs(app: FastAPI) -> None:
    """/docs and /redoc from local copies of Swagger UI and ReDoc, or how to get them."""
    assets = docs_assets.ASSETS
    if assets.is_dir():
        app.mount(ASSETS_URL, StaticFiles(directory=assets), name="assets")
    openapi_url = app.openapi_url or "/openapi.json"
    files = docs_assets.api_docs_files(assets) if assets.is_dir() else None  # checked once

    def local(request: Request) -> tuple[str, dict[str, str]] | None:
        if files is None:
            return None
        root = request.scope.get("root_path", "").rstrip("/")
        return root, {role: f"{root}{ASSETS_URL}/{path}" for role, path in files.items()}

    @app.get("/docs", include_in_schema=False)
    def swagger_ui(request: Request) -> HTMLResponse:
        found = local(request)
        if found is None:
            return _missing_assets(app.title, "Swagger UI")
        root, url = found
        page = get_swagger_ui_html(
            openapi_url=root + openapi_url,
            title=f"{app.title} API",
            swagger_js_url=url["swagger_js"],
            swagger_css_url=url["swagger_css"],
            swagger_favicon_url=url["swagger_favicon"],
            swagger_ui_parameters={"validatorUrl": None},  # the default calls swagger.io
        )
        page.headers["Content-Security-Policy"] = LOCAL_ONLY
        return page

    @app.get("/redoc", include_in_schema=False)
    def redoc(request: Request) -> HTMLResponse:
        found = local(request)
        if found is None:
            return _missing_assets(app.title, "ReDoc")
        root, url = found
        page = get_redoc_html(
            openapi_url=root + openapi_url,
            title=f"{app.title} API",
            redoc_js_url=url["redoc_js"],
            redoc_favicon_url=url["swagger_favicon"],
            with_google_fonts=False,
        )
        page.headers["Content-Security-Policy"] = LOCAL_ONLY  # ReDoc's footer logo is remote
        return page


def _missing_assets(title: str, viewer: str) -> HTMLResponse:
    return HTMLResponse(
        f"<!doctype html><html><head><title>{html.escape(title)} API</title></head><body>"
        f"<h1>{html.escape(title)} API</h1><p>{viewer} is not installed: run "
        "<code>make install</code> (or <code>python -m ragtune.adapters.docs_assets "
        "fetch</code>, which needs npm), then restart <code>ragtune api</code>.</p>"
        '<p>The OpenAPI spec is at <a href="openapi.json">openapi.json</a>.</p></body></html>'
    )


def serve(
    params_path: Path, host: str | None = None, port: int | None = None, which: str = "champion"
) -> None:
    """Run the API with uvicorn, one worker (the models are loaded once, in this process).
    `host` and `port` default to `api.host` and `api.port`; a host other than localhost
    needs API keys (a ConfigError before anything starts)."""
    import uvicorn

    params = load_params(params_path)
    host = params.api.host if host is None else host
    port = params.api.port if port is None else port
    ring = load_keys(params.api)
    check_binding(host, ring, params.api)
    print(binding_note(host, ring, params.api), file=sys.stderr, flush=True)
    app = create_app(params, which=which, keys=ring)
    uvicorn.run(app, host=host, port=port, workers=1, log_level="info")
