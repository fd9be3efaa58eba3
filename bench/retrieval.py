"""Retrieval quality on the Django docs: recall@5, recall@10 and MRR of vector, text and
hybrid search, with the fusion ragtune used before (reciprocal rank, k = 60) beside the
one in params (`search:`) and the grid the default was chosen on, on three labelled sets:

- `questions`: the demo's labelled questions (table `qa_pairs`) -> their source document;
- `identifiers`: built from the docs themselves: release-note CVE ids and ticket numbers
  -> the release notes that mention them, setting names -> the pages that define them,
  dotted function and class paths -> their reference pages;
- `paraphrased`: questions written in other words than the docs use -> the pages that
  answer them, so that a gain on identifiers is not a loss on meaning.

    .venv/bin/python bench/retrieval.py --params /path/to/demo/params.yaml
    .venv/bin/python bench/retrieval.py --quick    # checks the script, measures nothing

It needs a demo workspace (`make demo`) and only reads its index. Each query's two
candidate lists are fetched once and every fusion is scored on the same lists, so the
comparison is side by side in one run; a hit counts when its document is relevant
(ranks are chunk ranks, as `ragtune search -k` returns them). Hybrid search latency (p50,
the query embedding included) is timed before vs now, alternating per query.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import sqlite3
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from common import ROOT

from ragtune.adapters.index.base import SearchFilter, SearchHit
from ragtune.adapters.index.lance import LanceIndex
from ragtune.config import IndexConfig, SearchConfig, load_params
from ragtune.search import fuse, search
from ragtune.workspace import open_embedder

DEPTH = 50
BEFORE = SearchConfig(fusion="rrf", rrf_k=60, identifier_boost=0.0)

# written for this benchmark in other words than the docs use; -> pages that answer them
PARAPHRASED: list[tuple[str, tuple[str, ...]]] = [
    ("How can I stop other sites from showing my pages inside a frame?", ("ref/clickjacking",)),
    ("How do I send mail to my users from the application?", ("topics/email",)),
    ("How can visitors see times in their own local zone?", ("topics/i18n/timezones",)),
    ("How do I run some code every time a row is saved?", ("topics/signals", "ref/signals")),
    ("How do I make my site available in several languages?", ("topics/i18n/translation",)),
    (
        "How do I write automated checks for my pages?",
        ("topics/testing/tools", "topics/testing/overview"),
    ),
    ("Where do pictures that users upload end up?", ("topics/files", "topics/http/file-uploads")),
    ("How can I make slow pages render faster by keeping results around?", ("topics/cache",)),
    ("How do I change the database tables after editing my models?", ("topics/migrations",)),
    ("How do I let someone who forgot their password choose a new one?", ("topics/auth/default",)),
    (
        "How do I protect my forms from forged requests coming from other sites?",
        ("ref/csrf", "howto/csrf"),
    ),
    (
        "How do I split a long list of objects over several pages?",
        ("topics/pagination", "ref/paginator"),
    ),
    ("How do I add my own command to manage.py?", ("howto/custom-management-commands",)),
    ("How do I run my project on an asynchronous web server?", ("howto/deployment/asgi/index",)),
    (
        "Where do stylesheets and images go, and who serves them in production?",
        ("howto/static-files/index", "howto/static-files/deployment", "ref/contrib/staticfiles"),
    ),
    (
        "How do I avoid one query per row when I follow a foreign key?",
        ("ref/models/querysets", "topics/db/optimization"),
    ),
    ("Can I write my own SQL instead of using the ORM?", ("topics/db/sql",)),
    ("How do I write my own template filter?", ("howto/custom-template-tags",)),
    (
        "How can admin users apply one operation to many selected rows?",
        ("ref/contrib/admin/actions",),
    ),
    (
        "How do I use my own class for user accounts instead of the built-in one?",
        ("topics/auth/customizing",),
    ),
    ("How do I restrict a page to people who are signed in?", ("topics/auth/default",)),
    ("How do I tell search engines which pages my site has?", ("ref/contrib/sitemaps",)),
    ("How can I publish a news feed that readers subscribe to?", ("ref/contrib/syndication",)),
    ("How do I undo all changes if one step of a save fails?", ("topics/db/transactions",)),
    ("How do I use more than one database server in a project?", ("topics/db/multi-db",)),
    ("How do I write errors and warnings to a file?", ("topics/logging", "ref/logging")),
    (
        "How are stored passwords protected, and can I pick the algorithm?",
        ("topics/auth/passwords",),
    ),
    (
        "How do I write a view as a class instead of a function?",
        ("topics/class-based-views/index", "ref/class-based-views/index"),
    ),
    ("How can I check that two fields of a form agree with each other?", ("ref/forms/validation",)),
    ("How can I turn my model objects into JSON or XML?", ("topics/serialization",)),
    ("How do I run code on every request before the view?", ("topics/http/middleware",)),
    ("How do I map web addresses with variable parts to views?", ("topics/http/urls",)),
    (
        "How do I let users download a spreadsheet-friendly comma-separated file?",
        ("howto/outputting-csv",),
    ),
    ("How do I produce a printable document file from a view?", ("howto/outputting-pdf",)),
    ("How do I compute totals and averages over many rows?", ("topics/db/aggregation",)),
    ("What should I check before putting my site online?", ("howto/deployment/checklist",)),
    (
        "How do I fill a new column with values during a schema change?",
        ("howto/writing-migrations", "topics/migrations"),
    ),
    ("How can the admin edit child objects on the parent's page?", ("ref/contrib/admin/index",)),
    ("How do I show a form field with a different kind of input box?", ("ref/forms/widgets",)),
    (
        "How do I show a one-time notice to the user after a form is sent?",
        ("ref/contrib/messages",),
    ),
    ("How do I load sample data into the database?", ("howto/initial-data", "topics/db/fixtures")),
    ("How do I get emailed when my site crashes?", ("howto/error-reporting",)),
]

CVE = re.compile(r"\bCVE-\d{4}-\d{4,}\b")
TICKET = re.compile(r":ticket:`(\d+)`")
SETTING = re.compile(r"^\.\. setting:: ([A-Z][A-Z0-9_]+)\s*$", re.M)
MODULE = re.compile(r"^\.\. (?:current)?module:: ([\w.]+)\s*$")
DEFINITION = re.compile(r"^\.\. (?:function|class):: ([A-Za-z_][\w]*)\s*(?:\(|$)")
RELEASE_NOTE = re.compile(r"^releases/\d")


@dataclass(frozen=True)
class Labelled:
    query: str
    relevant: frozenset[str]
    kind: str


def read_documents(database: Path) -> dict[str, str]:
    with sqlite3.connect(database) as db:
        return dict(db.execute("SELECT id, body FROM documents").fetchall())


def question_set(database: Path, table: str, limit: int, rng: random.Random) -> list[Labelled]:
    """The demo's labelled questions, each -> the document its answer was taken from."""
    with sqlite3.connect(database) as db:
        rows = db.execute(f"SELECT question, document FROM {table}").fetchall()
    pairs = sorted({(q, d) for q, d in rows if d})
    pairs = rng.sample(pairs, min(limit, len(pairs)))
    return [Labelled(q, frozenset([d]), "question") for q, d in pairs]


def identifier_set(documents: dict[str, str], per_kind: int, rng: random.Random) -> list[Labelled]:
    """CVE ids and tickets -> release notes naming them; settings and dotted paths -> the
    pages that define them; `per_kind` of each, sampled."""
    found: dict[str, dict[str, set[str]]] = {k: {} for k in ("cve", "ticket", "setting", "path")}
    for key, body in documents.items():
        if RELEASE_NOTE.match(key):
            for cve in CVE.findall(body):
                found["cve"].setdefault(cve, set()).add(key)
            for ticket in TICKET.findall(body):
                found["ticket"].setdefault(ticket, set()).add(key)
        for name in SETTING.findall(body):
            found["setting"].setdefault(name, set()).add(key)
        module = None
        for line in body.splitlines():
            if m := MODULE.match(line):
                module = m.group(1)
            elif module and (d := DEFINITION.match(line)):
                found["path"].setdefault(f"{module}.{d.group(1)}", set()).add(key)
    template = {
        "cve": "Which Django release fixed {}?",
        "ticket": "Which release fixed ticket #{}?",
        "setting": "What does the {} setting do?",
        "path": "What does {} do?",
    }
    out = []
    for kind, names in found.items():
        chosen = rng.sample(sorted(names), min(per_kind, len(names)))
        out += [Labelled(template[kind].format(n), frozenset(names[n]), kind) for n in chosen]
    return out


def paraphrased_set(keys: set[str]) -> list[Labelled]:
    missing = sorted({d for _, docs in PARAPHRASED for d in docs} - keys)
    if missing:
        sys.exit(f"bench/retrieval.py: the docs lack {missing}; is this the Django 5.2 demo?")
    return [Labelled(q, frozenset(d), "paraphrased") for q, d in PARAPHRASED]


def only_indexed(sets: dict[str, list[Labelled]], keys: set[str]) -> dict[str, list[Labelled]]:
    """Labels limited to documents the index holds (the demo may hold a few back); a query
    left with none is dropped."""
    out = {}
    for name, labelled in sets.items():
        kept = [Labelled(i.query, i.relevant & keys, i.kind) for i in labelled]
        out[name] = [i for i in kept if i.relevant]
    return out


def first_relevant(hits: Sequence[SearchHit], relevant: frozenset[str]) -> int | None:
    for rank, hit in enumerate(hits, start=1):
        if hit.key in relevant:
            return rank
    return None


def scores(ranks: list[int | None]) -> dict[str, float]:
    n = len(ranks)
    return {
        "recall@5": round(sum(1 for r in ranks if r is not None and r <= 5) / n, 3),
        "recall@10": round(sum(1 for r in ranks if r is not None and r <= 10) / n, 3),
        "mrr@10": round(sum(1 / r for r in ranks if r is not None and r <= 10) / n, 3),
        "n": n,
    }


def variants(now: SearchConfig) -> dict[str, SearchConfig]:
    """The fusions compared: before, now (params), and the grid the default was chosen on
    (the identifier boost in each fusion's own scale: RRF's top score is 2 / (k + 1))."""
    grid: dict[str, SearchConfig] = {"hybrid before (rrf k=60)": BEFORE, "hybrid now": now}
    for k in (60, 10, 2, 1):
        for share in (0.0, 0.5, 1.0):
            boost = round(share * 2 / (k + 1), 4)
            grid[f"rrf k={k} boost={boost:g}"] = SearchConfig(
                fusion="rrf", rrf_k=k, identifier_boost=boost
            )
    for weight in (0.4, 0.5, 0.6):
        for boost in (0.0, 1.0):
            grid[f"convex w={weight} boost={boost:g}"] = SearchConfig(
                fusion="convex", text_weight=weight, identifier_boost=boost
            )
    return grid


def measure_quality(
    sets: dict[str, list[Labelled]], index: LanceIndex, embedder: Any, config: SearchConfig
) -> dict[str, Any]:
    where = SearchFilter()
    configs = variants(config)
    ranks: dict[str, dict[str, list[int | None]]] = {}
    for name, labelled in sets.items():
        vectors = embedder.encode([item.query for item in labelled])
        table: dict[str, list[int | None]] = {}
        for item, vector in zip(labelled, vectors, strict=True):
            by_vector = index.vector_search(vector, DEPTH, where)
            by_text = index.text_search(item.query, DEPTH, where)
            runs = {"vector": by_vector, "text": by_text}
            for label, variant in configs.items():
                runs[label] = fuse(item.query, by_vector, by_text, variant)
            for label, hits in runs.items():
                table.setdefault(label, []).append(first_relevant(hits[:10], item.relevant))
        ranks[name] = table
        if name == "identifiers":  # and each kind of identifier on its own
            for kind in sorted({i.kind for i in labelled}):
                mine = [j for j, i in enumerate(labelled) if i.kind == kind]
                ranks[f"{name}:{kind}"] = {
                    label: [r[j] for j in mine] for label, r in table.items()
                }
    return {name: {label: scores(r) for label, r in table.items()} for name, table in ranks.items()}


def measure_latency(
    queries: list[str],
    index: LanceIndex,
    embedder: Any,
    config: SearchConfig,
    repeats: int,
) -> dict[str, Any]:
    """p50/p95 of hybrid search (query embedding included), before vs now, alternating."""
    where = SearchFilter()
    sides = {"before": BEFORE, "now": config}
    for side in sides.values():
        search(index, embedder, queries[0], side, where)  # warm
    timings: dict[str, list[float]] = {name: [] for name in sides}
    for round_ in range(repeats):
        for i, query in enumerate(queries):
            order = list(sides) if (i + round_) % 2 == 0 else list(reversed(sides))
            for name in order:
                start = time.perf_counter()
                search(index, embedder, query, sides[name], where)
                timings[name].append(time.perf_counter() - start)
    out: dict[str, Any] = {}
    for name, values in timings.items():
        ordered = sorted(values)
        out[name] = {
            "p50_ms": round(1000 * statistics.median(ordered), 2),
            "p95_ms": round(1000 * ordered[int(0.95 * (len(ordered) - 1))], 2),
            "n": len(ordered),
        }
    out["now/before p50"] = round(out["now"]["p50_ms"] / out["before"]["p50_ms"], 3)
    return out


def print_table(quality: dict[str, Any]) -> None:
    names = list(quality)
    labels = list(quality[names[0]])
    head = f"{'':34}" + "".join(
        f"{n + ' (n=' + str(quality[n][labels[0]]['n']) + ')':>30}" for n in names
    )
    print(head)
    print(f"{'':34}" + "".join(f"{'R@5   R@10  MRR':>30}" for _ in names))
    for label in labels:
        cells = "".join(
            f"{quality[n][label]['recall@5']:>18.3f}{quality[n][label]['recall@10']:>6.3f}"
            f"{quality[n][label]['mrr@10']:>6.3f}"
            for n in names
        )
        print(f"{label:34}{cells}")


def run(params_file: Path, quick: bool, seed: int, per_kind: int, questions: int) -> dict[str, Any]:
    params = load_params(params_file)
    database = Path(params.sources[params.demo.source].url.partition(":///")[2])
    if not (Path(params.index.path) / f"{params.index.table}.lance").exists() or not (
        database.exists()
    ):
        sys.exit(f"bench/retrieval.py: no demo workspace at {params_file}; run `make demo` first")
    rng = random.Random(seed)
    documents = read_documents(database)
    if quick:
        per_kind, questions = 1, 3
    sets = {
        "questions": question_set(database, params.demo.qa_table, questions, rng),
        "identifiers": identifier_set(documents, per_kind, rng),
        "paraphrased": paraphrased_set(set(documents))[: 3 if quick else None],
    }
    index = LanceIndex(IndexConfig(path=params.index.path, table=params.index.table))
    chunks = index.table.count_rows()
    sets = only_indexed(sets, index.keys(params.demo.source))
    print(
        f"seed={seed} chunks={chunks} sets: "
        + ", ".join(f"{k}={len(v)}" for k, v in sets.items())
        + (" (QUICK: a check of the script, not a measurement)" if quick else ""),
        flush=True,
    )
    embedder = open_embedder(params)
    quality = measure_quality(sets, index, embedder, params.search)
    latency_queries = [i.query for s in sets.values() for i in s][: 6 if quick else 120]
    latency = measure_latency(latency_queries, index, embedder, params.search, 1 if quick else 3)
    return {
        "quick": quick,
        "seed": seed,
        "chunks": chunks,
        "search_now": params.search.model_dump(),
        "quality": quality,
        "latency_hybrid": latency,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", type=Path, default=ROOT / "params.yaml")
    parser.add_argument("--quick", action="store_true", help="a few queries: checks the script")
    parser.add_argument("--seed", type=int, default=0, help="which questions and identifiers")
    parser.add_argument("--per-kind", type=int, default=50, help="identifiers of each kind")
    parser.add_argument("--questions", type=int, default=200, help="demo questions sampled")
    parser.add_argument("--out", type=Path, default=None, help="also write the figures as JSON")
    args = parser.parse_args()
    started = time.perf_counter()
    result = run(args.params, args.quick, args.seed, args.per_kind, args.questions)
    result["duration_s"] = round(time.perf_counter() - started, 1)
    quality = result["quality"]
    print_table({k: v for k, v in quality.items() if ":" not in k})
    print()
    print_table({k: v for k, v in quality.items() if ":" in k})
    print(
        json.dumps(
            {"latency_hybrid": result["latency_hybrid"], "duration_s": result["duration_s"]},
            indent=2,
        )
    )
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
