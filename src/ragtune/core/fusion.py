"""Fusion of a vector ranking and a full-text ranking into one, and identifier matching.

- `reciprocal_rank_fusion`: sum of 1 / (k + rank). With the classic k = 60 a document that
  one retriever ranks first and the other never saw scores 1/61, below every document both
  rank in their top ~60: a keyword-only exact match is buried. With k = 1 it scores 1/2,
  and at most four documents can reach that (the other list's first; its 2nd, 3rd or 4th
  when ranked 4th, 3rd or 2nd here), so either list's first stays in the top 5.
- `convex_fusion`: w * text + (1 - w) * vector over min-max normalised scores, 0 where a
  list lacks the item.

`identifiers` finds what a user copied rather than said (CVE-2019-14232, #30107,
django.utils.text.Truncator, ERR_SSL_PROTOCOL, v5.2.1, getQueryString) in a query;
`identifier_score` says how much a chunk is about them; `boost_identifiers` lifts the
fused ranking by it.
"""

from __future__ import annotations

import re
from collections.abc import Hashable, Mapping, Sequence
from typing import TypeVar

T = TypeVar("T", bound=Hashable)

# a query word: surrounding quotes, brackets and sentence punctuation are not part of it
EDGE = "\"'`.,;:!?()[]{}<>"
HYPHENATED_WORD = re.compile(r"[a-z]+(?:-[a-z]+)+")  # class-based, read-only: plain English
ABBREVIATION = re.compile(r"(?:[A-Za-z]\.)+[A-Za-z]?")  # e.g, i.e.
VERSION = re.compile(r"[vV]\d+(?:\.\d+)+")
CAMEL = re.compile(r"[a-z][A-Z]|[A-Z]{2,}[a-z]")


def reciprocal_rank_fusion(rankings: Sequence[Sequence[T]], k: int = 60) -> list[tuple[T, float]]:
    """Items by descending sum of 1 / (k + rank), rank counted from 1; ties keep first-seen order."""
    scores: dict[T, float] = {}
    for ranking in rankings:
        for rank, item in enumerate(ranking, start=1):
            scores[item] = scores.get(item, 0.0) + 1.0 / (k + rank)
    return sorted(scores.items(), key=lambda pair: -pair[1])


def min_max(scores: Sequence[tuple[T, float]]) -> dict[T, float]:
    """Scores mapped onto [0, 1] over this list (all equal: all 1.0); a repeated item keeps
    its best score."""
    if not scores:
        return {}
    low = min(s for _, s in scores)
    span = max(s for _, s in scores) - low
    out: dict[T, float] = {}
    for item, score in scores:
        value = (score - low) / span if span > 0 else 1.0
        out[item] = max(out.get(item, 0.0), value)
    return out


def convex_fusion(
    by_vector: Sequence[tuple[T, float]],
    by_text: Sequence[tuple[T, float]],
    text_weight: float,
) -> list[tuple[T, float]]:
    """Items by w * text + (1 - w) * vector of min-max normalised scores (0 where a list
    lacks the item); ties keep first-seen order, vector list first."""
    if not 0.0 <= text_weight <= 1.0:
        raise ValueError(f"text_weight must be in [0, 1], got {text_weight}")
    vector, text = min_max(by_vector), min_max(by_text)
    order = list(dict.fromkeys([item for item, _ in by_vector] + [item for item, _ in by_text]))
    fused = {
        item: (1.0 - text_weight) * vector.get(item, 0.0) + text_weight * text.get(item, 0.0)
        for item in order
    }
    return sorted(fused.items(), key=lambda pair: -pair[1])


def is_identifier(word: str) -> bool:
    """A word a person copies rather than says: it holds a digit, an underscore, a dot, dash
    or slash between characters, or inner capitals; plain hyphenated English does not count."""
    if len(word) < 2 or HYPHENATED_WORD.fullmatch(word) or ABBREVIATION.fullmatch(word):
        return False
    if any(c.isdigit() or c == "_" for c in word):
        return True
    if any(c in ".-/:" for c in word[1:-1]):
        return True
    return bool(CAMEL.search(word))


def identifiers(query: str) -> tuple[str, ...]:
    """The identifier-like words of a query, in order, without repeats; `#123` counts as the
    number (ticket references), `name()` as the name."""
    found: dict[str, None] = {}
    for raw in query.split():
        word = raw.strip(EDGE).removesuffix("()").strip(EDGE).lstrip("#")
        if VERSION.fullmatch(word):
            word = word[1:]  # v5.2.1: the docs write 5.2.1
        if is_identifier(word):
            found.setdefault(word, None)
    return tuple(found)


def identifier_pattern(identifier: str) -> re.Pattern[str]:
    """The identifier as a whole word, any case: not inside a longer word or version number
    (5.2 is not found in 5.2.1 or 15.2), though a dotted path may go on (django.utils.text
    is found in django.utils.text.Truncator)."""
    return re.compile(
        rf"(?<![\w.\-]){re.escape(identifier)}(?!\w|[.\-]\d)",
        re.IGNORECASE,
    )


def name_pattern(identifier: str) -> re.Pattern[str] | None:
    """What a heading about a dotted path names, exactly as written: its last part when
    that is a name (`Truncator`, `json_script`; not a lowercase module like `text`)."""
    head, dot, last = identifier.rpartition(".")
    if not (dot and head and last) or not (last[0].isupper() or is_identifier(last)):
        return None
    return re.compile(rf"(?<![\w.\-]){re.escape(last)}(?!\w)")


def identifier_score(text: str, query_identifiers: Sequence[str]) -> float:
    """How much a chunk is about the query's identifiers, from 0 to 1: the mean over them
    of 1 when its heading trail (the first paragraph, as the chunker writes it) names the
    identifier, 0.5 when only its text holds it whole, 0 otherwise. A chunk about
    `CVE-2019-14232` thus comes before a list that mentions it, and the reference entry
    headed `Truncator` before release notes that mention `django.utils.text.Truncator`."""
    if not query_identifiers:
        return 0.0
    heading = text.split("\n\n", 1)[0]
    total = 0.0
    for identifier in query_identifiers:
        whole, name = identifier_pattern(identifier), name_pattern(identifier)
        if whole.search(heading) or (name is not None and name.search(heading)):
            total += 1.0
        elif whole.search(text):
            total += 0.5
    return total / len(query_identifiers)


def boost_identifiers(
    fused: Sequence[tuple[T, float]],
    texts: Mapping[T, str],
    query: str,
    boost: float,
) -> list[tuple[T, float]]:
    """The fused ranking with `boost` times each item's `identifier_score` added to its
    score; unchanged when the query holds no identifier."""
    found = identifiers(query)
    if not found or boost == 0.0:
        return list(fused)
    lifted = [
        (item, score + boost * identifier_score(texts.get(item, ""), found))
        for item, score in fused
    ]
    return sorted(lifted, key=lambda pair: -pair[1])
