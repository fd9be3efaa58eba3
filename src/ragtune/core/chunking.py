"""Token-aware, heading-aware chunking.

A document is split at its headings (Markdown `#` and setext, reStructuredText
over/underlines) into sections; each section into paragraphs, long paragraphs into
sentences, long sentences into token windows. Units are packed greedily into chunks of
at most `max_tokens` embedding tokens, each chunk headed by its heading trail
("Title › Section › Subsection") so that it makes sense on its own, and consecutive
chunks of a section share up to `overlap_tokens` of trailing units.

Tokens are counted by the embedding model's own tokenizer, passed in as a `Tokenizer`,
so a chunk never overflows the model's window.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

TRAIL_SEPARATOR = " › "
SPECIAL_TOKENS = 2  # [CLS] and [SEP]

RST_ADORNMENT = re.compile(r"^([=\-`:'\"~^_*+#<>.])\1{2,}\s*$")
MD_ATX = re.compile(r"^(#{1,6})\s+(.+?)\s*#*\s*$")
MD_SETEXT = re.compile(r"^\s{0,3}(={3,}|-{3,})\s*$")
MD_FENCE = re.compile(r"^\s*(```|~~~)")
SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(\[`*])")


class Tokenizer(Protocol):
    def count(self, texts: Sequence[str]) -> list[int]:
        """Number of tokens of each text, without special tokens."""
        ...

    def windows(self, text: str, max_tokens: int, overlap: int) -> list[str]:
        """Split one text at token boundaries into windows of at most max_tokens."""
        ...


@dataclass(frozen=True)
class Section:
    trail: tuple[str, ...]
    text: str


@dataclass(frozen=True)
class Chunk:
    n: int
    text: str


def detect_format(text: str) -> str:
    """`rst`, `markdown` or `text`, from the headings the text uses."""
    lines = text.splitlines()
    for i in range(1, len(lines)):
        above = lines[i - 1].strip()
        underlined = bool(RST_ADORNMENT.match(lines[i])) and len(lines[i].rstrip()) >= len(above)
        if above and underlined and not RST_ADORNMENT.match(above):
            return "rst"
    if any(MD_ATX.match(line) for line in lines):
        return "markdown"
    return "text"


def split_sections(text: str, fmt: str = "auto") -> list[Section]:
    """Sections of a document, each with the trail of headings above it."""
    if fmt == "auto":
        fmt = detect_format(text)
    if fmt == "rst":
        return _split_rst(text)
    if fmt == "markdown":
        return _split_markdown(text)
    return [Section((), text)] if text.strip() else []


def _push(trail: list[tuple[int, str]], level: int, title: str) -> None:
    while trail and trail[-1][0] >= level:
        trail.pop()
    trail.append((level, title))


def _split_markdown(text: str) -> list[Section]:
    """ATX (`## Title`) and setext (`Title` over `===`/`---`) headings, not in code fences."""
    sections: list[Section] = []
    trail: list[tuple[int, str]] = []
    body: list[str] = []
    lines = text.splitlines()

    def flush() -> None:
        if "\n".join(body).strip():
            sections.append(Section(tuple(t for _, t in trail), "\n".join(body).strip()))
        body.clear()

    in_fence, skip = False, False
    for i, line in enumerate(lines):
        if skip:
            skip = False
            continue
        if MD_FENCE.match(line):
            in_fence = not in_fence
        nxt = lines[i + 1] if i + 1 < len(lines) else ""
        after_blank = i == 0 or not lines[i - 1].strip()
        atx = None if in_fence else MD_ATX.match(line)
        if atx:
            flush()
            _push(trail, len(atx.group(1)), atx.group(2).strip())
        elif not in_fence and line.strip() and after_blank and MD_SETEXT.match(nxt):
            flush()
            _push(trail, 1 if nxt.strip().startswith("=") else 2, line.strip())
            skip = True
        else:
            body.append(line)
    flush()
    return sections


def _split_rst(text: str) -> list[Section]:
    """reStructuredText titles: a line under- (and maybe over-) lined by one character."""
    sections: list[Section] = []
    trail: list[tuple[int, str]] = []
    styles: list[tuple[bool, str]] = []  # heading levels in order of first appearance
    body: list[str] = []
    lines = text.splitlines()

    def flush() -> None:
        if "\n".join(body).strip():
            sections.append(Section(tuple(t for _, t in trail), "\n".join(body).strip()))
        body.clear()

    i = 0
    while i < len(lines):
        line = lines[i]
        nxt = lines[i + 1] if i + 1 < len(lines) else ""
        title, overline, consumed = None, False, 1
        if (
            RST_ADORNMENT.match(line)
            and i + 2 < len(lines)
            and lines[i + 1].strip()
            and lines[i + 2].rstrip() == line.rstrip()
        ):
            title, overline, consumed = lines[i + 1].strip(), True, 3
        elif (
            line.strip()
            and not RST_ADORNMENT.match(line)
            and RST_ADORNMENT.match(nxt)
            and len(nxt.rstrip()) >= len(line.rstrip())
            and not line.startswith((" ", "\t"))
        ):
            title, consumed = line.strip(), 2
        if title is None:
            body.append(line)
            i += 1
            continue
        style = (overline, (line if overline else nxt).strip()[0])
        if style not in styles:
            styles.append(style)
        flush()
        _push(trail, styles.index(style) + 1, title)
        i += consumed
    flush()
    return sections


@dataclass(frozen=True)
class _Unit:
    text: str
    tokens: int
    joiner: str  # what separates this unit from the one before it


def _paragraphs(text: str) -> list[str]:
    return [p.strip("\n") for p in re.split(r"\n\s*\n", text) if p.strip()]


def _units(text: str, budget: int, tokenizer: Tokenizer, overlap: int) -> list[_Unit]:
    """Paragraphs, then sentences, then token windows: every unit fits the budget."""
    paragraphs = _paragraphs(text)
    counts = tokenizer.count(paragraphs)
    units: list[_Unit] = []
    for paragraph, count in zip(paragraphs, counts, strict=True):
        if count <= budget:
            units.append(_Unit(paragraph, count, "\n\n"))
            continue
        sentences = [s for s in SENTENCE_END.split(paragraph) if s.strip()]
        joiner = "\n\n"
        for sentence, s_count in zip(sentences, tokenizer.count(sentences), strict=True):
            if s_count <= budget:
                units.append(_Unit(sentence, s_count, joiner))
            else:
                for window in tokenizer.windows(sentence, budget, overlap):
                    units.append(_Unit(window, min(budget, tokenizer.count([window])[0]), joiner))
            joiner = " "
    return units


def chunk_document(
    title: str | None,
    body: str,
    tokenizer: Tokenizer,
    max_tokens: int,
    overlap_tokens: int,
    fmt: str = "auto",
) -> list[Chunk]:
    """The chunks of one document, numbered from 0, each within max_tokens."""
    sections = split_sections(body, fmt)
    if not sections:
        return [Chunk(0, title)] if title else []
    chunks: list[str] = []
    usable = max_tokens - SPECIAL_TOKENS
    small = usable // 4
    trails = [TRAIL_SEPARATOR.join(((title,) if title else ()) + s.trail) for s in sections]
    trail_tokens = tokenizer.count(trails)
    current: list[_Unit] = []
    current_tokens = 0
    current_head = ""
    head_budget = usable

    def emit() -> None:
        if current:
            text = "".join((u.joiner if j else "") + u.text for j, u in enumerate(current))
            chunks.append(f"{current_head}\n\n{text}" if current_head else text)

    for section, trail, t_tokens in zip(sections, trails, trail_tokens, strict=True):
        budget = max(usable - t_tokens - 2, usable // 2)
        units = _units(section.text, budget, tokenizer, overlap_tokens)
        if current and current_tokens < small and section.trail:
            # a tiny section runs on into the next: keep its heading inline
            heading = section.trail[-1]
            units = [_Unit(heading, tokenizer.count([heading])[0] + 1, "\n\n"), *units]
        else:
            emit()
            current, current_tokens = [], 0
            current_head, head_budget = trail, budget
        for unit in units:
            if current and current_tokens + unit.tokens + 1 > head_budget:
                emit()
                carried: list[_Unit] = []
                carried_tokens = 0
                for previous in reversed(current):
                    if carried_tokens + previous.tokens > overlap_tokens:
                        break
                    carried.insert(0, previous)
                    carried_tokens += previous.tokens
                if carried_tokens + unit.tokens + 1 > head_budget:
                    carried, carried_tokens = [], 0
                current, current_tokens = carried, carried_tokens
            current.append(unit)
            current_tokens += unit.tokens + 1
    emit()
    return [Chunk(n, text) for n, text in enumerate(chunks)]


def fingerprint(model: str, max_tokens: int, overlap_tokens: int) -> str:
    """What, besides a document's content, decides its chunks and vectors."""
    return f"chunker=v1;model={model};max_tokens={max_tokens};overlap={overlap_tokens}"
