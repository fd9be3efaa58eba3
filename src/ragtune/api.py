"""`ragtune api`: search and answers over HTTP (FastAPI, served by one uvicorn worker).

One `Service` per process holds what every request shares: the index, the embedding model
and the sync state, opened at startup (or on first use), and the generator, loaded on the
first /ask. Requests that use the models run one at a time: their tokenizers are not
thread-safe, and one request already keeps every core busy. /healthz and /status never
wait for them.

Errors are one-line `detail`s: 422 for a request that breaks the schema (FastAPI's list of
problems), 400 for one that makes no sense (a blank question, a `RagtuneError` from
below), 503 when the index or a model cannot be loaded or reached. /docs (Swagger UI) and
/redoc load their JavaScript and CSS from the package's own copies under /_assets, never
from a CDN (`python -m ragtune.adapters.docs_assets fetch`; `make install` runs it).

    ragtune api --port 8000        # then open http://127.0.0.1:8000/docs
"""

from __future__ import annotations

import html
import logging
import math
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

from fastapi import FastAPI, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field

from ragtune import __version__
from ragtune.adapters import docs_assets
from ragtune.adapters.embeddings import Embedder
from ragtune.adapters.index.base import SearchFilter, VectorIndex
from ragtune.adapters.state import StateStore
from ragtune.answer import Answerer, load_generator
from ragtune.config import Params, load_params
from ragtune.errors import ConfigError, IndexStoreError, RagtuneError, TrackingError
from ragtune.search import SearchResult, as_of, search

log = logging.getLogger(__name__)

ASSETS_URL = "/_assets"
TENANT_PATTERN = r"^[A-Za-z0-9_.:-]{1,128}$"
# the docs pages may load nothing from elsewhere (inline script and styles are their own)
LOCAL_ONLY = (
    "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; worker-src 'self' blob:"
)
ECHO_CHARS = 200  # of a rejected input, in a 422's detail
UNREACHABLE = (IndexStoreError, TrackingError)  # RagtuneErrors that mean 503, not 400
T = TypeVar("T")


# -- request and response models ------------------------------------------------------------


def _unicode(value: str) -> str:
    """Text the models and the index can take: no lone surrogates (JSON allows them)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("must be valid Unicode text (no lone surrogates)") from None
    return value


def _integral(value: Any) -> Any:
    """JSON Schema counts 5.0 as an integer; strict pydantic would refuse it."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


Text = Annotated[str, AfterValidator(_unicode)]
SearchK = Annotated[int, Field(ge=1, le=100), BeforeValidator(_integral)]
AskK = Annotated[int, Field(ge=1, le=20), BeforeValidator(_integral)]
Tenant = Annotated[
    str,
    Field(
        min_length=1,
        max_length=128,
        pattern=TENANT_PATTERN,
        description="this tenant's rows and untenanted ones; omitted: untenanted rows only",
    ),
]
Mode = Literal["hybrid", "vector", "text"]


class SearchQuery(BaseModel):
    """GET /search query parameters."""

    model_config = ConfigDict(extra="forbid")

    q: Text = Field(min_length=1, max_length=2000, description="the query")
    k: SearchK | None = Field(None, description="results (default: search.k)")
    tenant: Tenant | None = None
    mode: Mode | None = Field(None, description="default: search.mode (hybrid)")


class SearchRequest(SearchQuery):
    """POST /search body."""

    model_config = ConfigDict(extra="forbid", strict=True)


class AskRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    question: Text = Field(min_length=1, max_length=2000)
    k: AskK | None = Field(None, description="retrieved chunks (default: search.k)")
    tenant: Tenant | None = None


class Health(BaseModel):
    status: Literal["ok"]


class Problem(BaseModel):
    detail: str = Field(description="what is wrong, on one line")


class Hit(BaseModel):
    source: str
    key: str
    chunk: int = Field(ge=0)
    score: float
    text: str
    metadata: dict[str, Any]


class SearchResponse(BaseModel):
    """The same JSON as `ragtune search --json`."""

    as_of: str | None = Field(
        json_schema_extra={"format": "date-time"},
        description="every searched source is known current up to here; null: never synced",
    )
    results: list[Hit]


class Citation(BaseModel):
    n: int = Field(ge=1, description="the [n] marker in the answer: the n-th retrieved chunk")
    source: str
    key: str
    chunk: int = Field(ge=0)
    score: float


class ModelInfo(BaseModel):
    name: str
    version: str | None


class Timings(BaseModel):
    retrieve_ms: float = Field(ge=0)
    generate_ms: float = Field(ge=0)


class AskResponse(BaseModel):
    question: str
    answer: str
    citations: list[Citation]
    as_of: str | None = Field(json_schema_extra={"format": "date-time"})
    model: ModelInfo
    timings: Timings
    attribution: Literal["model", "post-hoc", "none"] = Field(
        description="post-hoc: the model cited nothing; the closest source was cited for it"
    )


class StatusResponse(BaseModel):
    """The same JSON as `ragtune status --json`."""

    model_config = ConfigDict(extra="allow")

    sources: dict[str, dict[str, Any]]
    index: dict[str, Any]
    workspace: str
    quality: dict[str, Any]
    last_runs: list[dict[str, Any]]
    tracking_uri: str | None
    champion: dict[str, Any] | None
    model: dict[str, Any]


# -- the service ------------------------------------------------------------------------------


class Unavailable(Exception):
    """The index or a model cannot be loaded: 503."""


@dataclass(frozen=True)
class Retrieval:
    index: VectorIndex
    embedder: Embedder
    state: StateStore


class _SharedAnswerer(Answerer):
    """An `Answerer` over the service's open index, embedder and state: only the generator
    is loaded here."""

    def __init__(self, params: Params, parts: Retrieval, which: str) -> None:
        self.params = params
        self.index, self.embedder, self.state = parts.index, parts.embedder, parts.state
        self.generator = load_generator(params, which)


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
                self._answerer = _load(
                    "the generator model", lambda: _SharedAnswerer(self.params, parts, self.which)
                )
            return self._answerer

    def _open_retrieval(self) -> Retrieval:
        from ragtune.workspace import open_embedder, open_index, open_state

        embedder = open_embedder(self.params)
        embedder.encode(["warm up"])  # load the model now: a broken one is a 503, once
        return Retrieval(open_index(self.params), embedder, open_state(self.params))

    def search(self, request: SearchQuery) -> dict[str, Any]:
        parts = self.retrieval()
        where = SearchFilter(tuple(self.params.sources), (), request.tenant)
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

    def ask(self, request: AskRequest) -> dict[str, Any]:
        answerer = self.answerer()
        with self._models:
            return answerer.ask(request.question, request.k, request.tenant).to_json()

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


def create_app(
    params: Params, answerer: Answerer | None = None, which: str = "champion"
) -> FastAPI:
    """The API over one workspace; `answerer` (already loaded) is used as is, e.g. in tests."""
    service = Service(params, answerer, which)

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

    @app.get("/healthz", response_model=Health, tags=["service"])
    def healthz() -> dict[str, str]:
        """Liveness: answers without touching the index or the models."""
        return {"status": "ok"}

    @app.get("/status", response_model=StatusResponse, responses=PROBLEMS, tags=["service"])
    def status() -> dict[str, Any]:
        """Freshness per source, index size and version, the champion model, last runs."""
        from ragtune.status import collect_status

        return collect_status(params)

    @app.get("/search", response_model=SearchResponse, responses=PROBLEMS, tags=["search"])
    def search_get(query: Annotated[SearchQuery, Query()]) -> dict[str, Any]:
        """Hybrid (or vector, or full-text) retrieval over the index."""
        _not_blank(query.q, "q")
        return service.search(query)

    @app.post("/search", response_model=SearchResponse, responses=PROBLEMS, tags=["search"])
    def search_post(body: SearchRequest) -> dict[str, Any]:
        """The same as GET /search, with the parameters in a JSON body."""
        _not_blank(body.q, "q")
        return service.search(body)

    @app.post("/ask", response_model=AskResponse, responses=PROBLEMS, tags=["answer"])
    def ask(body: AskRequest) -> dict[str, Any]:
        """An answer by the champion model (the base model before the first promotion),
        citing the retrieved chunks as [n]. The first call loads the model."""
        _not_blank(body.question, "question")
        return service.ask(body)

    _add_docs(app)
    return app


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
    params_path: Path, host: str = "127.0.0.1", port: int = 8000, which: str = "champion"
) -> None:
    """Run the API with uvicorn, one worker (the models are loaded once, in this process)."""
    import uvicorn

    app = create_app(load_params(params_path), which=which)
    uvicorn.run(app, host=host, port=port, workers=1, log_level="info")
