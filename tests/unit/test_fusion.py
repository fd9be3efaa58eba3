"""Fusion of a vector and a full-text ranking, and identifier matching, on inline lists.

The lists have the shape real ones have: 50 candidates a side, cosine scores packed in a
narrow band, BM25 scores falling off from the top, and most candidates found by both.
"""

from __future__ import annotations

import random

import pytest

from ragtune.adapters.index.base import SearchHit
from ragtune.config import SearchConfig
from ragtune.core.fusion import (
    boost_identifiers,
    convex_fusion,
    identifier_pattern,
    identifier_score,
    identifiers,
    min_max,
    name_pattern,
    reciprocal_rank_fusion,
)
from ragtune.search import fuse


def shared_lists(
    only_in: str, depth: int = 50
) -> tuple[list[tuple[str, float]], list[tuple[str, float]]]:
    """Two 50-deep lists over the same documents d1..d49 in the same order, plus `lone`
    ranked first by one side (`only_in`) and absent from the other."""
    shared = [f"d{i}" for i in range(1, depth)]
    vector = [(d, 0.62 - 0.004 * i) for i, d in enumerate(shared)]  # 0.62 .. 0.43
    text = [(d, 12.0 / (1 + 0.15 * i)) for i, d in enumerate(shared)]  # 12.0 .. 1.5
    if only_in == "text":
        text = [("lone", 14.0), *text]
    else:
        vector = [("lone", 0.66), *vector]
    return vector, text


def top(fused: list[tuple[str, float]], n: int) -> list[str]:
    return [item for item, _ in fused[:n]]


def fused_ids(vector: list[tuple[str, float]], text: list[tuple[str, float]]) -> list[str]:
    """The default hybrid fusion of search, on plain hits (no identifiers in the query)."""
    by_vector = [hit(d, s) for d, s in vector]
    by_text = [hit(d, s) for d, s in text]
    return [h.id for h in fuse("how do forms work", by_vector, by_text, SearchConfig())]


@pytest.mark.parametrize("only_in", ["text", "vector"])
def test_a_document_one_retriever_ranks_first_stays_in_the_top_5(only_in: str) -> None:
    vector, text = shared_lists(only_in)
    assert "lone" in fused_ids(vector, text)[:5]


@pytest.mark.parametrize("seed", range(200))
def test_the_first_of_either_list_stays_in_the_top_5_whatever_the_other_says(seed: int) -> None:
    """Random orders of a 50-document pool, some found by one side only (seed printed by
    the test id)."""
    rng = random.Random(seed)
    pool = [f"d{i}" for i in range(50)]
    vector_ids, text_ids = (
        rng.sample(pool, rng.randint(1, 50)),
        rng.sample(pool, rng.randint(1, 50)),
    )
    vector = [(d, 1.0 - i / 100) for i, d in enumerate(vector_ids)]
    text = [(d, 20.0 - i / 10) for i, d in enumerate(text_ids)]
    fused = fused_ids(vector, text)
    assert vector_ids[0] in fused[:5]
    assert text_ids[0] in fused[:5]


@pytest.mark.parametrize("only_in", ["text", "vector"])
def test_rank_fusion_with_k_60_buries_a_document_only_one_retriever_found(only_in: str) -> None:
    """Why the default changed: under RRF with the classic k = 60, every document both
    sides rank in their top 49 outscores one that a single side ranks first."""
    vector, text = shared_lists(only_in)
    fused = reciprocal_rank_fusion([[d for d, _ in vector], [d for d, _ in text]], k=60)
    assert [item for item, _ in fused].index("lone") == 49


def test_convex_fusion_can_bury_it_too() -> None:
    """The measured alternative: with both sides agreeing on the others, min-max scores
    put five of them above the lone first."""
    vector, text = shared_lists("text")
    assert "lone" not in top(convex_fusion(vector, text, 0.5), 5)


def test_rrf_rewards_agreement() -> None:
    fused = reciprocal_rank_fusion([["a", "b", "c"], ["c", "a", "d"]], k=60)
    assert top(fused, 2) == ["a", "c"]
    assert fused[0][1] == pytest.approx(1 / 61 + 1 / 62)


def test_convex_fusion_weights_normalised_scores() -> None:
    fused = dict(convex_fusion([("a", 0.9), ("b", 0.5)], [("b", 10.0), ("c", 2.0)], 0.25))
    # vector a=1, b=0; text b=1, c=0
    assert fused == pytest.approx({"a": 0.75, "b": 0.25, "c": 0.0})
    assert top(convex_fusion([("a", 0.9), ("b", 0.5)], [("b", 10.0)], 1.0), 1) == ["b"]
    with pytest.raises(ValueError, match="text_weight"):
        convex_fusion([], [], 1.5)


def test_min_max_edges() -> None:
    assert min_max([]) == {}
    assert min_max([("a", 3.0), ("b", 3.0)]) == {"a": 1.0, "b": 1.0}
    assert min_max([("a", 1.0), ("b", 3.0), ("a", 2.0)]) == {"a": 0.5, "b": 1.0}


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("Which Django release fixed CVE-2019-14232?", ("CVE-2019-14232",)),
        ("What does django.utils.text.Truncator do?", ("django.utils.text.Truncator",)),
        ("ERR_SSL_PROTOCOL when connecting", ("ERR_SSL_PROTOCOL",)),
        ("changes in v5.2.1", ("5.2.1",)),
        ("Which release fixed ticket #30107?", ("30107",)),
        ("is get_object() called twice? get_object()", ("get_object",)),
        ("a getQueryString helper and JSONField", ("getQueryString", "JSONField")),
        ("How do class-based views and read-only fields work?", ()),
        ("What is Django's ORM, e.g. for joins?", ()),
        ("", ()),
    ],
)
def test_identifiers_in_a_query(query: str, expected: tuple[str, ...]) -> None:
    assert identifiers(query) == expected


@pytest.mark.parametrize(
    ("identifier", "text", "found"),
    [
        ("CVE-2019-14232", "CVE-2019-14232: Denial-of-service", True),
        ("CVE-2019-14232", "see cve-2019-14232.", True),
        ("CVE-2019-14232", "CVE-2019-142321 is another", False),
        ("30107", "(:ticket:`30107`)", True),
        ("30107", "ticket 301070", False),
        ("5.2", "Django 5.2 adds", True),
        ("5.2", "Django 5.2.1 fixes", False),
        ("5.2", "Django 15.2", False),
        ("django.utils.text", "``django.utils.text.Truncator``'s", True),
        ("is_active", "the is active flag", False),
    ],
)
def test_identifiers_are_found_whole(identifier: str, text: str, found: bool) -> None:
    assert bool(identifier_pattern(identifier).search(text)) is found


@pytest.mark.parametrize(
    ("identifier", "name"),
    [
        ("django.utils.text.Truncator", "Truncator"),
        ("django.utils.html.json_script", "json_script"),
        ("django.utils.text", None),  # a lowercase module name is a common word
        ("django.utils.text.slugify", None),
        ("CVE-2019-14232", None),
    ],
)
def test_the_name_a_heading_gives_a_dotted_path(identifier: str, name: str | None) -> None:
    pattern = name_pattern(identifier)
    if name is None:
        assert pattern is None
    else:
        assert pattern is not None
        assert pattern.search(f"Reference › ``{name}``")
        assert not pattern.search(f"Reference › ``{name.lower()}x``")


def test_a_chunk_about_an_identifier_beats_one_that_mentions_it() -> None:
    about = "Django 2.2.4 release notes › CVE-2019-14232: Denial-of-service\n\nIf Truncator ..."
    mention = "Security archive\n\n* CVE-2019-14232 and CVE-2019-14233 were fixed in 2.2.4"
    apart = "Security archive\n\n* CVE 2019 notes, 14232 bytes"
    found = identifiers("Which release fixed CVE-2019-14232?")
    assert [identifier_score(t, found) for t in (about, mention, apart)] == [1.0, 0.5, 0.0]
    reference = "Django Utils › ``Truncator``\n\n.. class:: Truncator(text)"
    note = "Django 2.2.4 release notes\n\n``django.utils.text.Truncator``'s chars() was slow"
    found = identifiers("What does django.utils.text.Truncator do?")
    assert identifier_score(reference, found) > identifier_score(note, found) > 0
    assert identifier_score(about, ("CVE-2019-14232", "30107")) == 0.5
    assert identifier_score(about, ()) == 0.0


def test_boost_lifts_the_chunks_about_the_identifier() -> None:
    fused = [("a", 0.9), ("b", 0.5), ("c", 0.4)]
    texts = {"a": "Notes\n\nCVE 2019 and 14232 apart", "b": "nothing", "c": "CVE-2019-14232\n\nx"}
    lifted = boost_identifiers(fused, texts, "Which release fixed CVE-2019-14232?", 1.0)
    assert lifted[0] == ("c", pytest.approx(1.4))
    assert boost_identifiers(fused, texts, "no identifiers here", 1.0) == fused
    assert boost_identifiers(fused, texts, "CVE-2019-14232", 0.0) == fused


OLD = SearchConfig(fusion="rrf", rrf_k=60, identifier_boost=0.0)  # hybrid search before


def hit(item: str, score: float, text: str = "") -> SearchHit:
    return SearchHit(id=item, source="docs", key=item, chunk=0, text=text, metadata={}, score=score)


def test_default_search_fusion_puts_the_exact_identifier_first() -> None:
    """The documents both sides like talk about the words of the identifier; the one that
    holds it whole, 21st by words and unseen by vectors, comes first."""
    vector, text = shared_lists("text")
    by_vector = [hit(d, s, "Release notes\n\nsecurity release 2019") for d, s in vector]
    by_text = [hit(d, s, "Release notes\n\nsecurity release 2019") for d, s in text[1:]]
    by_text.insert(20, hit("exact", 4.0, "2.2.4 › CVE-2019-14232: denial of service\n\n..."))
    fused = fuse("Which release fixed CVE-2019-14232?", by_vector, by_text, SearchConfig())
    assert fused[0].id == "exact"
    assert fuse("Which release fixed CVE-2019-14232?", by_vector, by_text, OLD)[0].id != "exact"
