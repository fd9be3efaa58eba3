"""Splits that never move, and where RAFT puts the gold chunk and what the answer cites."""

from __future__ import annotations

import random
import re
from dataclasses import dataclass

import pytest

from ragtune.core.dataset import (
    Example,
    LabelledRow,
    Retrieved,
    answer_of,
    plain_examples,
    question_of,
    raft_example,
    split_counts,
    split_of,
)
from ragtune.core.prompts import SourceText


@dataclass(frozen=True)
class Settings:
    """The two prompt params (`build_dataset:` in params.yaml)."""

    system_prompt: str = "sys"
    max_context_chars: int = 500


SYS = Settings()

# Worked out once from the documented rule, not by calling split_of: the first 8 bytes
# of sha256("s1\0" + key), big endian, over 2**64, give key 1 0.372, key 2 0.182, key 3
# 0.463, 4 0.624, 5 0.295, 6 0.886, 7 0.380, 8 0.756, 17 0.034, q-42 0.248; below 0.2 is
# test, below 0.4 validation. A change of the rule would move keys between splits in every
# existing workspace (evaluation questions into training).
PINNED = {
    "1": "validation",
    "2": "test",
    "3": "train",
    "4": "train",
    "5": "validation",
    "6": "train",
    "7": "validation",
    "8": "train",
    "17": "test",
    "q-42": "validation",
}


def test_a_key_keeps_the_split_pinned_for_it() -> None:
    assert {key: split_of(key, "s1", 0.2, 0.2) for key in PINNED} == PINNED


def test_a_key_keeps_its_split_as_rows_arrive() -> None:
    first = [str(k) for k in range(200)]
    before = {key: split_of(key, "s1", 0.1, 0.1) for key in first}
    grown = first + [f"new-{k}" for k in range(2000)]
    random.Random(5).shuffle(grown)
    after = {key: split_of(key, "s1", 0.1, 0.1) for key in grown}
    assert {key: after[key] for key in first} == before


def test_split_fractions_hold_over_many_keys() -> None:
    n = 20_000
    counts = {"train": 0, "validation": 0, "test": 0}
    for key in range(n):
        counts[split_of(str(key), "ragtune", 0.1, 0.2)] += 1
    # binomial standard deviations at n = 20000: 0.1 -> 42 rows, 0.2 -> 57 rows; allow 5
    assert abs(counts["validation"] - 0.1 * n) < 5 * 42, counts
    assert abs(counts["test"] - 0.2 * n) < 5 * 57, counts


def test_a_larger_test_fraction_only_moves_keys_into_test() -> None:
    for key in map(str, range(2000)):
        if split_of(key, "s1", 0.1, 0.1) == "test":
            assert split_of(key, "s1", 0.1, 0.3) == "test", key


def test_the_salt_reshuffles() -> None:
    keys = [str(k) for k in range(500)]
    a = [split_of(k, "one", 0.2, 0.2) for k in keys]
    b = [split_of(k, "two", 0.2, 0.2) for k in keys]
    assert a != b


ROW = LabelledRow(key="k1", question="Which colour is the badge?", answer=" Blue. ", split="train")
GOLD = SourceText("Badges", "The badge of team 12 is blue.")
DISTRACTORS = [SourceText(f"Other {i}", f"Unrelated text number {i}.") for i in range(3)]
BLOCK = re.compile(r"<<<SOURCE (\d+)>>>\n(.*?)\n<<<END SOURCE \1>>>", re.S)


def shown_sources(example: Example) -> list[str]:
    """The [n]-ordered source texts the prompt shows (title line, then text)."""
    blocks = BLOCK.findall(question_of(example))
    assert [int(n) for n, _ in blocks] == list(range(1, len(blocks) + 1))
    return [text for _, text in blocks]


def test_raft_cites_the_gold_chunk_where_it_was_placed() -> None:
    placed = set()
    for seed in range(40):
        example = raft_example(ROW, SYS, Retrieved([GOLD], DISTRACTORS), True, random.Random(seed))
        shown = shown_sources(example)
        assert len(shown) == 4
        (at,) = [n for n, text in enumerate(shown, start=1) if GOLD.text in text]
        assert example.gold_source == at
        assert answer_of(example) == f"Blue. [{at}]"
        # the distractors keep their relative order around the gold chunk
        others = [text for n, text in enumerate(shown, start=1) if n != at]
        assert others == [f"{d.title}\n{d.text}" for d in DISTRACTORS]
        placed.add(at)
    assert placed == {1, 2, 3, 4}  # every position, first and last included


def test_raft_without_gold_cites_nothing() -> None:
    left_out = raft_example(ROW, SYS, Retrieved([GOLD], DISTRACTORS), False, random.Random(1))
    assert left_out.gold_source is None
    assert answer_of(left_out) == "Blue."
    assert not [text for text in shown_sources(left_out) if GOLD.text in text]
    assert len(shown_sources(left_out)) == 3

    not_found = raft_example(ROW, SYS, Retrieved([], DISTRACTORS), True, random.Random(1))
    assert not_found.gold_source is None and answer_of(not_found) == "Blue."


def test_raft_shows_only_the_first_gold_chunk() -> None:
    second = SourceText("Badges", "Team 12 also has a flag.")
    example = raft_example(ROW, SYS, Retrieved([GOLD, second], []), True, random.Random(0))
    assert shown_sources(example) == [f"{GOLD.title}\n{GOLD.text}"]
    assert example.gold_source == 1 and answer_of(example) == "Blue. [1]"


def test_plain_examples_and_records_round_trip() -> None:
    rows = [ROW, LabelledRow("k2", "Q2?", "A2", "test", document="doc-9")]
    examples = plain_examples(rows, SYS)
    assert [e.messages for e in examples] == [
        [
            {"role": "system", "content": "sys"},
            {"role": "user", "content": "Which colour is the badge?"},
            {"role": "assistant", "content": " Blue. "},
        ],
        [
            {"role": "system", "content": "sys"},
            {"role": "user", "content": "Q2?"},
            {"role": "assistant", "content": "A2"},
        ],
    ]
    assert [Example.from_record(e.as_record()) for e in examples] == examples
    assert split_counts(examples) == {"train": 1, "validation": 0, "test": 1}


@pytest.mark.parametrize("include", [True, False])
def test_raft_record_round_trips(include: bool) -> None:
    example = raft_example(
        ROW, Settings("s", 99), Retrieved([GOLD], DISTRACTORS), include, random.Random(3)
    )
    assert Example.from_record(example.as_record()) == example
