"""Answer metrics: SQuAD-style token F1 and answer-contains, on normalised text."""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Sequence

CITATION = re.compile(r"\[(\d{1,3})\]")
ARTICLES = re.compile(r"\b(a|an|the)\b")
PUNCTUATION = str.maketrans("", "", string.punctuation)


def normalise(text: str) -> str:
    text = CITATION.sub(" ", text.lower()).translate(PUNCTUATION)
    return " ".join(ARTICLES.sub(" ", text).split())


def token_f1(prediction: str, reference: str) -> float:
    predicted, expected = normalise(prediction).split(), normalise(reference).split()
    if not predicted or not expected:
        return float(predicted == expected)
    common = sum((Counter(predicted) & Counter(expected)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(predicted), common / len(expected)
    return 2 * precision * recall / (precision + recall)


def contains(prediction: str, reference: str, max_words: int = 8) -> float:
    """1.0 when the prediction holds the reference (or its first `max_words` words) as
    whole words in order: "no" is not in "I know", nor "42" in "1420"."""
    expected = normalise(reference).split()[:max_words]
    return float(bool(expected) and f" {' '.join(expected)} " in f" {normalise(prediction)} ")


def citations(answer: str) -> list[int]:
    """The [n] markers of an answer, in order, each once."""
    return list(dict.fromkeys(int(n) for n in CITATION.findall(answer)))


def mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else float("nan")
