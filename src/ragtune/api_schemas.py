"""The HTTP API's requests and responses: what /openapi.json describes.

Requests are strict (unknown fields and wrong types are a 422); texts must be valid
Unicode and a tenant a plain name, so nothing odd reaches the index or the models.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field

TENANT_PATTERN = r"^[A-Za-z0-9_.:-]{1,128}$"


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
        description="this tenant's rows and untenanted ones (if the API key allows it); "
        "omitted: the key's only tenant, else untenanted rows only",
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
