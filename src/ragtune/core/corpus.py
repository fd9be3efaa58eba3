"""Turning a tree of reStructuredText/Markdown files into rows of a documents table.

Used by the demo (Django's docs), and useful for any docs-as-code corpus: the title is
the file's first heading, the body the rest, the key the path without its suffix.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ragtune.core.chunking import split_sections

VERSION_PART = re.compile(r"(\d+)")


@dataclass(frozen=True)
class DocRow:
    id: str
    title: str
    body: str
    url: str
    section: str

    def as_row(self) -> dict[str, str]:
        return {
            "id": self.id,
            "title": self.title,
            "body": self.body,
            "url": self.url,
            "section": self.section,
        }


def split_title(text: str) -> tuple[str, str]:
    """(first heading, the text after its adornment); ('', text) when there is none."""
    sections = split_sections(text)
    if not sections or not sections[0].trail:
        return "", text.strip()
    title = sections[0].trail[0]
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if line.strip() == title:
            rest = lines[i + 1 :]
            while rest and (not rest[0].strip() or set(rest[0].strip()) <= set("=-~^*#`'\":.+_<>")):
                rest = rest[1:]
            return title, "\n".join(rest).strip()
    return title, text.strip()


def doc_row(relative_path: str, text: str, base_url: str) -> DocRow:
    """A row for one docs file, e.g. `topics/db/models.txt`."""
    key = relative_path.removesuffix(".txt").removesuffix(".rst").removesuffix(".md")
    title, body = split_title(text)
    section = key.split("/", 1)[0] if "/" in key else "index"
    return DocRow(key, title or key, body, f"{base_url.rstrip('/')}/{key}/", section)


def version_key(name: str) -> tuple[int, ...]:
    """Sort key for names like `releases/5.2.10` so that 5.2.10 comes after 5.2.9."""
    return tuple(int(part) for part in VERSION_PART.findall(name))
