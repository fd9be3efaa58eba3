"""Is an answer grounded in the chunks it cites, and does it abstain?

**Groundedness** of an answer, given the text of the chunks it cites:

1. The answer is split into sentences (at `.`, `!` or `?` followed by white space, and at
   line breaks); citation markers such as `[2]` are ignored.
2. A sentence's *content words* are its normalised words (lower case, punctuation and the
   articles removed, as token-F1 does) minus `STOP_WORDS`, each reduced to a singular
   stem (`badges` -> `badge`, `entries` -> `entry`).
3. A *claim* is a sentence with at least one content word that is not an abstention
   (saying the sources do not hold the answer claims nothing about them).
4. A claim is *supported* when at least `SUPPORTED_SHARE` (80%) of its content words occur
   among the content words of the cited chunks taken together.
5. groundedness = supported claims / claims. An answer with no claim scores 1.0 (it says
   nothing unsupported); an answer with claims and no cited chunk scores 0.0.

**Abstention**: an answer abstains when one of its sentences says the sources (or the
model) do not hold the answer — "The sources do not say.", "I don't know.", "There is no
information about that in the provided context." (`ABSTENTION` lists the forms). A
source-like subject is required, so a documentation claim such as "The migrate command
does not create tables" is not an abstention; "context" and "text", which are ordinary
words in technical documentation, count only when qualified ("the provided context").
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from ragtune.core.metrics import normalise

SUPPORTED_SHARE = 0.8
SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\n+")
_STOP = """
    a about above after again against all also am an and any are as at be because been
    before being below between both but by can could did do does doing down during each
    few for from further had has have having he her here hers herself him himself his how
    i if in into is it its itself just me more most my myself no nor not now of off on
    once only or other our ours ourselves out over own same she should so some such than
    that the their theirs them themselves then there these they this those through to too
    under until up very was we were what when where which while who whom why will with
    would you your yours yourself yourselves yes use used using may might must shall
    s t dont doesnt didnt isnt arent wasnt cant cannot wont
"""
STOP_WORDS = frozenset(_STOP.split())

_SOURCE = (
    r"(?:(?:the|these|those|this)\s+)?(?:(?:provided|given|above|retrieved|supplied|available)\s+)?"
    r"(?:sources?|documents?|documentation|docs|excerpts?)"
    r"|(?:the\s+)?(?:provided|given|above|retrieved|supplied|available)\s+"
    r"(?:context|texts?|passages?|information)"
    r"|(?:the\s+)?information\s+(?:provided|given)"
)
_NEGATION = r"(?:do|does|did)\s+not|(?:don|doesn|didn)'?t|never"
_SAY = (
    r"(?:say|says|state|mention|contain|include|hold|provide|specify|cover|answer|address"
    r"|discuss|give|have|tell|describe|explain|list|offer|indicate|show|contain)"
)
_PLACES = (
    r"(?:sources?|documents?|documentation|docs|excerpts?|(?:provided|given)\s+(?:context|texts?))"
)
ABSTENTION = [
    # "the sources do not say", "the provided context doesn't explicitly mention"
    rf"\b(?:{_SOURCE})(?:\s+\w+){{0,2}}?\s+(?:{_NEGATION})\s+(?:\w+\s+)?{_SAY}\b",
    # "(it is) not mentioned in the sources", "not found in any of the documents"
    r"\bnot\s+(?:\w+\s+)?(?:mentioned|stated|specified|covered|provided|found|included|given"
    r"|addressed|described|discussed|answered|listed|present|available)\s+(?:in|by)\s+"
    rf"(?:the\s+|any\s+(?:of\s+the\s+)?)?(?:provided\s+|given\s+)?{_PLACES}",
    # "the answer is not in the sources"
    rf"\bnot\s+in\s+(?:the\s+|any\s+(?:of\s+the\s+)?)?(?:provided\s+|given\s+)?{_PLACES}",
    # "I don't know", "I cannot find", "I do not have that information"
    r"\bi\s+(?:do\s+not|don'?t|cannot|can'?t|can\s+not|could\s+not|couldn'?t"
    r"|am\s+(?:not\s+able|unable)\s+to)\s+(?:\w+\s+){0,2}?"
    r"(?:know|find|answer|tell|determine|say|information|access)\b",
    # "there is no information about", "there's no mention of"
    r"\bthere(?:\s+is|'s|\s+are)\s+no\s+(?:\w+\s+)?(?:information|mention|answer|details?"
    r"|reference)s?\b",
    r"\bno\s+(?:information|mention|details?)\s+(?:about|on|of|regarding|is|was|are|in)\b",
    r"\b(?:not\s+enough|insufficient)\s+information\b",
    r"\b(?:cannot|can'?t|can\s+not|could\s+not)\s+be\s+answered\b",
    rf"\b(?:{_SOURCE})\s+(?:is|are)\s+silent\b",
]
_ABSTAINS = re.compile("|".join(f"(?:{p})" for p in ABSTENTION))


def sentences(text: str) -> list[str]:
    """The answer's sentences, stripped, empty ones dropped."""
    return [s.strip() for s in SENTENCE_END.split(text) if s.strip()]


def stem(word: str) -> str:
    """A light singular stem: `entries` -> `entry`, `badges` -> `badge`, `class` stays."""
    if len(word) > 4 and word.endswith("ies"):
        return word[:-3] + "y"
    if len(word) > 3 and word.endswith("s") and not word.endswith(("ss", "us", "is")):
        return word[:-1]
    return word


def content_words(text: str) -> set[str]:
    """Normalised words that carry content: stop words dropped, each stemmed."""
    return {stem(w) for w in normalise(text).split() if w not in STOP_WORDS}


def abstains(answer: str) -> bool:
    """Does the answer say the sources (or the model) do not hold the answer?"""
    text = answer.lower().replace("’", "'").replace("‘", "'")
    return bool(_ABSTAINS.search(text))


def groundedness(answer: str, cited_chunks: Sequence[str]) -> float:
    """Share of the answer's claims supported by the cited chunks (see the module doc)."""
    claims = [
        words
        for sentence in sentences(answer)
        if (words := content_words(sentence)) and not abstains(sentence)
    ]
    if not claims:
        return 1.0
    known: set[str] = set()
    for chunk in cited_chunks:
        known |= content_words(chunk)
    supported = sum(len(words & known) >= SUPPORTED_SHARE * len(words) for words in claims)
    return supported / len(claims)
