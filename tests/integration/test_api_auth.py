"""API keys: a request reads what its key allows, never just the tenant it names.

A real workspace (SQLite source with rows of tenants a and b and untenanted rows, synced
into LanceDB) behind the app with keys from a keys file and from the environment; key
loading and the localhost-only rule are checked on their own.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from ragtune.adapters.index.base import SearchHit
from ragtune.answer import Answerer, Generator, load_generator
from ragtune.api import create_app
from ragtune.api_auth import KeyRing, Unauthorized, check_binding, load_keys
from ragtune.config import ApiConfig, Params, load_params
from ragtune.errors import ConfigError
from ragtune.workspace import open_index, open_state, open_syncs
from tests.support import create_database, create_documents, drop_database, write_params

TENANT = {1: "a", 2: "a", 3: "b", 4: "b"}  # 5 and 6: untenanted
TEXT = "zebra migration runbook"
KEYS = {name: secrets.token_urlsafe(24) for name in ("a", "ab", "all", "none", "hashed")}


def tenant_of(key: str) -> str | None:
    return TENANT.get(int(key))


@pytest.fixture(scope="module")
def params(
    tmp_path_factory: pytest.TempPathFactory, embedder: Any, tiny_base: Path
) -> Iterator[Params]:
    tmp = tmp_path_factory.mktemp("api-auth")
    db = create_database("sqlite", tmp)
    table = create_documents(db)
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    with db.engine.begin() as connection:
        connection.execute(
            table.insert(),
            [
                {
                    "id": key,
                    "title": f"Zebra notes {key}",
                    "body": f"The {TEXT} of row {key}.",
                    "tenant": TENANT.get(key),
                    "deleted": 0,
                    "updated_at": now,
                }
                for key in range(1, 7)
            ],
        )
    path = write_params(
        tmp / "ws",
        db.url,
        capture="cursor",
        extra=f'train:\n  base_model: "{tiny_base}"\n  device: cpu\n'
        "evaluate:\n  max_new_tokens: 4\ntracking:\n  trace_answers: false\n",
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
    return load_generator(params, "base")  # read-only: shared by this module's answerers


@pytest.fixture
def answerer(params: Params, embedder: Any, generator: Generator) -> Answerer:
    """A fresh answerer per test over the module's workspace (nothing carries over)."""
    return Answerer.over(params, open_index(params), embedder, open_state(params), generator)


@pytest.fixture
def ring(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> KeyRing:
    """Keys from a file (one from the environment by name, one stored as its digest) and
    from RAGTUNE_API_KEYS."""
    monkeypatch.setenv("TEAM_A_KEY", KEYS["a"])
    digest = hashlib.sha256(KEYS["hashed"].encode()).hexdigest()
    keys_file = tmp_path / "keys.yaml"
    keys_file.write_text(
        "team-a:\n  key: ${TEAM_A_KEY}\n  tenants: [a]\n"
        f"hashed-b:\n  key: sha256:{digest}\n  tenants: [b]\n"
    )
    monkeypatch.setenv("RAGTUNE_API_KEYS", f"{KEYS['ab']}=a,b\n{KEYS['all']}=* {KEYS['none']}=")
    return load_keys(ApiConfig(keys_file=keys_file))


@pytest.fixture
def client(params: Params, answerer: Answerer, ring: KeyRing) -> Iterator[TestClient]:
    with TestClient(create_app(params, answerer, keys=ring)) as opened:
        yield opened


def bearer(name: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {KEYS[name]}"}


def searched(client: TestClient, name: str, tenant: str | None = None) -> set[str | None]:
    """The tenants of what a search with this key found (asserting it found something)."""
    body = {"q": TEXT, "k": 10} | ({"tenant": tenant} if tenant else {})
    response = client.post("/search", json=body, headers=bearer(name))
    assert response.status_code == 200, response.text
    hits = response.json()["results"]
    assert hits, response.text
    return {tenant_of(hit["key"]) for hit in hits}


def test_keys_come_from_the_file_and_the_environment(ring: KeyRing) -> None:
    found = {key.name: set(key.tenants) for key in ring.keys}
    assert found == {
        "team-a": {"a"},
        "hashed-b": {"b"},
        "RAGTUNE_API_KEYS #1": {"a", "b"},
        "RAGTUNE_API_KEYS #2": {"*"},
        "RAGTUNE_API_KEYS #3": set(),
    }
    assert ring.identify(KEYS["hashed"]).name == "hashed-b"
    assert ring.identify(KEYS["ab"]).name == "RAGTUNE_API_KEYS #1"
    for wrong in ("", KEYS["a"] + "x", KEYS["a"][:-1], "sha256:" + "0" * 64):
        with pytest.raises(Unauthorized):
            ring.identify(wrong)


def test_healthz_needs_no_key(client: TestClient) -> None:
    assert client.get("/healthz").status_code == 200


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong-key-of-enough-length"},
        {"Authorization": f"Basic {KEYS['a']}"},
        {"Authorization": "Bearer "},
        {"Authorization": f"Bearer {KEYS['a']}x"},
        {"X-Api-Key": KEYS["a"]},
    ],
)
def test_no_known_key_is_401(client: TestClient, headers: dict[str, str]) -> None:
    calls = [
        ("GET", "/search", {"params": {"q": TEXT, "tenant": "a"}}),
        ("POST", "/search", {"json": {"q": TEXT}}),
        ("POST", "/ask", {"json": {"question": TEXT, "tenant": "b"}}),
        ("GET", "/status", {}),
        ("POST", "/ask", {"json": {"question": 42}}),  # 401 before the body is judged
    ]
    for method, path, kwargs in calls:
        response = client.request(method, path, headers=headers, **kwargs)
        assert response.status_code == 401, (method, path, response.text)
        assert response.headers["www-authenticate"] == "Bearer"
        detail = response.json()["detail"]
        assert isinstance(detail, str) and "\n" not in detail
        assert KEYS["a"] not in detail


def test_a_key_reads_only_its_tenants(client: TestClient) -> None:
    # one tenant: a request naming none reads that one; naming another is refused
    assert searched(client, "a") == {"a", None}
    assert searched(client, "a", "a") == {"a", None}
    refused = client.post("/search", json={"q": TEXT, "tenant": "b"}, headers=bearer("a"))
    assert refused.status_code == 403, refused.text
    assert "'b'" in refused.json()["detail"] and "\n" not in refused.json()["detail"]
    assert (
        client.get("/search", params={"q": TEXT, "tenant": "b"}, headers=bearer("a")).status_code
        == 403
    )
    # the digest-stored key is bound to b
    assert searched(client, "hashed") == {"b", None}
    # two tenants: either when named, untenanted rows only when none is
    assert searched(client, "ab", "b") == {"b", None}
    assert searched(client, "ab", "a") == {"a", None}
    assert searched(client, "ab") == {None}
    assert (
        client.post("/search", json={"q": TEXT, "tenant": "c"}, headers=bearer("ab")).status_code
        == 403
    )
    # "*": any tenant; no tenants: untenanted rows only
    assert searched(client, "all", "b") == {"b", None}
    assert searched(client, "none") == {None}
    assert (
        client.post("/search", json={"q": TEXT, "tenant": "a"}, headers=bearer("none")).status_code
        == 403
    )


def test_ask_retrieves_for_the_key_not_the_request(
    client: TestClient, answerer: Answerer, monkeypatch: pytest.MonkeyPatch
) -> None:
    tenants: list[str | None] = []
    retrieved: list[SearchHit] = []
    original = answerer.retrieve

    def spy(question: str, k: int | None, tenant: str | None) -> list[SearchHit]:
        tenants.append(tenant)
        hits = original(question, k, tenant)
        retrieved.extend(hits)
        return hits

    monkeypatch.setattr(answerer, "retrieve", spy)
    refused = client.post("/ask", json={"question": TEXT, "tenant": "a"}, headers=bearer("hashed"))
    assert refused.status_code == 403, refused.text
    assert tenants == []  # refused before anything was retrieved
    response = client.post("/ask", json={"question": TEXT, "k": 6}, headers=bearer("hashed"))
    assert response.status_code == 200, response.text
    assert tenants == ["b"]
    assert retrieved
    assert {tenant_of(hit.key) for hit in retrieved} == {"b", None}


def test_status_needs_a_key(client: TestClient) -> None:
    assert client.get("/status").status_code == 401
    assert client.get("/status", headers=bearer("none")).status_code == 200


def test_openapi_declares_bearer_keys(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    schemes = spec["components"]["securitySchemes"]
    assert [s["scheme"].lower() for s in schemes.values()] == ["bearer"]
    for path in ("/search", "/ask", "/status"):
        for operation in spec["paths"][path].values():
            assert operation.get("security"), path
            assert {"401", "403"} <= set(operation["responses"]), path
    assert "security" not in spec["paths"]["/healthz"]["get"]


def test_the_app_reads_keys_from_params_and_environment(
    params: Params, answerer: Answerer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RAGTUNE_API_KEYS", f"{KEYS['a']}=a")
    with TestClient(create_app(params, answerer)) as client:
        assert client.post("/search", json={"q": TEXT, "tenant": "b"}).status_code == 401
        assert searched(client, "a") == {"a", None}


def test_without_keys_a_request_names_its_tenant(
    params: Params, answerer: Answerer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("RAGTUNE_API_KEYS", raising=False)
    with TestClient(create_app(params, answerer)) as client:
        response = client.post("/search", json={"q": TEXT, "k": 10, "tenant": "b"})
        assert response.status_code == 200
        assert {tenant_of(hit["key"]) for hit in response.json()["results"]} == {"b", None}


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "localhost", "::1", "[::1]"])
def test_loopback_serves_without_keys(host: str) -> None:
    check_binding(host, KeyRing(), ApiConfig())


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.20", "api.example.com", ""])
def test_other_hosts_need_keys(host: str, ring: KeyRing) -> None:
    with pytest.raises(ConfigError, match=r"api\.keys_file") as refused:
        check_binding(host, KeyRing(), ApiConfig())
    assert "\n" not in str(refused.value)
    check_binding(host, ring, ApiConfig())  # with keys: fine


SECRET = "s3cret-" + "x" * 20
BAD_KEYS_FILES = [  # (keys file text, environment, what the one-line error says)
    (f"bot:\n  key: {SECRET}\n  tenants: [a]\n", {}, "written in the file"),
    ("bot:\n  key: ${NOT_SET_ANYWHERE}\n  tenants: [a]\n", {}, "NOT_SET_ANYWHERE is not set"),
    ("bot:\n  key: ${SHORT}\n  tenants: [a]\n", {"SHORT": "abc"}, "16 to 512"),
    ("bot:\n  key: ${K}\n  tenants: [a b]\n", {"K": SECRET}, "not a tenant name"),
    ("bot:\n  key: ${K}\n", {"K": SECRET}, "bot.tenants"),
    ("bot:\n  key: ${K}\n  tenants: [a]\n  role: admin\n", {"K": SECRET}, "bot.role"),
    (
        "one:\n  key: ${K}\n  tenants: [a]\ntwo:\n  key: ${K}\n  tenants: [b]\n",
        {"K": SECRET},
        "same key",
    ),
    ("- a\n- b\n", {}, "top level"),
    ("x: &k {key: '${K}', tenants: [a]}\ny: *k\n", {"K": SECRET}, "aliases"),
    ("bot: [unclosed\n", {}, "not valid YAML"),
]


@pytest.mark.parametrize(("text", "environ", "says"), BAD_KEYS_FILES)
def test_bad_keys_file_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str, environ: dict[str, str], says: str
) -> None:
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("RAGTUNE_API_KEYS", raising=False)
    keys_file = tmp_path / "keys.yaml"
    keys_file.write_text(text)
    with pytest.raises(ConfigError) as refused:
        load_keys(ApiConfig(keys_file=keys_file))
    message = str(refused.value)
    assert says in message, message
    assert "\n" not in message
    assert SECRET not in message


@pytest.mark.parametrize(
    ("value", "says"),
    [
        (SECRET, "names no tenants"),
        (f"{SECRET}=a/b", "not a tenant name"),
        ("short=a", "16 to 512"),
        (f"{SECRET}=a {SECRET}=b", "same key"),
    ],
)
def test_bad_environment_keys_are_one_line(value: str, says: str) -> None:
    with pytest.raises(ConfigError) as refused:
        load_keys(ApiConfig(), {"RAGTUNE_API_KEYS": value})
    message = str(refused.value)
    assert says in message, message
    assert "\n" not in message
    assert SECRET not in message


def test_missing_keys_file_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"api\.keys_file .* not found"):
        load_keys(ApiConfig(keys_file=tmp_path / "absent.yaml"), {})


def test_keys_file_path_resolves_against_the_params_folder(tmp_path: Path) -> None:
    (tmp_path / "params.yaml").write_text("api:\n  keys_file: secrets/keys.yaml\n  port: 8100\n")
    loaded = load_params(tmp_path / "params.yaml")
    assert Path(loaded.api.keys_file or "") == tmp_path.resolve() / "secrets" / "keys.yaml"
    assert loaded.api.port == 8100
