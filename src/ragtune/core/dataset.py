"""Labelled rows -> splits -> chat-format SFT examples (plain, or RAFT with context).

The split is a pure function of the row's key, so a row keeps its split as the table
grows and an evaluation question never drifts into training. RAFT (retrieval-augmented
fine-tuning) shows the model the gold chunk among distractor chunks, in the same fenced
prompt `ask` uses, and teaches it to answer from the source and cite it as [n]; some
examples leave the gold chunk out, so the model also learns to rely on what it knows.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ragtune.core.prompts import Hit, PromptSettings, SourceText, chat

SPLITS = ("train", "validation", "test")


def split_of(key: str, salt: str, validation_fraction: float, test_fraction: float) -> str:
    """`train`, `validation` or `test`, from a hash of the key: stable as rows arrive."""
    digest = hashlib.sha256(f"{salt}\x00{key}".encode()).digest()
    point = int.from_bytes(digest[:8], "big") / 2**64
    if point < test_fraction:
        return "test"
    if point < test_fraction + validation_fraction:
        return "validation"
    return "train"


@dataclass(frozen=True)
class LabelledRow:
    key: str
    question: str
    answer: str
    split: str
    document: str | None = None


@dataclass(frozen=True)
class Example:
    """One SFT example: chat messages whose last message is the answer to learn."""

    key: str
    split: str
    messages: list[dict[str, str]]
    document: str | None = None
    gold_source: int | None = None  # the [n] of the gold chunk in the prompt, if shown

    def as_record(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "split": self.split,
            "messages": self.messages,
            "document": self.document,
            "gold_source": self.gold_source,
        }

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> Example:
        return cls(
            key=str(record["key"]),
            split=str(record["split"]),
            messages=list(record["messages"]),
            document=record.get("document"),
            gold_source=record.get("gold_source"),
        )


def plain_examples(rows: Iterable[LabelledRow], settings: PromptSettings) -> list[Example]:
    """Question -> answer, no context: the model learns the answers themselves."""
    return [
        Example(r.key, r.split, chat(r.question, [], settings, answer=r.answer), r.document)
        for r in rows
    ]


@dataclass(frozen=True)
class Retrieved:
    """Chunks found for one question: the gold document's, and others."""

    gold: Sequence[Hit | SourceText]
    distractors: Sequence[Hit | SourceText]


def raft_example(
    row: LabelledRow,
    settings: PromptSettings,
    found: Retrieved,
    include_gold: bool,
    rng: random.Random,
) -> Example:
    """The question with shuffled context; the answer cites the gold chunk when shown."""
    sources = list(found.distractors)
    gold_at: int | None = None
    if include_gold and found.gold:
        gold_at = rng.randrange(len(sources) + 1)
        sources.insert(gold_at, found.gold[0])
    answer = row.answer.strip()
    if gold_at is not None:
        answer = f"{answer} [{gold_at + 1}]"
    prompt = chat(row.question, sources, settings, answer=answer)
    return Example(
        row.key, row.split, prompt, row.document, None if gold_at is None else gold_at + 1
    )


def answer_of(example: Example) -> str:
    return example.messages[-1]["content"]


def question_of(example: Example) -> str:
    return example.messages[1]["content"]


def split_counts(examples: Iterable[Example]) -> dict[str, int]:
    counts = dict.fromkeys(SPLITS, 0)
    for example in examples:
        counts[example.split] = counts.get(example.split, 0) + 1
    return counts
