"""Prefect flow `backfill`: a full sync of a source whose embed step runs on a Dask cluster.

    python flows/backfill.py [--params params.yaml] [--source docs] [--workers 2] [--batch-size 64]
    python flows/backfill.py --address tcp://scheduler:8786     # an existing Dask cluster

Without `--address` the flow starts a `distributed.LocalCluster` of `--workers` processes
with one thread each (torch gets cpu_count // workers threads in each), which report their
task runs to the flow's Prefect API, a temporary one included. For a real cluster, start a
scheduler, and workers that have ragtune (and the embedding model) installed, can read the
flows folder, and reach the same Prefect server as the flow (PREFECT_API_URL):

    dask scheduler                                                # on the scheduler host
    PREFECT_API_URL=http://prefect:4200/api \
      dask worker tcp://scheduler:8786 --nworkers 4 --nthreads 1  # on each worker host

Dask's nanny sets OMP_NUM_THREADS=1 in workers; raise it there to give torch more threads.

Wiring only: the sync is the plain `SourceSync.run(full=True)` with the `refresh_index` step
tasks, except that the embedder is a `MappedEmbedder`: the chunks to embed are cut into
batches (`ragtune.backfill`), each embedded by an `embed_batch` task on a Dask worker that
loads the model once, and the vectors are gathered in order and written by the normal
write and advance steps. The index ends identical to a single-process
`ragtune sync --full` run with one torch thread (as each worker runs), vectors included,
bit for bit. Each batch is logged as it
completes, and a progress artifact per source follows the keys synced.

Parallelism is within one sync batch (`sync.batch_size` rows, chunked, then fanned out in
tasks of `--batch-size` chunks): raise `sync.batch_size` in params.yaml until a batch gives
every worker several tasks. The vectors are bitwise those of a plain sync with the same
params; a different `sync.batch_size` regroups the texts and moves the floats slightly.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.client.orchestration import get_client
from prefect.futures import PrefectFuture, as_completed
from prefect_dask import DaskTaskRunner

from flows.progress import Progress
from flows.refresh_index import ensure_source_limits, source_slot, step_tasks
from ragtune.backfill import BatchMap, EmbedBatch, EncodedBatch, MappedEmbedder, encode_batch
from ragtune.config import EmbeddingsConfig, Params, load_params
from ragtune.errors import ConfigError
from ragtune.sync import DIRECT_STEPS, ProgressHook
from ragtune.workspace import open_syncs


@task(name="embed_batch", cache_policy=NO_CACHE, persist_result=False)
def embed_batch(
    config: EmbeddingsConfig, batch: EmbedBatch, torch_threads: int | None
) -> EncodedBatch:
    """Embed one batch on the Dask worker this task runs on."""
    from distributed import get_worker

    return encode_batch(config, batch, torch_threads, worker=get_worker().address)


def dask_runner(workers: int, address: str | None) -> DaskTaskRunner:
    """An existing cluster at `address`, or a LocalCluster of single-threaded processes
    that report to this flow run's Prefect API (with no PREFECT_API_URL set, a temporary
    server that the worker processes could not find on their own)."""
    if address:
        return DaskTaskRunner(address=address)
    with get_client(sync_client=True) as client:
        api_url = str(client.api_url)
    return DaskTaskRunner(
        cluster_kwargs={
            "n_workers": workers,
            "threads_per_worker": 1,
            "processes": True,
            "env": {"PREFECT_API_URL": api_url},
        }
    )


class WorkerLedger:
    """Per Dask worker: batches, chunks and model loads, for logs and the flow result."""

    def __init__(self) -> None:
        self.workers: dict[str, dict[str, int]] = {}

    def add(self, result: EncodedBatch) -> None:
        seen = self.workers.setdefault(
            result.worker, {"pid": result.pid, "batches": 0, "chunks": 0, "model_loads": 0}
        )
        seen["batches"] += 1
        seen["chunks"] += len(result.vectors)
        seen["model_loads"] += int(result.loaded_model)


def on_dask(
    runner: DaskTaskRunner, params: Params, torch_threads: int | None, ledger: WorkerLedger
) -> BatchMap:
    """Map embedding batches over the cluster, logging each as it completes."""
    embed = embed_batch.with_options(
        retries=params.sync.retries, retry_delay_seconds=params.sync.retry_delay_s
    )

    def embed_batches(batches: Sequence[EmbedBatch]) -> list[EncodedBatch]:
        logger = get_run_logger()
        futures: list[PrefectFuture[EncodedBatch]] = [
            runner.submit(
                embed,
                {"config": params.embeddings, "batch": b, "torch_threads": torch_threads},
            )
            for b in batches
        ]
        results: list[EncodedBatch] = []
        for future in as_completed(futures):
            result = future.result()
            results.append(result)
            ledger.add(result)
            logger.info(
                "embedded batch %d/%d: %d chunks on %s%s",
                len(results),
                len(batches),
                len(result.vectors),
                result.worker,
                " (model loaded)" if result.loaded_model else "",
            )
        return results

    return embed_batches


def progress_hook(logger: Any, terminal: Any = None) -> ProgressHook:
    """A `ProgressHook` that logs and moves one progress artifact per source (and a bar
    per source on `terminal`, a started rich Progress, when given)."""
    bars: dict[str, Progress] = {}
    rows: dict[str, Any] = {}

    def report(name: str, done: int, total: int | None) -> None:
        # keys re-read after the full pass (cursor lookback, reconciliation) count too
        note = f"{done} keys synced, {total if total is not None else '?'} rows in the table"
        bar = bars.get(name) or bars.setdefault(name, Progress(f"backfill of {name}"))
        bar.update(done, total or done, note)
        logger.info("source %s: %s", name, note)
        if terminal is not None:
            if name not in rows:
                rows[name] = terminal.add_task(f"backfill {name}", total=total)
            terminal.update(rows[name], completed=done, total=max(total or 0, done))

    return report


@contextlib.contextmanager
def terminal_bars() -> Iterator[Any]:
    """A rich progress display on a terminal's stderr; None when stderr is not a terminal."""
    if not sys.stderr.isatty():
        yield None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, TimeRemainingColumn
    from rich.progress import Progress as Bars

    with Bars(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True, emoji=False),
        transient=True,
    ) as bars:
        yield bars


@flow(name="backfill")
def backfill(
    params_path: str = "params.yaml",
    source: str | None = None,
    workers: int = 2,
    batch_size: int = 64,
    address: str | None = None,
) -> dict[str, Any]:
    """Re-read every row of every source (or one) and index it, embedding on Dask.

    `batch_size` is chunks per `embed_batch` task, rounded down to whole
    `embeddings.batch_size` groups (at least one). Returns each source's counts and, per
    Dask worker, the batches and chunks it embedded and how often it loaded the model."""
    logger = get_run_logger()
    if workers < 1 or batch_size < 1:
        raise ConfigError("backfill: workers and batch_size must be at least 1")
    params = load_params(params_path)
    ensure_source_limits(params)
    torch_threads = None if address else max(1, (os.cpu_count() or 1) // workers)
    ledger = WorkerLedger()
    # embed itself stays a plain call: its embed_batch tasks are submitted from the flow run
    # (a task's context, holding the SourceSync, could not be shipped to the workers)
    steps = replace(step_tasks(params), embed=DIRECT_STEPS.embed)
    runner = dask_runner(workers, address)  # started below, once the sources are validated
    embedder = MappedEmbedder(
        params.embeddings, on_dask(runner, params, torch_threads, ledger), batch_size
    )
    with terminal_bars() as terminal:
        hook = progress_hook(logger, terminal)
        syncs = open_syncs(params, source, progress=hook, embedder=embedder)
        return run_syncs(params, syncs, runner, steps, ledger)


def run_syncs(
    params: Params, syncs: list[Any], runner: DaskTaskRunner, steps: Any, ledger: WorkerLedger
) -> dict[str, Any]:
    logger = get_run_logger()
    summary: dict[str, dict[str, int]] = {}
    try:
        with runner:
            cluster = runner.client.nthreads()
            logger.info("Dask cluster: %d workers %s", len(cluster), sorted(cluster))
            for one in syncs:
                with source_slot(one.name, params.sync.flow_slot_timeout_s):
                    counts = one.run(full=True, steps=steps)
                summary[one.name] = counts.summary()
                logger.info("source %s: %s", one.name, summary[one.name])
    finally:
        for one in syncs:
            one.source.close()
    return {"sources": summary, "cluster": cluster, "workers": ledger.workers}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--source", default=None)
    parser.add_argument("--workers", type=int, default=2, help="LocalCluster worker processes")
    parser.add_argument("--batch-size", type=int, default=64, help="chunks per Dask task")
    parser.add_argument("--address", default=None, help="scheduler of an existing cluster")
    args = parser.parse_args()
    result = backfill(
        str(Path(args.params).resolve()), args.source, args.workers, args.batch_size, args.address
    )
    print(result)


if __name__ == "__main__":
    main()
