"""Chunking on inline text with a whitespace tokenizer: boundaries, budgets, overlap."""

from __future__ import annotations

import itertools
from collections.abc import Sequence

from ragtune.core.chunking import (
    SPECIAL_TOKENS,
    chunk_document,
    detect_format,
    split_sections,
)


class WordTokenizer:
    """One token per whitespace-separated word."""

    def count(self, texts: Sequence[str]) -> list[int]:
        return [len(t.split()) for t in texts]

    def windows(self, text: str, max_tokens: int, overlap: int) -> list[str]:
        words = text.split()
        step = max_tokens - overlap
        return [
            " ".join(words[i : i + max_tokens])
            for i in range(0, max(len(words) - overlap, 1), step)
        ]


TOKENS = WordTokenizer()

RST = """\
Models
======

A model is the source of truth.

Fields
------

Fields are attributes.

Field types
~~~~~~~~~~~

Each field has a type.

Meta options
------------

Give your model metadata.
"""

MARKDOWN = """\
# Guide

Intro paragraph.

## Install

Run the installer.

```python
# not a heading
print("hi")
```

## Use

Call it.
"""


def test_detects_formats() -> None:
    assert detect_format(RST) == "rst"
    assert detect_format(MARKDOWN) == "markdown"
    assert detect_format("just some words.\n\nand more.") == "text"


def test_rst_sections_carry_heading_trails() -> None:
    trails = [s.trail for s in split_sections(RST)]
    assert trails == [
        ("Models",),
        ("Models", "Fields"),
        ("Models", "Fields", "Field types"),
        ("Models", "Meta options"),
    ]


def test_rst_overlined_titles() -> None:
    text = "=====\nTitle\n=====\n\nBody here.\n\nPart\n====\n\nMore body.\n"
    assert [s.trail for s in split_sections(text, "rst")] == [("Title",), ("Title", "Part")]


def test_markdown_headings_skip_code_fences() -> None:
    sections = split_sections(MARKDOWN)
    assert [s.trail for s in sections] == [("Guide",), ("Guide", "Install"), ("Guide", "Use")]
    assert "# not a heading" in sections[1].text


def test_markdown_setext_headings() -> None:
    text = "Title\n=====\n\nBody.\n\nSub\n---\n\nMore.\n"
    assert [s.trail for s in split_sections(text, "markdown")] == [("Title",), ("Title", "Sub")]


def test_chunks_respect_budget_and_are_numbered() -> None:
    body = "\n\n".join(f"Paragraph {i} " + "word " * 30 for i in range(20))
    chunks = chunk_document("Doc", body, TOKENS, max_tokens=100, overlap_tokens=0, fmt="text")
    assert [c.n for c in chunks] == list(range(len(chunks)))
    assert len(chunks) > 5
    for chunk in chunks:
        assert TOKENS.count([chunk.text])[0] <= 100 - SPECIAL_TOKENS
        assert chunk.text.startswith("Doc\n\n")


def test_every_word_survives_chunking() -> None:
    body = "\n\n".join(f"para{i} " + " ".join(f"w{i}_{j}" for j in range(25)) for i in range(12))
    chunks = chunk_document(None, body, TOKENS, max_tokens=64, overlap_tokens=0, fmt="text")
    seen = {w for c in chunks for w in c.text.split()}
    assert set(body.split()) <= seen


def test_overlap_repeats_trailing_units() -> None:
    body = "\n\n".join(f"p{i} " + "x " * 10 for i in range(10))
    chunks = chunk_document(None, body, TOKENS, max_tokens=40, overlap_tokens=12, fmt="text")
    assert len(chunks) >= 3
    for before, after in itertools.pairwise(chunks):
        last_paragraph = before.text.split("\n\n")[-1]
        assert after.text.split("\n\n")[0] == last_paragraph


def test_long_sentence_is_split_into_windows() -> None:
    body = " ".join(f"w{i}" for i in range(500))
    chunks = chunk_document(None, body, TOKENS, max_tokens=60, overlap_tokens=10, fmt="text")
    assert len(chunks) >= 9
    assert all(TOKENS.count([c.text])[0] <= 58 for c in chunks)


def test_sections_never_share_a_chunk_unless_tiny() -> None:
    body = RST.replace("A model is the source of truth.", "truth " * 40)
    chunks = chunk_document(None, body, TOKENS, max_tokens=60, overlap_tokens=0)
    assert chunks[0].text.startswith("Models\n\n")
    # the tiny "Fields" section runs on into "Field types", its heading kept inline
    joined = next(c for c in chunks if "Fields are attributes." in c.text)
    assert "Field types" in joined.text


def test_empty_documents_make_no_chunks() -> None:
    assert chunk_document(None, "", TOKENS, 50, 0) == []
    assert chunk_document(None, "  \n\n ", TOKENS, 50, 0) == []
    only_title = chunk_document("Title only", "", TOKENS, 50, 0)
    assert [c.text for c in only_title] == ["Title only"]
