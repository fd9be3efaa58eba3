"""The HTTP API over a real workspace: a SQLite source with tenanted rows synced into
LanceDB, a tiny model as generator that answers every question with "[1]" (so answers
have citations). Tenant isolation, the answer's shape, 4xx (never 5xx) for bad input,
offline /docs, and a schemathesis run against the app's own OpenAPI spec.

The workspace and the loaded generator are shared by the module (nothing changes them);
each test gets its own answerer, app and client, so no test sees another's state. API
keys are tested in test_api_auth.py; here the app has none (a request names its tenant)."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.config import SchemathesisConfig

from ragtune.adapters import docs_assets
from ragtune.adapters.index.base import SearchHit
from ragtune.answer import Answerer, Generator, load_generator
from ragtune.api import create_app
from ragtune.api_auth import KeyRing
from ragtune.config import EmbeddingsConfig, Params, load_params
from ragtune.errors import ConfigError
from ragtune.workspace import open_index, open_state, open_syncs
from tests.support import create_database, create_documents, drop_database, write_params

TENANT = {1: "a", 2: "a", 3: "a", 4: "b", 5: "b", 6: "b"}  # the other rows: untenanted
BODIES = {
    1: ("Team A onboarding", "Team A keeps its onboarding checklist in the wiki."),
    2: ("Team A budget", "The alpha budget for team A is reviewed every quarter."),
    3: ("Team A zebra notes", "Team A has no zebra migration runbook of its own."),
    4: ("Zebra migration runbook", "How team B runs the zebra migration: runbook steps."),
    5: ("Zebra migration rollback", "Rolling back a zebra migration in team B's databases."),
    6: ("Team B secrets", "Team B rotates its zebra migration credentials monthly."),
    7: ("Database migrations", "Run migrations with the migrate command before deploying."),
    8: ("Caching", "The cache framework stores rendered pages for a configurable time."),
    9: ("Custom fields", "Add a custom field to a model form by declaring it on the form."),
    10: ("Security releases", "Security releases fix vulnerabilities; upgrade promptly."),
    11: ("Unicode", "Grüße aus 東京: text in every script is indexed 🙂."),
    12: ("Logging", "Configure logging with a dictionary of handlers and loggers."),
}
QUERY = "zebra migration runbook"
NO_KEYS = KeyRing()  # whatever RAGTUNE_API_KEYS the environment holds


def tenant_of(key: str) -> str | None:
    return TENANT.get(int(key))


@pytest.fixture(scope="module")
def params(
    tmp_path_factory: pytest.TempPathFactory, embedder: Any, citing_model: Path
) -> Iterator[Params]:
    tmp = tmp_path_factory.mktemp("api")
    base = citing_model  # answers every question with "[1]"
    db = create_database("sqlite", tmp)
    table = create_documents(db)
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    rows = [
        {
            "id": key,
            "title": title,
            "body": body,
            "section": "howto",
            "tenant": TENANT.get(key),
            "deleted": 0,
            "updated_at": now,
        }
        for key, (title, body) in BODIES.items()
    ]
    with db.engine.begin() as connection:
        connection.execute(table.insert(), rows)
    path = write_params(
        tmp / "ws",
        db.url,
        capture="cursor",
        extra=f'train:\n  base_model: "{base}"\n  device: cpu\n'
        "evaluate:\n  max_new_tokens: 8\n"
        "tracking:\n  trace_answers: false\n",  # traced answers: test_api_champion.py
        quality="quality:\n  enabled: false\n",
    )
    loaded = load_params(path)
    for sync in open_syncs(loaded, embedder=embedder):
        try:
            sync.run()
        finally:
            sync.source.close()
    yield loaded
    drop_database(db)


@pytest.fixture(scope="module")
def generator(params: Params) -> Generator:
    return load_generator(params, "base")  # read-only: shared by the module's answerers


@pytest.fixture
def answerer(params: Params, embedder: Any, generator: Generator) -> Answerer:
    """This test's own answerer, over the session's embedding model (already loaded)."""
    return Answerer.over(params, open_index(params), embedder, open_state(params), generator)


@pytest.fixture
def app(params: Params, answerer: Answerer) -> FastAPI:
    return create_app(params, answerer, keys=NO_KEYS)


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app) as opened:  # its shutdown closes this test's index
        yield opened


def test_healthz(client: TestClient) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_search_returns_results_with_as_of(client: TestClient) -> None:
    got = client.get("/search", params={"q": "database migrations", "k": 3})
    assert got.status_code == 200, got.text
    body = got.json()
    assert set(body) == {"as_of", "results"}
    assert dt.datetime.fromisoformat(body["as_of"]) <= dt.datetime.now(dt.UTC)
    assert 1 <= len(body["results"]) <= 3
    assert body["results"][0]["key"] == "7"
    for hit in body["results"]:
        assert set(hit) == {"source", "key", "chunk", "score", "text", "metadata"}
        assert tenant_of(hit["key"]) is None  # no tenant asked: untenanted rows only
    posted = client.post("/search", json={"q": "database migrations", "k": 3})
    assert posted.status_code == 200
    assert posted.json() == body
    for mode in ("vector", "text"):
        one = client.get("/search", params={"q": "database migrations", "mode": mode})
        assert one.status_code == 200
        assert one.json()["results"][0]["key"] == "7"


def test_tenant_isolation_in_search(client: TestClient) -> None:
    for mode in ("hybrid", "vector", "text"):
        own = client.post("/search", json={"q": QUERY, "k": 12, "tenant": "b", "mode": mode})
        assert {tenant_of(h["key"]) for h in own.json()["results"]} >= {"b"}  # findable
        other = client.post("/search", json={"q": QUERY, "k": 12, "tenant": "a", "mode": mode})
        seen = {tenant_of(h["key"]) for h in other.json()["results"]}
        assert "b" not in seen, (mode, other.json())
        assert seen <= {"a", None}
    unknown = client.get("/search", params={"q": QUERY, "k": 12, "tenant": "nobody"})
    assert {tenant_of(h["key"]) for h in unknown.json()["results"]} == {None}


def test_tenant_isolation_in_ask(
    client: TestClient, answerer: Answerer, monkeypatch: pytest.MonkeyPatch
) -> None:
    retrieved: list[SearchHit] = []
    original = answerer.retrieve

    def spy(question: str, k: int | None, tenant: str | None) -> list[SearchHit]:
        hits = original(question, k, tenant)
        retrieved.extend(hits)
        return hits

    monkeypatch.setattr(answerer, "retrieve", spy)
    response = client.post("/ask", json={"question": QUERY, "k": 12, "tenant": "a"})
    assert response.status_code == 200, response.text
    assert retrieved
    assert {tenant_of(h.key) for h in retrieved} <= {"a", None}
    citations = response.json()["citations"]
    assert citations
    assert all(tenant_of(c["key"]) != "b" for c in citations)
    assert {c["key"] for c in citations} <= {h.key for h in retrieved}


def test_ask_shape(client: TestClient) -> None:
    response = client.post("/ask", json={"question": "How do I run database migrations?", "k": 4})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["question"] == "How do I run database migrations?"
    assert isinstance(body["answer"], str)
    assert body["answer"] == "[1]"
    assert body["attribution"] == "model"
    assert body["citations"]
    for citation in body["citations"]:
        assert set(citation) == {"n", "source", "key", "chunk", "score"}
        assert 1 <= citation["n"] <= 4
        assert citation["source"] == "docs"
    assert dt.datetime.fromisoformat(body["as_of"])
    assert body["model"]["name"].startswith("base:")
    assert "version" in body["model"]
    assert set(body["timings"]) == {"retrieve_ms", "generate_ms"}
    assert all(v >= 0 for v in body["timings"].values())


BAD_REQUESTS = [  # (method, path, request kwargs, expected status)
    ("GET", "/search", {"params": {"q": "x", "k": 0}}, 422),
    ("GET", "/search", {"params": {"q": "x", "k": 10**6}}, 422),
    ("GET", "/search", {"params": {"q": "x", "k": "five"}}, 422),
    ("GET", "/search", {"params": {"q": "x", "mode": "fuzzy"}}, 422),
    ("GET", "/search", {"params": {"q": "x", "tenant": "a b"}}, 422),
    ("GET", "/search", {"params": {"q": "x", "tenant": "x" * 129}}, 422),
    ("GET", "/search", {"params": {}}, 422),
    ("GET", "/search", {"params": {"q": ""}}, 422),
    ("GET", "/search", {"params": {"q": "   "}}, 400),
    ("GET", "/search", {"params": {"q": "x" * 2001}}, 422),
    ("POST", "/search", {"json": {"q": "x", "k": "5"}}, 422),
    ("POST", "/search", {"json": {"q": "x", "extra": 1}}, 422),
    ("POST", "/search", {}, 422),
    ("POST", "/ask", {"json": {"question": "x", "k": 0}}, 422),
    ("POST", "/ask", {"json": {"question": "x", "k": 21}}, 422),
    ("POST", "/ask", {"json": {"question": "x", "k": 10**6}}, 422),
    ("POST", "/ask", {"json": {"question": "x", "k": 10**40}}, 422),
    ("POST", "/ask", {"json": {"question": "x", "k": 2.5}}, 422),
    ("POST", "/ask", {"json": {"question": "x", "k": True}}, 422),
    ("POST", "/ask", {"json": {"question": ""}}, 422),
    ("POST", "/ask", {"json": {"question": " \n\t "}}, 400),
    ("POST", "/ask", {"json": {"question": "x" * 5000}}, 422),
    ("POST", "/ask", {"json": {"question": "x", "tenant": "a/b"}}, 422),
    ("POST", "/ask", {"json": {"question": "x", "tenant": "a'; DROP"}}, 422),
    ("POST", "/ask", {"json": {"question": "x", "tenant": ""}}, 422),
    ("POST", "/ask", {"json": {"question": 42}}, 422),
    ("POST", "/ask", {"json": {"question": ["x"]}}, 422),
    ("POST", "/ask", {"json": {"q": "x"}}, 422),
    ("POST", "/ask", {"json": ["x"]}, 422),
    ("POST", "/ask", {"json": None}, 422),
    ("POST", "/ask", {}, 422),
    ("POST", "/ask", {"content": b"question=x", "headers": {"content-type": "text/plain"}}, 422),
    (
        "POST",
        "/ask",
        {"content": b"{not json", "headers": {"content-type": "application/json"}},
        422,
    ),
    (
        "POST",
        "/ask",
        {"content": b'{"question": "\\ud800"}', "headers": {"content-type": "application/json"}},
        422,
    ),
    (
        "POST",
        "/ask",
        {
            "content": b'{"question": "x", "k": NaN}',
            "headers": {"content-type": "application/json"},
        },
        422,
    ),
    (
        "POST",
        "/ask",
        {"content": b"\xff\xfe", "headers": {"content-type": "application/json"}},
        422,
    ),
    ("GET", "/ask", {}, 405),
    ("DELETE", "/search", {}, 405),
]


@pytest.mark.parametrize(("method", "path", "kwargs", "status"), BAD_REQUESTS)
def test_bad_input_is_4xx(
    client: TestClient, method: str, path: str, kwargs: dict[str, Any], status: int
) -> None:
    response = client.request(method, path, **kwargs)
    assert response.status_code == status, response.text
    detail = response.json()["detail"]
    if status == 400:
        assert isinstance(detail, str)
        assert "\n" not in detail


@pytest.mark.parametrize(
    "text",
    ["NUL\x00byte", "Grüße 東京 🙂", "\u202e\u200bzero width", "' OR '1'='1", '\\"[]{}*?~:^'],
)
def test_odd_text_is_answered(client: TestClient, text: str) -> None:
    for mode in ("hybrid", "text"):
        assert client.get("/search", params={"q": text, "mode": mode}).status_code == 200
    assert client.post("/ask", json={"question": text, "k": 1}).status_code == 200


def test_encoded_surrogate_in_query_is_replaced(client: TestClient) -> None:
    assert client.get("/search?q=%ed%a0%80%00x").status_code == 200


def test_concurrent_requests_share_the_models(client: TestClient) -> None:
    def one(i: int) -> int:
        if i % 2:
            return client.post("/ask", json={"question": f"migrations {i}", "k": 2}).status_code
        return client.get("/search", params={"q": f"cache {i}"}).status_code

    with ThreadPoolExecutor(max_workers=6) as pool:
        assert set(pool.map(one, range(12))) == {200}


def test_errors_from_below_are_one_line_400(
    app: FastAPI, client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise ConfigError("no such thing; fix it\nsecond line")

    monkeypatch.setattr(app.state.service, "search", refuse)
    response = client.get("/search", params={"q": "x"})
    assert response.status_code == 400
    assert response.json() == {"detail": "no such thing; fix it"}


def test_unloadable_model_is_503(params: Params) -> None:
    broken = params.model_copy(update={"embeddings": EmbeddingsConfig(model="/nonexistent/model")})
    with TestClient(create_app(broken, keys=NO_KEYS)) as client:  # startup survives it
        assert client.get("/healthz").status_code == 200
        response = client.get("/search", params={"q": "x"})
        assert response.status_code == 503
        assert "cannot load" in response.json()["detail"]
        assert client.post("/ask", json={"question": "x"}).status_code == 503


def test_status(client: TestClient) -> None:
    response = client.get("/status")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["sources"]["docs"]["documents"] == len(BODIES)
    assert body["index"]["backend"] == "lancedb"


LOCAL_URL = re.compile(r"""<(?:script|link)\b[^>]*?\b(?:src|href)=["']([^"']+)["']""", re.I)


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_docs_load_only_local_assets(client: TestClient, page: str) -> None:
    assert docs_assets.api_docs_files() is not None, (
        "API docs assets missing: run `make install` (it fetches them from npm)"
    )
    response = client.get(page)
    assert response.status_code == 200
    urls = LOCAL_URL.findall(response.text)
    assert len(urls) >= (3 if page == "/docs" else 2), response.text
    for url in urls:
        assert url.startswith("/_assets/"), url
        assert client.get(url).status_code == 200, url
    tags = re.findall(r"<(?:script|link)\b[^>]*>", response.text, re.I)
    assert not [t for t in tags if "http" in t.lower() or "cdn" in t.lower()], tags
    assert "/openapi.json" in response.text
    assert "default-src 'self'" in response.headers["content-security-policy"]


def test_docs_without_assets_say_how_to_fetch_them(
    params: Params, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(docs_assets, "ASSETS", tmp_path / "missing")
    client = TestClient(create_app(params, keys=NO_KEYS))
    for page in ("/docs", "/redoc"):
        response = client.get(page)
        assert response.status_code == 200
        assert "make install" in response.text
        assert "http" not in response.text


def test_openapi_is_valid_and_precise(app: FastAPI, client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    schemathesis.openapi.from_dict(spec).validate()  # against the OpenAPI meta-schema
    paths = spec["paths"]
    assert set(paths) == {"/healthz", "/status", "/search", "/ask"}
    assert set(paths["/search"]) == {"get", "post"}
    for path, operations in paths.items():
        for method, operation in operations.items():
            ok = operation["responses"]["200"]["content"]["application/json"]["schema"]
            assert "$ref" in ok, (method, path)
            if path not in ("/healthz",):
                assert {"400", "503"} <= set(operation["responses"]), (method, path)
    ask = spec["components"]["schemas"]["AskRequest"]
    assert ask["properties"]["question"]["maxLength"] == 2000
    assert ask["additionalProperties"] is False


# -- schemathesis -------------------------------------------------------------------------
# Hypothesis cases drawn from each operation's strategy (`schema.parametrize()` with
# `schemathesis.pytest.from_fixture` breaks on pytest 9.2: it sets `Function._nodeid`).

OPERATIONS = [
    ("GET", "/healthz"),
    ("GET", "/status"),
    ("GET", "/search"),
    ("POST", "/search"),
    ("POST", "/ask"),
]
WITH_INPUT = {("GET", "/search"), ("POST", "/search"), ("POST", "/ask")}


@pytest.fixture
def api_schema(app: FastAPI) -> Any:
    # a schema-valid request gets 2xx, or 400 when its text is blank after stripping
    checks = {"positive_data_acceptance": {"expected-statuses": ["2xx", "400"]}}
    config = SchemathesisConfig.from_dict({"checks": checks})
    return schemathesis.openapi.from_asgi("/openapi.json", app, config=config)


def test_schemathesis_sees_every_operation(api_schema: Any) -> None:
    found = {(o.method.upper(), o.path) for o in (r.ok() for r in api_schema.get_all_operations())}
    assert found == set(OPERATIONS)


@pytest.mark.parametrize(
    ("method", "path", "mode"),
    [(m, p, GenerationMode.POSITIVE) for m, p in OPERATIONS]
    + [(m, p, GenerationMode.NEGATIVE) for m, p in OPERATIONS if (m, p) in WITH_INPUT],
)
def test_schemathesis(api_schema: Any, method: str, path: str, mode: GenerationMode) -> None:
    operation = api_schema[path][method]

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=20,
        deadline=None,
        database=None,
        derandomize=True,  # the same cases on every run: CI stays repeatable
        suppress_health_check=list(HealthCheck),
    )
    def check(case: Any) -> None:
        # every built-in check: not_a_server_error, status code, content type, response
        # schema and headers conformance, positive data accepted, negative data rejected
        case.call_and_validate()

    check()
