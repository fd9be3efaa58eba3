"""Answer metrics on inline answers, each expected value worked out by hand."""

from __future__ import annotations

import math

import pytest

from ragtune.core.metrics import citations, contains, mean, normalise, token_f1


def test_normalise_drops_case_punctuation_articles_and_citations() -> None:
    assert normalise("The Answer, [2] is: an Apple!  [10]") == "answer is apple"
    assert normalise("  ") == ""


@pytest.mark.parametrize(
    ("prediction", "reference", "expected"),
    [
        ("Paris [1].", "paris", 1.0),  # case, punctuation and citation do not count
        # {cat, sat} of {cat, sat, on, mat}: precision 1, recall 1/2 -> F1 2/3
        ("The cat sat", "cat sat on the mat", 2 / 3),
        # repeats count once per match: x x x y vs x y y -> 2 common, P 2/4, R 2/3 -> 4/7
        ("x x x y", "x y y", 4 / 7),
        ("red green", "blue", 0.0),
        ("", "", 1.0),
        ("", "anything", 0.0),
        ("anything", "", 0.0),
        ("the", "a", 1.0),  # nothing but articles: both empty
    ],
)
def test_token_f1(prediction: str, reference: str, expected: float) -> None:
    assert token_f1(prediction, reference) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("prediction", "reference", "expected"),
    [
        ("The capital is Paris, France.", "Paris", 1.0),
        ("It runs makemigrations, then migrate [2].", "makemigrations then migrate", 1.0),
        ("Then migrate, makemigrations.", "makemigrations then migrate", 0.0),  # order matters
        # words, not substrings: none of these references is in the prediction
        ("I know the answer.", "no", 0.0),
        ("It happened yesterday.", "yes", 0.0),
        ("There are 1420 rows.", "42", 0.0),
        ("We focus on speed.", "U.S.", 0.0),
        ("See the migrations.", "migration", 0.0),
        ("No, it is not.", "no", 1.0),
        ("Yes.", "yes", 1.0),
        ("", "yes", 0.0),
        ("anything", "", 0.0),  # an empty reference is never contained
        ("anything", "the", 0.0),  # nor one that normalises to nothing
    ],
)
def test_contains_matches_whole_words(prediction: str, reference: str, expected: float) -> None:
    assert contains(prediction, reference) == expected


def test_contains_compares_only_the_first_max_words_of_the_reference() -> None:
    reference = "one two three four five six seven eight nine ten"
    assert contains("... one two three four five six seven eight ...", reference) == 1.0
    assert contains("one two three", reference, max_words=3) == 1.0
    assert contains("one two", reference, max_words=3) == 0.0


def test_citations_in_order_each_once() -> None:
    assert citations("See [2] and [1], as [2] says; not [1000] or [x].") == [2, 1]
    assert citations("no sources") == []


def test_mean() -> None:
    assert mean([1.0, 0.0, 0.5]) == 0.5
    assert math.isnan(mean([]))
