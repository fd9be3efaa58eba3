"""`ragtune ask`: hybrid retrieval, a fenced prompt with numbered sources, generation by
the champion model (the base model when there is none), and an answer citing [n].

The model and index are loaded once per `Answerer` (the CLI makes one per command, the
HTTP API one per process). Citations are only ever the retrieved chunks: markers the
model invents beyond them are removed. When the model cites nothing, the answer is
attributed after the fact to the source it overlaps most (and says so: `attribution`
is `post-hoc`). Each answer is traced to MLflow (retrieve and generate spans) when
tracking is on.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import re
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ragtune.adapters.index.base import SearchFilter, SearchHit
from ragtune.config import Params
from ragtune.core.injection import REFUSAL, guard_answer
from ragtune.core.metrics import citations, token_f1
from ragtune.core.prompts import chat, source_text
from ragtune.errors import ConfigError
from ragtune.search import as_of as search_as_of
from ragtune.search import search

if TYPE_CHECKING:
    from ragtune.adapters.embeddings import Embedder
    from ragtune.adapters.index.base import VectorIndex
    from ragtune.adapters.models import Generation
    from ragtune.adapters.state import StateStore

MIN_ATTRIBUTION_F1 = 0.1
CITATION = re.compile(r"\s*\[(\d{1,3})\]")
GUARD_ANSWERS = True  # drop sentences that follow instructions planted in sources


@dataclass
class Answer:
    question: str
    answer: str
    citations: list[dict[str, Any]]
    as_of: dt.datetime | None
    model: dict[str, Any]
    timings: dict[str, float]
    attribution: str = "model"
    sources: list[SearchHit] = field(default_factory=list)
    trace_id: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "question": self.question,
            "answer": self.answer,
            "citations": self.citations,
            "as_of": self.as_of.isoformat() if self.as_of else None,
            "model": self.model,
            "timings": self.timings,
            "attribution": self.attribution,
        }


@dataclass
class Generator:
    """A loaded causal LM (base, or base + adapter) with its name and version."""

    name: str
    version: str | None
    model: Any
    tokenizer: Any
    device: str
    bf16: bool
    batch_size: int = 8  # questions generated together by `generate`
    adapter: Path | None = None  # the LoRA adapter merged into the base weights, if any

    def generate(
        self,
        chats: list[list[dict[str, str]]],
        max_new_tokens: int,
        batch_size: int | None = None,
    ) -> list[str]:
        """Greedy answers in the order asked, generated in length-sorted batches."""
        return self.generate_timed(chats, max_new_tokens, batch_size).texts

    def generate_timed(
        self,
        chats: list[list[dict[str, str]]],
        max_new_tokens: int,
        batch_size: int | None = None,
    ) -> Generation:
        """As `generate`, with prompt and generated token counts and prefill/decode times."""
        from ragtune.adapters.models import generate_timed

        return generate_timed(
            self.model,
            self.tokenizer,
            chats,
            max_new_tokens,
            batch_size or self.batch_size,
            self.device,
            self.bf16,
        )


def load_generator(
    params: Params, which: str = "champion", version: str | None = None
) -> Generator:
    """The champion's adapter on the base model; the base alone when asked or when none.
    `version` loads that registered version instead of the champion. With bf16 chosen
    (`train.precision`), the weights are held in bf16 after merging the adapter in float32."""
    from ragtune.adapters.models import load_model, load_tokenizer, pick_device, use_bf16
    from ragtune.stages import open_registry
    from ragtune.stages.train import base_folder

    if which not in ("champion", "base"):
        raise ConfigError(f"--model {which!r}: choose champion or base")
    base = base_folder(params)
    device = pick_device(params.train.device)
    bf16 = use_bf16(params.train.precision, device)
    adapter = None
    tracker = open_registry(params) if version is not None or which == "champion" else None
    if tracker is None and version is not None:
        raise ConfigError(f"model version {version}: no model registry at {params.tracking_uri()}")
    if tracker is not None and version is None:
        champion = tracker.champion()
        version = None if champion is None else str(champion["version"])
    if tracker is not None and version is not None:
        adapter = _registered_adapter(tracker, params, version)
    model = load_model(base, device, adapter, bf16=bf16)
    return Generator(
        "ragtune-generator" if adapter else f"base:{params.train.base_model}",
        version,
        model,
        load_tokenizer(base),
        device,
        bf16,
        params.evaluate.batch_size,
        adapter,
    )


def raft_version(params: Params) -> str | None:
    """The newest registered version trained on RAFT examples, or None."""
    from ragtune.stages import open_registry

    tracker = open_registry(params)
    for found in tracker.versions() if tracker is not None else []:
        if found["tags"].get("ragtune.rag_context") == "raft":
            return str(found["version"])
    return None


def _registered_adapter(tracker: Any, params: Params, version: str) -> Path:
    """A registered version's adapter, downloaded once into the workspace (per version)."""
    folder = params.workspace.path / "models" / f"version-{version}"
    if not (folder / "adapter" / "adapter_config.json").is_file():
        if folder.exists():
            shutil.rmtree(folder)
        folder.mkdir(parents=True)
        tracker.download(version, folder)
    return folder / "adapter"


class Answerer:
    """Retrieval + generation, loaded once; `ask` answers one question."""

    def __init__(self, params: Params, which: str = "champion"):
        from ragtune.workspace import open_embedder, open_index, open_state

        self._hold(
            params,
            open_index(params),
            open_embedder(params),
            open_state(params),
            load_generator(params, which),
        )

    @classmethod
    def over(
        cls,
        params: Params,
        index: VectorIndex,
        embedder: Embedder,
        state: StateStore,
        generator: Generator,
    ) -> Answerer:
        """An `Answerer` over parts already open (the HTTP API shares its index, embedder
        and state between search and answers); tracing works as in one opened here."""
        answerer = cls.__new__(cls)
        answerer._hold(params, index, embedder, state, generator)
        return answerer

    def _hold(
        self,
        params: Params,
        index: VectorIndex,
        embedder: Embedder,
        state: StateStore,
        generator: Generator,
    ) -> None:
        """Every attribute an `Answerer` has, set in one place for both constructors."""
        self.params = params
        self.index = index
        self.embedder = embedder
        self.state = state
        self.generator = generator
        self.tracer: Any = None  # AnswerTracer, opened on the first traced answer

    def retrieve(self, question: str, k: int | None, tenant: str | None) -> list[SearchHit]:
        from ragtune.index_health import verify

        verify(self.params, self.index, self.state, self.params.sources)  # damage: one error
        where = SearchFilter(tuple(self.params.sources), (), tenant)
        return search(self.index, self.embedder, question, self.params.search, where, k=k)

    def ask(self, question: str, k: int | None = None, tenant: str | None = None) -> Answer:
        question = question.strip()
        if not question:
            raise ConfigError(
                "the question is empty; ask something, e.g. ragtune ask 'How do I …?'"
            )
        tracer = self._tracer()
        if tracer is None:
            return self._answer(question, k, tenant, _no_span)
        with tracer.span("ask", "CHAIN", {"question": question, "k": k, "tenant": tenant}) as root:
            answer = self._answer(question, k, tenant, tracer.span)
            root.set_outputs(answer.to_json())
        answer.trace_id = tracer.last_trace_id()
        return answer

    def _tracer(self) -> Any:
        if not self.params.tracking.trace_answers:
            return None
        if self.tracer is None:
            from ragtune.adapters.tracking import AnswerTracer
            from ragtune.stages import open_tracker

            self.tracer = AnswerTracer(open_tracker(self.params))
        return self.tracer

    def prompt(self, question: str, hits: list[SearchHit]) -> list[dict[str, str]]:
        """The chat the generator is asked: the one builder training and evaluation use."""
        return chat(question, hits, self.params.build_dataset)

    def _answer(self, question: str, k: int | None, tenant: str | None, span: Any) -> Answer:
        started = time.perf_counter()
        with span("retrieve", "RETRIEVER", {"query": question, "k": k, "tenant": tenant}) as s:
            hits = self.retrieve(question, k, tenant)
            s.set_outputs([{"source": h.source, "key": h.key, "score": h.score} for h in hits])
        retrieved = time.perf_counter()
        prompt = self.prompt(question, hits)
        model = {"name": self.generator.name, "version": self.generator.version}
        with span("generate", "LLM", {"messages": prompt, "model": model}) as s:
            raw = self.generator.generate([prompt], self.params.evaluate.max_new_tokens)[0]
            s.set_outputs({"text": raw})
        generated = time.perf_counter()
        if GUARD_ANSWERS:
            raw = guard_answer(raw, [f"{source_text(h).title}\n{h.text}" for h in hits])
        text, cited, attribution = (
            cite(raw, [h.text for h in hits]) if raw != REFUSAL else (raw, [], "none")
        )
        return Answer(
            question=question,
            answer=text,
            citations=[
                {
                    "n": n,
                    "source": hits[n - 1].source,
                    "key": hits[n - 1].key,
                    "chunk": hits[n - 1].chunk,
                    "score": round(hits[n - 1].score, 6),
                }
                for n in cited
            ],
            as_of=search_as_of(self.state, list(self.params.sources)),
            model=model,
            timings={
                "retrieve_ms": round((retrieved - started) * 1000, 1),
                "generate_ms": round((generated - retrieved) * 1000, 1),
            },
            attribution=attribution,
            sources=hits,
        )


class _NoSpan:
    def set_outputs(self, _outputs: Any) -> None:
        pass


@contextlib.contextmanager
def _no_span(_name: str, _kind: str, _inputs: Any) -> Iterator[_NoSpan]:
    yield _NoSpan()


def cite(raw: str, sources: list[str]) -> tuple[str, list[int], str]:
    """(answer text, cited source numbers, `model` | `post-hoc` | `none`).

    Markers outside 1..len(sources) are removed; with none left, the source that shares
    the most words with the answer is cited after the fact."""
    valid = set(range(1, len(sources) + 1))

    def keep(match: re.Match[str]) -> str:
        return match.group(0) if int(match.group(1)) in valid else ""

    text = CITATION.sub(keep, raw).strip()
    cited = [n for n in citations(text) if n in valid]
    if cited:
        return text, cited, "model"
    if not sources or not text:
        return text, [], "none"
    overlaps = [token_f1(text, source) for source in sources]
    best = max(range(len(sources)), key=lambda i: overlaps[i])
    if overlaps[best] < MIN_ATTRIBUTION_F1:
        return text, [], "none"
    return f"{text} [{best + 1}]", [best + 1], "post-hoc"
