"""The `ragtune` command line. Every command is a thin call into the library.

    ragtune source install docs      # changelog triggers on the `docs` source table
    ragtune sync --follow            # keep the index in step until Ctrl-C
    ragtune search "migrations" -k 3 --json

Every command takes `--params PATH` (default ./params.yaml); relative paths in that file
resolve against its folder. Problems print one `error:` line and exit non-zero.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from ragtune.errors import ConfigError, RagtuneError

app = typer.Typer(
    help="ragtune keeps a language model current (a live RAG index over your databases) "
    "and specialised (LoRA retraining).",
    epilog="Start with `make demo`. Then: ragtune search 'custom model field' | "
    "ragtune sync --follow | ragtune status. Every command takes --params PATH.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
source_app = typer.Typer(help="Change capture on source tables.", no_args_is_help=True)
app.add_typer(source_app, name="source")

out = Console(emoji=False)
err = Console(stderr=True, emoji=False)

ParamsOption = Annotated[
    Path,
    typer.Option("--params", "-p", help="params file; relative paths resolve against its folder"),
]
DEFAULT_PARAMS = Path("params.yaml")


def _load(params_path: Path) -> Any:
    from ragtune.config import load_params

    return load_params(params_path)


def quiet_environment() -> None:
    """No hub downloads and no telemetry, unless the user asked otherwise."""
    for name, value in {
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "DO_NOT_TRACK": "1",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "TOKENIZERS_PARALLELISM": "false",
        "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
        "MLFLOW_ENABLE_ASYNC_TRACE_LOGGING": "false",  # one-shot commands: write traces now
    }.items():
        os.environ.setdefault(name, value)


# -- source ---------------------------------------------------------------------------------


@source_app.command("install")
def source_install(
    name: Annotated[
        str | None, typer.Argument(help="source name (default: every changelog source)")
    ] = None,
    params: ParamsOption = DEFAULT_PARAMS,
) -> None:
    """Add the changelog table and INSERT/UPDATE/DELETE triggers to source tables.

    Each workspace gets its own queue per source; running it again upgrades an older
    install in place.
    """
    from ragtune.adapters.changelog import Changelog, workspace_id
    from ragtune.workspace import open_sources, open_state

    loaded = _load(params)
    selected = _changelog_sources(loaded, name)
    sources = open_sources(loaded, None if name is None else name)
    workspace_id(loaded.workspace.path, create=True)  # writable, before any DDL
    state = open_state(loaded)
    for source_name in selected:
        state.require_full(source_name)  # before the triggers: the state file is writable
        Changelog(sources[source_name], loaded.workspace.path).install()
        out.print(
            f"installed changelog for [bold]{source_name}[/] on {sources[source_name].config.table}"
            " — the next sync re-reads the whole table once"
        )


@source_app.command("uninstall")
def source_uninstall(
    name: Annotated[
        str | None, typer.Argument(help="source name (default: every changelog source)")
    ] = None,
    params: ParamsOption = DEFAULT_PARAMS,
) -> None:
    """Drop the changelog triggers and table (the index is left as it is)."""
    from ragtune.adapters.changelog import Changelog
    from ragtune.workspace import open_sources

    loaded = _load(params)
    selected = _changelog_sources(loaded, name)
    sources = open_sources(loaded, name)
    for source_name in selected:
        Changelog(sources[source_name], loaded.workspace.path).uninstall()
        out.print(f"removed changelog of [bold]{source_name}[/]")


def _changelog_sources(params: Any, name: str | None) -> list[str]:
    selected = params.selected_sources(name)
    names = [n for n, c in selected.items() if c.capture == "changelog"]
    if name is not None and not names:
        raise ConfigError(f"source '{name}' uses capture: cursor, which needs no install")
    return names


# -- sync -----------------------------------------------------------------------------------


@app.command(
    epilog="Examples: ragtune source install && ragtune sync  |  ragtune sync --follow  |  "
    "ragtune sync --partition 0/2 (and 1/2 elsewhere)  |  ragtune sync --full --rebuild "
    "(after a damaged or lost index)"
)
def sync(
    once: Annotated[bool, typer.Option("--once", help="one pass, then exit (the default)")] = False,
    follow: Annotated[
        bool, typer.Option("--follow", help="keep following changes until Ctrl-C")
    ] = False,
    source: Annotated[str | None, typer.Option("--source", "-s", help="only this source")] = None,
    full: Annotated[
        bool, typer.Option("--full", help="re-read every row (after changing chunking or model)")
    ] = False,
    rebuild: Annotated[
        bool,
        typer.Option(
            "--rebuild",
            help="the index is damaged or lost: drop what is left of it if damaged, then "
            "re-read every row (implies --full)",
        ),
    ] = False,
    partition: Annotated[
        str, typer.Option(help="I/N: process only key partition I of N (parallel consumers)")
    ] = "0/1",
    as_json: Annotated[bool, typer.Option("--json", help="print the run counts as JSON")] = False,
    allow_mass_delete: Annotated[
        bool,
        typer.Option(help="let a batch delete more than quality.max_delete_fraction of a source"),
    ] = False,
    params: ParamsOption = DEFAULT_PARAMS,
) -> None:
    """Bring the index in step with the sources: inserts, updates and deletes.

    Safe to interrupt at any moment: capture positions advance only after the index
    write they cover is durable, so a restart replays, never loses, a change.
    """
    from ragtune.sync import Partition

    if once and follow:
        raise ConfigError("--once and --follow exclude each other; pick one")
    loaded = _load(params)
    part = _parse_partition(partition)
    if rebuild and (follow or part != (0, 1)):
        raise ConfigError("--rebuild is one pass over whole sources: drop --follow and --partition")
    if follow:
        _follow(loaded, source, part, full, allow_mass_delete)
        return
    from ragtune.adapters.state import RunCounts
    from ragtune.index_health import rebuild as rebuild_index

    with _progress_bar(as_json) as progress:
        from ragtune.workspace import open_syncs

        syncs = open_syncs(loaded, source, Partition(*part), progress)
        totals: dict[str, Any] = {}
        for one in syncs:
            if rebuild:
                err.print(rebuild_index(one), markup=False, highlight=False)
            counts: RunCounts = one.run(full=full or rebuild, allow_mass_delete=allow_mass_delete)
            totals[one.name] = counts.summary()
    if as_json:
        print(json.dumps({"sources": totals}))
    else:
        for name, counts_summary in totals.items():
            out.print(_describe_counts(name, counts_summary))


def _parse_partition(text: str) -> tuple[int, int]:
    index, sep, count = text.partition("/")
    try:
        i, n = int(index), int(count)
    except ValueError:
        i, n = -1, 0
    if not sep or n < 1 or not 0 <= i < n:
        raise ConfigError(f"--partition {text!r}: write I/N with 0 <= I < N, e.g. 0/2")
    return i, n


def _describe_counts(name: str, c: dict[str, int]) -> str:
    return (
        f"[bold]{name}[/]: {c['changes']} changed keys -> {c['upserted_docs']} upserted "
        f"({c['embedded_chunks']} chunks embedded), {c['deleted_docs']} deleted, "
        f"{c['unchanged_docs']} unchanged"
    )


def _follow(
    params: Any, source: str | None, part: tuple[int, int], full: bool, allow_mass_delete: bool
) -> None:
    from ragtune.follow import follow
    from ragtune.sync import Partition
    from ragtune.workspace import open_syncs

    stop = threading.Event()

    def request_stop(signum: int, _frame: Any) -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        err.print("stopping after the current batch (Ctrl-C again to abort; nothing is lost)")
        stop.set()

    previous = signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    syncs = open_syncs(params, source, Partition(*part))
    err.print(f"following {', '.join(s.name for s in syncs)} — Ctrl-C to stop")

    def report(name: str, counts: Any) -> None:
        if counts.changes:
            err.print(f"{time.strftime('%H:%M:%S')} " + _describe_counts(name, counts.summary()))

    try:
        follow(
            syncs,
            params.sync.poll_interval_s,
            stop,
            on_pass=report,
            full=full,
            allow_mass_delete=allow_mass_delete,
        )
    finally:
        signal.signal(signal.SIGINT, previous)
    err.print("stopped cleanly")


class _progress_bar:
    """A rich progress bar per source (or per job) for long work (hidden for --json)."""

    def __init__(self, hidden: bool, verb: str = "sync"):
        self.verb = verb
        self.hidden = hidden or not err.is_terminal
        self.progress: Any = None
        self.tasks: dict[str, Any] = {}

    def __enter__(self) -> _progress_bar:
        if not self.hidden:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

            self.progress = Progress(
                "[progress.description]{task.description}",
                BarColumn(),
                MofNCompleteColumn(),
                TimeRemainingColumn(),
                console=err,
                transient=True,
            )
            self.progress.start()
        return self

    def __call__(self, name: str, done: int, total: int | None) -> None:
        if self.progress is None:
            return
        if name not in self.tasks:
            self.tasks[name] = self.progress.add_task(f"{self.verb} {name}", total=total)
        self.progress.update(self.tasks[name], completed=done, total=max(total or 0, done))

    def __exit__(self, *exc: object) -> None:
        if self.progress is not None:
            self.progress.stop()


# -- search ---------------------------------------------------------------------------------


@app.command(
    epilog="Examples: ragtune search 'database migrations' -k 3  |  "
    "ragtune search 'cache' --where section=topics --json  |  ragtune search --file queries.txt"
)
def search(
    query: Annotated[
        str | None, typer.Argument(help="the query; `-` reads one query a line from stdin")
    ] = None,
    k: Annotated[int | None, typer.Option("-k", min=1, max=1000, help="results per query")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="JSON out (one line per query)")] = False,
    file: Annotated[
        Path | None, typer.Option("--file", "-f", help="read one query a line from this file")
    ] = None,
    mode: Annotated[str | None, typer.Option(help="hybrid (default), vector or text")] = None,
    source: Annotated[
        list[str] | None, typer.Option("--source", "-s", help="only these sources")
    ] = None,
    where: Annotated[
        list[str] | None,
        typer.Option("--where", "-w", help="metadata filter NAME=VALUE (repeatable)"),
    ] = None,
    tenant: Annotated[
        str | None, typer.Option(help="return this tenant's rows (and public ones)")
    ] = None,
    params: ParamsOption = DEFAULT_PARAMS,
) -> None:
    """Hybrid retrieval: vector and full-text results fused by reciprocal rank.

    Batch mode (`-` or --file) prints one JSON line per query.
    """
    from ragtune.adapters.index.base import SearchFilter
    from ragtune.search import SearchResult, as_of, parse_where
    from ragtune.search import search as run_search
    from ragtune.workspace import open_embedder, open_index, open_state

    if mode is not None and mode not in ("hybrid", "vector", "text"):
        raise ConfigError(f"--mode {mode!r}: choose hybrid, vector or text")
    queries = _queries(query, file)
    batch = query == "-" or file is not None
    loaded = _load(params)
    for name in source or []:
        loaded.source(name)
    where_filter = SearchFilter(tuple(source or ()), parse_where(where or []), tenant)
    index, embedder, state = open_index(loaded), open_embedder(loaded), open_state(loaded)
    searched = list(source or loaded.sources)
    from ragtune.index_health import verify

    verify(loaded, index, state, searched)  # a damaged index answers one error, not results
    for text in queries:
        hits = run_search(index, embedder, text, loaded.search, where_filter, k, mode)
        result = SearchResult(text, as_of(state, searched), hits)
        if as_json or batch:
            payload = result.to_json()
            if not batch:
                payload.pop("query")
            print(json.dumps(payload, ensure_ascii=False), flush=True)
        else:
            _print_hits(result)


def _queries(query: str | None, file: Path | None) -> list[str]:
    if file is not None:
        if query is not None:
            raise ConfigError("give either QUERY or --file, not both")
        if not file.is_file():
            raise ConfigError(f"--file {file}: no such file")
        lines = file.read_text(encoding="utf-8").splitlines()
    elif query == "-":
        lines = sys.stdin.read().splitlines()
    elif query is None or not query.strip():
        raise ConfigError("give a QUERY, `-` to read queries from stdin, or --file F")
    else:
        return [query]
    return [line for line in lines if line.strip()]


def _print_hits(result: Any) -> None:
    table = Table(title=f"{result.query}", caption=f"as of {result.as_of or 'never synced'}")
    table.add_column("#", justify="right")
    table.add_column("score", justify="right")
    table.add_column("source:key#chunk")
    table.add_column("text")
    for n, hit in enumerate(result.hits, start=1):
        snippet = " ".join(hit.text.split())[:160]
        table.add_row(str(n), f"{hit.score:.4f}", f"{hit.source}:{hit.key}#{hit.chunk}", snippet)
    out.print(table)


# -- quarantine -----------------------------------------------------------------------------


@app.command()
def quarantine(
    source: Annotated[str | None, typer.Option("--source", "-s", help="only this source")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="a JSON list of objects")] = False,
    params: ParamsOption = DEFAULT_PARAMS,
) -> None:
    """Rows the quality gate held back, with the reasons. A row is released by itself
    once the source fixes it (its next change is validated again)."""
    from ragtune.workspace import open_state

    loaded = _load(params)
    if source is not None:
        loaded.source(source)
    held = open_state(loaded).quarantined(source)
    if as_json:
        print(json.dumps(held))
        return
    if not held:
        out.print("no quarantined rows")
        return
    table = Table(title=f"{len(held)} quarantined rows")
    for column in ("source", "key", "reasons", "first seen", "last seen"):
        table.add_column(column)
    for row in held:
        table.add_row(
            row["source"],
            row["key"],
            "; ".join(row["reasons"]),
            row["first_seen"],
            row["last_seen"],
        )
    out.print(table)


# -- status ---------------------------------------------------------------------------------


@app.command()
def status(
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
    params: ParamsOption = DEFAULT_PARAMS,
) -> None:
    """Freshness per source (lag p50/p95, as_of), index size and version, last runs."""
    from ragtune.status import collect_status

    report = collect_status(_load(params))
    if as_json:
        print(json.dumps(report, default=str))
        return
    table = Table(title="sources")
    for column in (
        "source",
        "capture",
        "documents",
        "chunks",
        "pending",
        "quarantined",
        "lag p50 s",
        "lag p95 s",
        "as of",
    ):
        table.add_column(column)
    for name, s in report["sources"].items():
        table.add_row(
            name,
            s.get("capture", ""),
            str(s["documents"]),
            str(s["chunks"]),
            str(s.get("pending", "")) if s.get("error") is None else f"[red]{s['error']}[/]",
            str(s["quarantined"]),
            str(s["lag_p50_s"]),
            str(s["lag_p95_s"]),
            str(s["as_of"]),
        )
    out.print(table)
    index = report["index"]
    out.print(f"index: {index['backend']} version {index['version']} at {index['location']}")
    if report.get("ui"):
        out.print(f"UIs: Prefect {report['ui']['prefect']}  MLflow {report['ui']['mlflow']}")
    quality = report["quality"]
    if quality["latest_validation"]:
        out.print(f"quality: latest validation file://{quality['latest_validation']}")
        out.print(f"         Data Docs file://{quality['data_docs']}")
    model = report.get("model") or {}
    champion = model.get("champion")
    if champion:
        out.print(
            f"model: {champion['name']} version {champion['version']} is champion "
            f"(run {champion['run_id']}); tracking {model['tracking_uri']}"
        )
    elif model:
        out.print(f"model: no champion yet (`ragtune train`); tracking {model['tracking_uri']}")
    for version in model.get("trained_on_deleted_rows") or []:
        out.print(
            f"[yellow]model version {version} was trained on labelled rows since deleted at "
            "the source; a retrain is due[/]"
        )
    for run in report["last_runs"]:
        out.print(
            f"  run {run['id']} {run['source']} {run['kind']} {run['status']} "
            f"at {run['started_at']}: {run['counts']}"
            + (f" — {run['error']}" if run["error"] else "")
        )


# -- ask / api ------------------------------------------------------------------------------


@app.command(
    epilog="Examples: ragtune ask 'How do I run migrations?' | ragtune ask --json --tenant acme "
    "'What changed?' | ragtune ask --model base 'What is a QuerySet?'"
)
def ask(
    question: Annotated[str, typer.Argument(help="the question")],
    as_json: Annotated[
        bool,
        typer.Option(
            "--json",
            help='print {"answer", "citations": [{"n", "source", "key", "chunk", "score"}], '
            '"as_of", "model": {"name", "version"}, "timings"}',
        ),
    ] = False,
    tenant: Annotated[
        str | None, typer.Option(help="retrieve only this tenant's rows (and public ones)")
    ] = None,
    model: Annotated[
        str, typer.Option(help="champion (default; the base model when there is none) or base")
    ] = "champion",
    k: Annotated[int | None, typer.Option("-k", min=1, max=50, help="sources to retrieve")] = None,
    params: ParamsOption = DEFAULT_PARAMS,
) -> None:
    """Answer a question from fresh sources, citing them as \\[n], with the champion model."""
    from ragtune.answer import Answerer

    answer = Answerer(_load(params), model).ask(question, k=k, tenant=tenant)
    if as_json:
        print(json.dumps(answer.to_json(), default=str))
        return
    out.print(answer.answer, markup=False, highlight=False)
    for citation in answer.citations:
        hit = answer.sources[citation["n"] - 1]
        where = hit.metadata.get("url") or f"{hit.source}/{hit.key}"
        out.print(f"  [{citation['n']}] {where}  (chunk {hit.chunk})", markup=False)
    model_line = answer.model["name"] + (
        f" version {answer.model['version']}" if answer.model["version"] else " (no champion yet)"
    )
    note = "; citation attributed after generation" if answer.attribution == "post-hoc" else ""
    as_of = answer.as_of.isoformat(timespec="seconds") if answer.as_of else "never"
    err.print(
        f"model {model_line}; sources as of {as_of}; retrieve {answer.timings['retrieve_ms']} ms, "
        f"generate {answer.timings['generate_ms']} ms{note}",
        markup=False,
    )


@app.command()
def api(
    host: Annotated[
        str | None,
        typer.Option(help="interface to listen on (default: api.host); not localhost: needs keys"),
    ] = None,
    port: Annotated[
        int | None, typer.Option(min=1, max=65535, help="port (default: api.port)")
    ] = None,
    params: ParamsOption = DEFAULT_PARAMS,
) -> None:
    """HTTP API: /search, /ask, /status, /healthz; OpenAPI docs at /docs (work offline).
    Callers send an API key (api.keys_file, RAGTUNE_API_KEYS); without keys it serves
    localhost only."""
    from ragtune.api import serve

    _load(params)  # a bad params file is one error line before the server starts
    serve(params, host, port)


# -- train ----------------------------------------------------------------------------------


@app.command(
    epilog="Examples: ragtune train | ragtune train --set train.max_steps=20 "
    "--set build_dataset.rag_context=raft | ragtune train --set promote.force=true"
)
def train(
    set_: Annotated[
        list[str] | None,
        typer.Option(
            "--set",
            help="this run's value for a parameter, NAME=VALUE (repeatable): train.max_steps, "
            "train.epochs, train.learning_rate, train.lora_rank, train.lora_alpha, "
            "train.init_from, build_dataset.rag_context, promote.force",
        ),
    ] = None,
    push: Annotated[
        bool | None,
        typer.Option("--push/--no-push", help="dvc push after a run (default: versioning.push)"),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the outcome as JSON")] = False,
    params: ParamsOption = DEFAULT_PARAMS,
) -> None:
    """Run the fine-tuning pipeline (DVC: snapshot -> validate -> build_dataset -> train ->
    evaluate -> promote), tracked as one MLflow run; only stages whose inputs changed run."""
    from ragtune.training import parse_overrides, run_training

    overrides = parse_overrides(set_ or [])
    echo = (lambda line: err.print(line, markup=False, highlight=False)) if as_json else print
    result = run_training(params, overrides, echo=echo, push=push)
    outcome = {
        "run_id": result.run_id,
        "stages_run": result.stages_run,
        "promotion": result.promotion,
    }
    if as_json:
        print(json.dumps(outcome, default=str))
    elif not result.changed:
        out.print("nothing changed since the last run: no stage ran")
    elif result.promotion:
        p = result.promotion
        verdict = "[green]champion[/]" if p["promoted"] else "[yellow]challenger[/]"
        out.print(f"ragtune-generator version {p['version']} is {verdict}: {p['reason']}")


@app.command()
def evaluate(
    as_json: Annotated[
        bool,
        typer.Option(
            "--json",
            help='print {"verdict": {"best", "metric", "statement"}, "questions": N, '
            '"configurations": {NAME: {METRIC: {"mean", "ci95"}}}, "comparisons": [...], '
            '"by_category": {...}, "freshness": {...}, "index_version", ...}',
        ),
    ] = False,
    params: ParamsOption = DEFAULT_PARAMS,
) -> None:
    """Base vs RAG vs fine-tuned vs both on the frozen test split, plus freshness probes
    (labelled rows newer than the training snapshot): means with paired bootstrap 95%
    intervals, the verdict first; logged to MLflow, saved under reports/evaluation/."""
    from ragtune.evaluation import evaluate, save, tables

    loaded = _load(params)
    root = params.resolve().parent
    with _progress_bar(as_json, verb="evaluate") as progress:
        report = evaluate(
            loaded,
            root,
            on_configuration=lambda done, total, _: progress("configurations", done, total),
        )
    paths = save(loaded, report, root)
    if as_json:
        print(json.dumps(report, default=str))
        return
    for table in tables(report):
        out.print(table)
    out.print(f"report: {paths['markdown']} (chart {paths['chart']})")


# -- up / down ------------------------------------------------------------------------------


@app.command(
    epilog="Ports and the refresh mode come from params (services.prefect_port, "
    "services.mlflow_port, services.refresh). Logs: <workspace>/logs/. Stop with `ragtune down`."
)
def up(params: ParamsOption = DEFAULT_PARAMS) -> None:
    """Start the Prefect UI, the MLflow UI and the deployments (refresh-index; retrain,
    retrain-trigger and evaluate when params has a training section) in the background;
    prints the URLs once each answers."""
    from ragtune.services import up as start

    start(_load(params), params, echo=out.print)


@app.command()
def down(params: ParamsOption = DEFAULT_PARAMS) -> None:
    """Stop exactly the processes `ragtune up` started for this workspace."""
    from ragtune.services import down as stop

    stop(_load(params), echo=out.print)


# -- demo -----------------------------------------------------------------------------------


@app.command()
def demo(
    params: ParamsOption = DEFAULT_PARAMS,
    fresh: Annotated[
        bool, typer.Option("--fresh/--keep", help="start from an empty database and index")
    ] = True,
) -> None:
    """The main job end to end on embedded defaults: a live Django docs database made
    searchable, then a LoRA model fine-tuned on question/answer pairs from the same docs."""
    from ragtune.demo import run_demo

    run_demo(_load(params), out, fresh=fresh, params_path=params)


def main() -> None:
    quiet_environment()
    try:
        app()
    except RagtuneError as exc:
        err.print(Text.assemble(("error: ", "bold red"), str(exc)), soft_wrap=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(130)
