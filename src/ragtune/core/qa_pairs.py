"""Labelled question/answer pairs drawn from a reStructuredText docs corpus (Django's docs).

Two kinds of pair:

- `faq`: in `faq/*` documents every section heading that is a question ("…?") becomes a
  pair, answered by the first paragraphs under it;
- `heading`: in every other document (release notes aside) a section heading whose first
  paragraph is real prose becomes a question built from a few fixed templates, answered
  by that paragraph.

Each pair has a `category`, the kind of question it is: `faq` (a question the docs ask
themselves), `how-to` ("How do I …?"), `reference` ("What is X in …?", about a setting, a
class or another name) and `topic` ("What does … say about …?").

Questions and answers are plain text: inline markup (``literals``, :role:`text <target>`,
links, emphasis) is resolved to what a reader sees, and code blocks, tables, tables of
contents and labels are left out. Answers are cut at a paragraph or sentence boundary.
The output depends on the input alone, in its order.
"""

from __future__ import annotations

import posixpath
import re
import textwrap
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from ragtune.core.chunking import RST_ADORNMENT, SENTENCE_END, split_sections
from ragtune.core.corpus import DocRow

MIN_PROSE_CHARS = 80

INLINE = re.compile(
    r"\\(?P<esc>.)"
    r"|:(?:[\w-]+:)*(?P<role>[\w-]+):`(?P<body>[^`]+)`"
    r"|``(?P<literal>.+?)``(?!`)"
    r"|`(?P<link>[^`]+)`__?"
    r"|`(?P<interpreted>[^`]+)`"
    r"|\*\*(?P<strong>[^*\s](?:[^*]*[^*\s])?)\*\*"
    r"|(?<![\w*])\*(?P<emph>[^*\s](?:[^*]*[^*\s])?)\*(?![\w*])"
    r"|\|(?P<substitution>\w[\w.\- ]*)\|(?:__?)?"
    r"|\s?\[(?:#[\w-]*|\d+|\*)\]_"
    r"|(?<![\w`])(?P<word>[A-Za-z][\w-]*[A-Za-z0-9])__?(?!\w)"
)
EXPLICIT_TITLE = re.compile(r"^(.*?)\s*<([^<>]*)>$", re.DOTALL)
DIRECTIVE = re.compile(r"^\.\.\s+([\w:-]+)::\s*(.*)$")
LABEL = re.compile(r"^\.\.\s+_([^:`]+|`[^`]+`):\s*$")
OPTION = re.compile(r"^:[\w-]+:(\s|$)")
FIELD = re.compile(r"^:[\w -]+:(\s|$)")
BULLET = re.compile(r"^(?:[*+\-•]|#\.|\d+\.|\(?\d+\))\s+")
SIMPLE_TABLE = re.compile(r"^=+(\s+=+)*$")
WORD = re.compile(r"[\w'-]+")
LIST_OF_TASKS = re.compile(r"\b(?:and|or|vs\.?|versus)\s+\w+ing\b", re.IGNORECASE)
NOUN_USE = re.compile(r"(?:of|in|cases)\b", re.IGNORECASE)  # "Use of settings", "Use cases"

CODE_DIRECTIVES = frozenset(
    [
        "code-block",
        "code",
        "sourcecode",
        "literalinclude",
        "console",
        "snippet",
        "doctest",
        "testcode",
        "highlight",
        "parsed-literal",
        "productionlist",
        "math",
        "raw",
        "graphviz",
        "include",
    ]
)
TABLE_DIRECTIVES = frozenset(["table", "list-table", "csv-table"])
HIDDEN_DIRECTIVES = frozenset(
    [
        "image",
        "figure",
        "index",
        "only",
        "ifconfig",
        "rubric",
        "contents",
        "sectionauthor",
        "highlightlang",
    ]
)
ADMONITIONS = frozenset(
    [
        "note",
        "warning",
        "tip",
        "hint",
        "important",
        "attention",
        "caution",
        "danger",
        "error",
        "admonition",
        "seealso",
    ]
)

GERUNDS = {
    "accessing": "access",
    "adding": "add",
    "avoiding": "avoid",
    "building": "build",
    "calling": "call",
    "changing": "change",
    "combining": "combine",
    "configuring": "configure",
    "connecting": "connect",
    "controlling": "control",
    "converting": "convert",
    "creating": "create",
    "customizing": "customize",
    "dealing": "deal",
    "declaring": "declare",
    "defining": "define",
    "deleting": "delete",
    "deploying": "deploy",
    "disabling": "disable",
    "displaying": "display",
    "editing": "edit",
    "enabling": "enable",
    "executing": "execute",
    "extending": "extend",
    "filtering": "filter",
    "finding": "find",
    "generating": "generate",
    "getting": "get",
    "handling": "handle",
    "including": "include",
    "installing": "install",
    "integrating": "integrate",
    "limiting": "limit",
    "loading": "load",
    "making": "make",
    "managing": "manage",
    "migrating": "migrate",
    "modifying": "modify",
    "overriding": "override",
    "passing": "pass",
    "performing": "perform",
    "preventing": "prevent",
    "protecting": "protect",
    "providing": "provide",
    "querying": "query",
    "raising": "raise",
    "registering": "register",
    "removing": "remove",
    "rendering": "render",
    "retrieving": "retrieve",
    "running": "run",
    "saving": "save",
    "selecting": "select",
    "sending": "send",
    "serializing": "serialize",
    "serving": "serve",
    "setting": "set",
    "specifying": "specify",
    "subclassing": "subclass",
    "updating": "update",
    "using": "use",
    "validating": "validate",
    "working": "work",
    "writing": "write",
}

IMPERATIVES = frozenset(
    [
        "Add",
        "Build",
        "Configure",
        "Create",
        "Customize",
        "Install",
        "Keep",
        "Make",
        "Modify",
        "Provide",
        "Retrieve",
        "Review",
        "Run",
        "Start",
        "Use",
        "Write",
    ]
)

GENERIC = frozenset(["the", "and", "for", "with", "class", "classes", "object", "objects"])
PROPER = frozenset(["Django", "Python", "Unicode", "Apache", "Windows", "Oracle", "Jinja"])


@dataclass(frozen=True)
class QAPair:
    id: str
    question: str
    answer: str
    document: str | None
    kind: str
    category: str

    def as_row(self) -> dict[str, str | None]:
        return {
            "id": self.id,
            "question": self.question,
            "answer": self.answer,
            "document": self.document,
            "kind": self.kind,
            "category": self.category,
        }


@dataclass(frozen=True)
class _Block:
    kind: str  # "para", "item", "code", "table", "toc" or "field"
    text: str  # raw reStructuredText on one line
    owner: str = ""  # the signature of the API directive it describes ("Field.null")


@dataclass(frozen=True)
class _Refs:
    """What `:doc:` and `:ref:` targets without their own text render as."""

    titles: dict[str, str]
    labels: dict[str, str]


def qa_pairs(
    docs: Iterable[DocRow], max_answer_chars: int = 600, max_pairs: int | None = None
) -> list[QAPair]:
    """FAQ pairs, then heading pairs, each question once (case-insensitively)."""
    rows = list(docs)
    refs = _Refs(
        {row.id: _clean(row.title) for row in rows},
        {label: _clean(h) for row in rows for label, h in _labels(row.body).items()},
    )
    faq = [p for row in rows if row.id.startswith("faq/") for p in _faq(row, refs)]
    headings = [
        p
        for row in rows
        if not row.id.startswith(("faq/", "releases/"))
        for p in _headings(row, refs)
    ]
    pairs: list[QAPair] = []
    seen_questions: set[str] = set()
    seen_ids: set[str] = set()
    for question, text, document, kind, anchor, category in faq + headings:
        answer = _bound(text, max_answer_chars)
        if question.casefold() in seen_questions or not answer:
            continue
        seen_questions.add(question.casefold())
        base = f"{document}#{_slug(anchor)}"
        pair_id, n = base, 1
        while pair_id in seen_ids:
            n += 1
            pair_id = f"{base}-{n}"
        seen_ids.add(pair_id)
        pairs.append(QAPair(pair_id, question, answer, document, kind, category))
    return pairs if max_pairs is None else pairs[: max(max_pairs, 0)]


_Candidate = tuple[str, str, str, str, str, str]  # question, answer, document, kind, anchor,
# category


def _faq(row: DocRow, refs: _Refs) -> list[_Candidate]:
    out = []
    for section in split_sections(row.body, "rst"):
        if not section.trail:
            continue
        question = _clean(section.trail[-1], refs, row.id)
        if not question.endswith("?") or not WORD.search(question):
            continue
        answer = _answer(_blocks(section.text), refs, row.id)
        out.append((question, answer, row.id, "faq", question, "faq"))
    return out


def _headings(row: DocRow, refs: _Refs) -> list[_Candidate]:
    out = []
    title = _clean(row.title, refs, row.id)
    for section in split_sections(row.body):
        if not section.trail:
            continue
        raw = section.trail[-1]
        heading = _clean(raw, refs, row.id).rstrip(":. ")
        if not WORD.search(heading) or heading.casefold() == title.casefold():
            continue
        answer = _first_prose(_blocks(section.text), heading, refs, row.id)
        if answer:
            question, category = _question(raw, heading, title)
            out.append((question, answer, row.id, "heading", heading, category))
    return out


# Questions


def _question(raw: str, heading: str, title: str) -> tuple[str, str]:
    """A natural question about `heading`, a section of the document `title`, and its
    category."""
    if heading.endswith("?"):
        return heading, "faq"
    first, _, rest = heading.partition(" ")
    if first.casefold() == "how" and rest.casefold().startswith("to "):
        return _how_do_i(rest[3:]), "how-to"
    verb = GERUNDS.get(first.casefold()) or (first.casefold() if first in IMPERATIVES else None)
    if verb and rest and not LIST_OF_TASKS.search(rest) and not NOUN_USE.match(rest):
        return _how_do_i(f"{verb} {rest}"), "how-to"
    on = f"the Django documentation on {_lower_first(title)}"
    if " " not in heading and re.fullmatch(r"``[^`]+``|:[\w:-]+:`[^`]+`", raw.strip()):
        return f"What is {heading} in {on}?", "reference"
    return f"What does {on} say about {_lower_first(heading)}?", "topic"


def _how_do_i(task: str) -> str:
    task = re.sub(r"\byour\b", "my", re.sub(r"\byourself\b", "myself", task))
    where = "" if "django" in task.casefold() else " in Django"
    return f"How do I {task}{where}?"


def _lower_first(text: str) -> str:
    """'Field options' -> 'field options', leaving 'Django', 'QuerySet', 'Q()' and 'URLs' be."""
    first = text.split(" ", 1)[0]
    word = first[:1].isupper() and all(c.islower() or c in "'-" for c in first[1:])
    common = word and (len(first) > 1 or first == "A") and first.removesuffix("'s") not in PROPER
    return text[:1].lower() + text[1:] if common else text


# Answers


def _answer(blocks: list[_Block], refs: _Refs, doc: str) -> str:
    """The prose of the blocks (paragraphs and list items) as one text."""
    pieces: list[tuple[str, str]] = []
    for n, block in enumerate(blocks):
        if block.kind not in ("para", "item"):
            continue
        text = _clean(block.text, refs, doc)
        followed = n + 1 < len(blocks) and blocks[n + 1].kind in ("para", "item")
        if text.endswith(":") and not followed:
            text = _drop_last_sentence(text)
        if text:
            pieces.append((block.kind, f"- {text}" if block.kind == "item" else text))
    out = ""
    for n, (kind, text) in enumerate(pieces):
        joint = "\n" if kind == "item" and n and pieces[n - 1][0] == "item" else "\n\n"
        out = f"{out}{joint}{text}" if out else text
    return out


def _first_prose(blocks: list[_Block], heading: str, refs: _Refs, doc: str) -> str:
    """The section's first paragraph, when it is prose (no code, table or link list)
    and describes the heading (not some function further down its module)."""
    names = {w.casefold() for w in re.findall(r"[^\W\d]\w{2,}", heading)} - GENERIC
    for block in blocks:
        if block.kind == "field":
            continue
        if block.owner and not any(name in block.owner.casefold() for name in names):
            return ""
        text = _clean(block.text, refs, doc)
        if block.kind == "para" and text.startswith(("Default:", "Default ")):
            continue  # the "Default: ``False``" line in front of a setting's description
        if block.kind != "para" or _link_heavy(block.text):
            return ""
        text = _drop_last_sentence(text) if text.endswith(":") else text
        return text if len(text) >= MIN_PROSE_CHARS else ""
    return ""


def _link_heavy(raw: str) -> bool:
    """Mostly references to elsewhere ('See :doc:`x` and :ref:`y`.'), little prose."""
    prose = INLINE.sub(lambda m: "" if m.group("role") or m.group("link") else "x", raw)
    return len(WORD.findall(prose)) < len(WORD.findall(raw)) / 3


def _drop_last_sentence(text: str) -> str:
    """'Do this. Then run:' -> 'Do this.': a lead-in to something left out."""
    sentences = SENTENCE_END.split(text)
    return " ".join(sentences[:-1]).strip()


def _bound(text: str, limit: int) -> str:
    """At most `limit` characters, cut after a paragraph or sentence, else a word."""
    if len(text) <= limit:
        return text
    out = ""
    for piece in re.split(r"(?<=\n)", text):  # lines, each with its newline
        if len(out) + len(piece.rstrip()) <= limit:
            out += piece
            continue
        for sentence in SENTENCE_END.split(piece.strip()):
            joint = " " if out and not out.endswith("\n") else ""
            if len(out) + len(joint) + len(sentence) > limit:
                break
            out += joint + sentence
        break
    out = out.strip()
    while out.endswith(":"):  # a lead-in whose list or example was cut off
        head, _, last = out.rpartition("\n")
        out = f"{head}\n{_drop_last_sentence(last)}".strip()
    if out or limit < 2:
        return out
    words = text[: limit - 1].rsplit(maxsplit=1)
    return f"{words[0].rstrip(',;:')}…" if len(words) > 1 else text[: limit - 1] + "…"


# reStructuredText


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


def _blocks(text: str) -> list[_Block]:
    """Paragraphs, list items, code, tables and tables of contents, in order."""
    lines = text.expandtabs(8).splitlines()
    blocks: list[_Block] = []
    i = 0
    while i < len(lines):
        stripped, indent = lines[i].strip(), _indent(lines[i])
        if not stripped:
            i += 1
        elif stripped.startswith(".. ") or stripped == "..":
            end = _indented_end(lines, i + 1, indent)
            blocks.extend(_directive(stripped, lines[i + 1 : end]))
            i = end
        elif stripped.startswith(("+-", "+=")):
            i = _end_of(lines, i, lambda s: s.startswith(("+", "|")))
            blocks.append(_Block("table", ""))
        elif SIMPLE_TABLE.match(stripped):
            i = _simple_table_end(lines, i)
            blocks.append(_Block("table", ""))
        elif stripped.startswith(">>>"):
            i = _end_of(lines, i, bool)
            blocks.append(_Block("code", ""))
        else:
            i = _paragraph(lines, i, blocks)
    return blocks


def _paragraph(lines: list[str], start: int, blocks: list[_Block]) -> int:
    """Read the paragraph or list item at `start` (and a literal block after it)."""
    base = _indent(lines[start])
    bullet = BULLET.match(lines[start].strip())
    end = start + 1
    while end < len(lines) and lines[end].strip():
        nxt = lines[end].strip()
        if _indent(lines[end]) <= base and (BULLET.match(nxt) or nxt.startswith(".. ")):
            break
        end += 1
    chunk = [line.strip() for line in lines[start:end]]
    if bullet:
        chunk[0] = chunk[0][bullet.end() :]
        blocks.append(_Block("item", " ".join(chunk)))
    elif len(chunk) > 1 and _indent(lines[start + 1]) > base:
        blocks.append(_Block("item", f"{chunk[0]}: {' '.join(chunk[1:])}"))  # definition
    elif FIELD.match(chunk[0]):
        blocks.append(_Block("field", " ".join(chunk)))
    else:
        blocks.append(_Block("para", " ".join(chunk)))
    if blocks[-1].text.endswith("::"):
        end = _indented_end(lines, end, base)
        blocks.append(_Block("code", ""))
    return end


def _directive(header: str, content: list[str]) -> list[_Block]:
    """What a `.. name:: args` directive (or a comment or label) shows as prose."""
    match = DIRECTIVE.match(header)
    if not match:
        return []  # a comment, a hyperlink target or a label
    name, args = match.group(1).split(":")[-1], match.group(2)
    if name in CODE_DIRECTIVES:
        return [_Block("code", "")]
    if name in TABLE_DIRECTIVES:
        return [_Block("table", "")]
    if name == "toctree":
        return [_Block("toc", "")]
    if name in HIDDEN_DIRECTIVES or header.startswith(".. |"):
        return []
    while content and OPTION.match(content[0].strip()):
        content = content[1:]
    inner = _blocks(textwrap.dedent("\n".join(content)))
    if name not in ADMONITIONS:
        return [_Block(b.kind, b.text, b.owner or args) for b in inner]
    return [_Block("para", args), *inner] if args and name != "admonition" else inner


def _indented_end(lines: list[str], start: int, indent: int) -> int:
    """The first line from `start` that is neither blank nor indented past `indent`."""
    end = start
    while end < len(lines) and (not lines[end].strip() or _indent(lines[end]) > indent):
        end += 1
    return end


def _end_of(lines: list[str], start: int, keep: Callable[[str], bool]) -> int:
    """The first line from `start` whose stripped text `keep` refuses."""
    end = start
    while end < len(lines) and keep(lines[end].strip()):
        end += 1
    return end


def _simple_table_end(lines: list[str], start: int) -> int:
    """A simple table ends at a border line that a blank line (or the end) follows."""
    end = start + 1
    while end < len(lines):
        stripped = lines[end].strip()
        after = lines[end + 1].strip() if end + 1 < len(lines) else ""
        end += 1
        if SIMPLE_TABLE.match(stripped) and not after:
            break
    return end


def _labels(body: str) -> dict[str, str]:
    """`.. _label:` targets in front of a heading, mapped to the heading's text."""
    lines = body.splitlines()
    labels: dict[str, str] = {}
    for i, line in enumerate(lines):
        match = LABEL.match(line.strip())
        if not match:
            continue
        j = i + 1
        while j < len(lines) and (not lines[j].strip() or LABEL.match(lines[j].strip())):
            j += 1
        if j + 1 < len(lines) and RST_ADORNMENT.match(lines[j]):
            j += 1  # an overline
        if j + 1 < len(lines) and lines[j].strip() and RST_ADORNMENT.match(lines[j + 1]):
            labels.setdefault(match.group(1).strip("`").casefold(), lines[j].strip())
    return labels


def _clean(raw: str, refs: _Refs | None = None, doc: str = "") -> str:
    """Plain text for a line of reStructuredText with inline markup."""
    text = raw.strip()
    if text.endswith("::"):
        text = text[:-2].rstrip() if text[:-2].endswith((" ", "\t")) or text == "::" else text[:-1]
    text = INLINE.sub(lambda m: _inline(m, refs, doc), text)
    return re.sub(r"\s+", " ", text).strip()


def _inline(match: re.Match[str], refs: _Refs | None, doc: str) -> str:
    groups = match.groupdict()
    if groups["esc"] is not None:
        return "" if groups["esc"].isspace() else groups["esc"]
    if groups["role"] is not None:
        return _role(groups["role"], groups["body"], refs, doc)
    if groups["link"] is not None:
        explicit = EXPLICIT_TITLE.match(groups["link"])
        return (explicit.group(1) or explicit.group(2)) if explicit else groups["link"]
    for name in ("literal", "interpreted", "strong", "emph", "substitution", "word"):
        if groups[name] is not None:
            return groups[name]
    return ""  # a footnote reference


def _role(role: str, body: str, refs: _Refs | None, doc: str) -> str:
    """What Sphinx shows for `:role:`body``."""
    explicit = EXPLICIT_TITLE.match(body)
    if explicit and explicit.group(1):
        return explicit.group(1)
    target = (explicit.group(2) if explicit else body).strip().lstrip("!")
    if target.startswith("~"):
        target = target[1:].rsplit(".", 1)[-1]
    target = target.lstrip(".") if role not in ("doc", "ref") else target
    if role == "doc":
        path = (
            target.lstrip("/")
            if target.startswith("/")
            else posixpath.join(posixpath.dirname(doc), target)
        )
        title = refs.titles.get(posixpath.normpath(path)) if refs else None
        return title or target.rstrip("/").rsplit("/", 1)[-1].replace("-", " ")
    if role == "ref":
        label = refs.labels.get(target.casefold()) if refs else None
        return label or target.replace("-", " ").replace("_", " ")
    if role in ("pep", "rfc"):
        return f"{role.upper()} {target}"
    if role == "ticket":
        return f"ticket #{target}"
    if role in ("meth", "func") and not target.endswith(")"):
        target += "()"
    return target


def _slug(text: str) -> str:
    return re.sub(r"[\W_]+", "-", text.casefold()).strip("-")[:80].strip("-") or "section"
