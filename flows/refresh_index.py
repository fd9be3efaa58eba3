"""Prefect flow `refresh_index`: capture -> plan -> chunk -> embed -> write -> advance.

    python flows/refresh_index.py run   [--params params.yaml] [--source docs] [--full]
    python flows/refresh_index.py serve [--params params.yaml]   # deployment on the interval

Wiring only: each step is a Prefect task around the same `SourceSync` step the CLI runs,
with retries from `sync.retries`; a global concurrency limit per source (one slot) keeps
two runs from syncing the same source at once, on top of the workspace's file lock. The
deployment runs every `sync.interval_s` seconds.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, serve, task
from prefect.cache_policies import NO_CACHE
from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import ConcurrencyLimitConfig, ConcurrencyLimitStrategy
from prefect.concurrency.sync import concurrency

from flows.progress import freshness_table
from ragtune.config import Params, load_params
from ragtune.errors import BusyError
from ragtune.follow import follow
from ragtune.sync import DIRECT_STEPS, SourceSync, Steps
from ragtune.workspace import open_syncs

DEPLOYMENT = "refresh-index"


def source_limit(name: str) -> str:
    return f"ragtune-refresh-index-{name}"


def ensure_source_limits(params: Params) -> None:
    """One concurrency slot per source, created once on the Prefect server."""
    with get_client(sync_client=True) as client:
        for name in params.sources:
            client.upsert_global_concurrency_limit_by_name(source_limit(name), limit=1)


def step_tasks(params: Params) -> Steps:
    """The sync steps as Prefect tasks, retried per params (every step is idempotent)."""

    def as_task(name: str, fn: Any) -> Any:
        return task(
            fn,
            name=name,
            retries=params.sync.retries,
            retry_delay_seconds=params.sync.retry_delay_s,
            cache_policy=NO_CACHE,
        )

    return Steps(
        capture=as_task("capture", DIRECT_STEPS.capture),
        plan=as_task("plan", DIRECT_STEPS.plan),
        validate=as_task("validate", DIRECT_STEPS.validate),
        chunk=as_task("chunk", DIRECT_STEPS.chunk),
        embed=as_task("embed", DIRECT_STEPS.embed),
        write=as_task("write", DIRECT_STEPS.write),
        advance=as_task("advance", DIRECT_STEPS.advance),
    )


@flow(name="refresh_index")
def refresh_index(
    params_path: str = "params.yaml",
    source: str | None = None,
    full: bool = False,
    allow_mass_delete: bool = False,
    follow_s: float = 0.0,
) -> dict[str, dict[str, int]]:
    """Bring the index in step with every source (or one): inserts, updates, deletes.

    A batch failing the quality gate ends the run Failed, naming the expectation and the
    numbers; `allow_mass_delete` lets a deliberate mass delete through the guard. With
    `follow_s` > 0 the run then keeps following changes (NOTIFY or polling) for that many
    seconds: the `continuous` refresh mode of `ragtune up`. The run ends with a freshness
    table in the Prefect UI."""
    logger = get_run_logger()
    params = load_params(params_path)
    ensure_source_limits(params)
    steps = step_tasks(params)
    summary: dict[str, dict[str, int]] = {}
    syncs: list[SourceSync] = open_syncs(params, source)
    try:
        for one in syncs:
            with source_slot(one.name, params.sync.flow_slot_timeout_s):
                counts = one.run(full=full, steps=steps, allow_mass_delete=allow_mass_delete)
            summary[one.name] = counts.summary()
            logger.info("source %s: %s", one.name, summary[one.name])
        if follow_s > 0:
            follow_for(params, syncs, follow_s, summary)
    finally:
        for one in syncs:
            one.source.close()
    freshness_table(params)
    return summary


def follow_for(
    params: Params, syncs: list[SourceSync], seconds: float, summary: dict[str, dict[str, int]]
) -> None:
    """Follow changes for `seconds`, adding each pass's counts to the summary."""
    logger = get_run_logger()
    stop = threading.Event()
    timer = threading.Timer(seconds, stop.set)

    def on_pass(name: str, counts: Any) -> None:
        if counts.changes:
            logger.info("source %s: %s", name, counts.summary())
            for key, value in counts.summary().items():
                summary[name][key] = summary[name].get(key, 0) + value

    timer.start()
    try:
        with contextlib.ExitStack() as slots:
            for one in syncs:
                slots.enter_context(source_slot(one.name, params.sync.flow_slot_timeout_s))
            follow(syncs, params.sync.poll_interval_s, stop, on_pass=on_pass)
    finally:
        timer.cancel()


@contextlib.contextmanager
def source_slot(name: str, timeout_s: float) -> Iterator[None]:
    """The source's one concurrency slot; a clear error instead of waiting forever."""
    try:
        with concurrency(source_limit(name), occupy=1, strict=True, timeout_seconds=timeout_s):
            yield
    except TimeoutError:
        raise BusyError(
            f"source '{name}' is still being refreshed after {timeout_s:.0f} s; if no run is "
            f"active, a crashed run left its slot taken: `prefect gcl update "
            f"{source_limit(name)} --active-slots 0`"
        ) from None


def build_deployment(params_path: str | Path) -> Any:
    """The `refresh-index` deployment: every `sync.interval_s` seconds, one run at a time;
    with `services.refresh: continuous` each run follows changes until the next one."""
    path = Path(params_path).resolve()
    params = load_params(path)
    follow_s = params.sync.interval_s if params.services.refresh == "continuous" else 0.0
    return refresh_index.with_options(
        retries=params.sync.retries, retry_delay_seconds=params.sync.retry_delay_s
    ).to_deployment(
        name=DEPLOYMENT,
        interval=dt.timedelta(seconds=params.sync.interval_s),
        parameters={"params_path": str(path), "follow_s": follow_s},
        # a run that finds the previous one still going is redundant: cancel it, don't queue
        concurrency_limit=ConcurrencyLimitConfig(
            limit=1, collision_strategy=ConcurrencyLimitStrategy.CANCEL_NEW
        ),
        tags=["ragtune", *(f"source:{name}" for name in params.sources)],
        description="Keep the ragtune index in step with its source databases.",
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["run", "serve"])
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--source", default=None)
    parser.add_argument("--full", action="store_true")
    args = parser.parse_args()
    if args.command == "run":
        print(refresh_index(str(Path(args.params).resolve()), args.source, args.full))
    else:
        serve(build_deployment(args.params))


if __name__ == "__main__":
    main()
