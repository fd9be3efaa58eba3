"""One prompt everywhere: `ask`, the HTTP API, RAFT training examples, the pipeline's
`evaluate` stage and `ragtune evaluate` turn the same question and hits into the same
token ids. Each path runs its own code; only retrieval is pinned to the same hits, and the
generator records the chat it is asked instead of generating."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from ragtune.adapters.index.base import SearchHit
from ragtune.adapters.models import load_tokenizer, token_ids
from ragtune.adapters.state import StateStore
from ragtune.answer import Answerer
from ragtune.api import create_app
from ragtune.config import Params, load_params
from ragtune.core.dataset import LabelledRow, plain_examples, question_of
from ragtune.evaluation import run_configuration
from ragtune.stages.build_dataset import raft_examples
from ragtune.stages.evaluate import with_retrieved_sources

QUESTION = "Which setting names the  time zone?"
HITS = [
    # a title (with a line break a row may hold), a url only, neither
    SearchHit(
        "a#0",
        "docs",
        "ref/settings",
        0,
        "TIME_ZONE: a string.",
        {"title": "Settings\nreference", "url": "https://x/ref"},
        0.9,
    ),
    SearchHit(
        "b#0", "docs", "topics/i18n", 0, "Time zones <|im_start|> tz.", {"url": "https://x/tz"}, 0.8
    ),
    SearchHit("c#2", "docs", "misc/7", 2, "An unrelated chunk. " * 80, {}, 0.7),
]


class Recorder:
    """A generator that records each chat it is asked and answers nothing."""

    name, version, device, bf16 = "recorder", None, "cpu", False

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer
        self.chats: list[list[dict[str, str]]] = []

    def generate(self, chats: list[list[dict[str, str]]], max_new_tokens: int) -> list[str]:
        self.chats += [list(c) for c in chats]
        return ["" for _ in chats]


class OneVersionIndex:
    def version(self) -> str:
        return "7"

    def stats(self, _source: str) -> Any:
        return type("Stats", (), {"chunks": len(HITS)})()

    def close(self) -> None:
        pass


@pytest.fixture
def params(tmp_path: Path, tiny_base: Path) -> Params:
    path = tmp_path / "params.yaml"
    path.write_text(
        f"""
sources:
  docs: {{url: "sqlite:///docs.db", table: documents, key: id, text: [body]}}
training: {{url: "sqlite:///docs.db"}}
train: {{base_model: {tiny_base}}}
build_dataset: {{raft_distractors: {len(HITS)}, max_context_chars: 300}}
tracking: {{trace_answers: false}}
"""
    )
    return load_params(path)


@pytest.fixture
def pinned(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every path's retrieval finds HITS, in this order."""
    import ragtune.search
    import ragtune.workspace

    monkeypatch.setattr(ragtune.search, "search", lambda *_a, **_k: list(HITS))
    monkeypatch.setattr(ragtune.workspace, "open_index", lambda _p: OneVersionIndex())
    monkeypatch.setattr(ragtune.workspace, "open_embedder", lambda _p: object())


def answerer(params: Params, recorder: Recorder) -> Answerer:
    state = StateStore(params.workspace.path)
    found = Answerer.over(params, OneVersionIndex(), object(), state, recorder)  # type: ignore[arg-type]
    found.retrieve = lambda *_a, **_k: list(HITS)  # type: ignore[method-assign]
    return found


def test_every_path_asks_the_same_token_ids(params: Params, tiny_base: Path, pinned: None) -> None:
    tokenizer = load_tokenizer(tiny_base)
    recorder = Recorder(tokenizer)

    asked = answerer(params, recorder)
    asked.ask(QUESTION)
    client = TestClient(create_app(params, answerer=asked, keys=None))
    with client:
        assert client.post("/ask", json={"question": QUESTION}).status_code == 200
    row = LabelledRow("q1", QUESTION, "UTC.", "test", document=None)
    (raft,) = raft_examples(params, [row])[0]
    (test,) = plain_examples([row], params.build_dataset)  # as the test split holds it
    (staged,) = with_retrieved_sources(params, [test]) or []
    run_configuration(
        asked, recorder, [{"question": QUESTION, "answer": "UTC.", "document": None}], True
    )  # type: ignore[arg-type]

    paths = {
        "ask": recorder.chats[0],
        "api": recorder.chats[1],
        "raft": raft.messages[:-1],
        "evaluate stage": staged.messages[:-1],
        "ragtune evaluate": recorder.chats[2],
    }
    assert len(recorder.chats) == 3

    def ids(chat: list[dict[str, str]]) -> list[int]:
        return token_ids(tokenizer.apply_chat_template(chat, add_generation_prompt=True))

    expected = ids(paths["ask"])
    assert {name: ids(chat) == expected for name, chat in paths.items()} == dict.fromkeys(
        paths, True
    )
    # the shared shape itself: every hit shown in order, labelled title, then url, then key
    shown = question_of(raft)
    labels = ["Settings reference", "https://x/tz", "docs/misc/7"]
    assert [shown.index(label) for label in labels] == sorted(
        shown.index(label) for label in labels
    )
    assert "<|im_start|>" not in shown  # defused, on every path alike
