"""ragtune benchmarks. Every figure is measured side by side in one run, on this machine.

    make bench                                   # everything (tens of minutes on 2 cores)
    .venv-bench/bin/python bench/run.py --only freshness
    .venv-bench/bin/python bench/run.py --docs 100   # a quick subset of the Django docs

Results print as a table and are saved to bench/results/latest.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import ROOT

PARTS = (
    "ingest",
    "freshness",
    "latency",
    "quality",
    "tracking",
    "train",
    "answer",
    "retrieval",
    "orchestration",
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default=",".join(PARTS), help=f"comma list of {PARTS}")
    parser.add_argument("--docs", type=int, default=None, help="ingest a subset of the Django docs")
    args = parser.parse_args()
    parts = [p.strip() for p in args.only.split(",") if p.strip()]
    results: dict[str, object] = {
        "machine": platform.processor() or platform.machine(),
        "started": time.ctime(),
    }
    index_path = None
    if "ingest" in parts or "latency" in parts:
        import ingest

        print("ingest: ragtune vs raw encode vs LlamaIndex ...", flush=True)
        results["ingest"] = out = ingest.run(args.docs)
        print(json.dumps(out, indent=2), flush=True)
        index_path = Path(out["index_path"])
    if "freshness" in parts:
        import freshness

        print("freshness: commit -> searchable ...", flush=True)
        results["freshness"] = out = freshness.run()
        print(json.dumps(out, indent=2), flush=True)
    if "latency" in parts and index_path is not None:
        import latency

        from ragtune.adapters.embeddings import Embedder
        from ragtune.config import EmbeddingsConfig

        print("latency: search p50/p95 ...", flush=True)
        results["latency"] = out = latency.run(index_path, Embedder(EmbeddingsConfig()))
        print(json.dumps(out, indent=2), flush=True)
    if "quality" in parts:
        import quality

        print("quality: gate overhead on a 1,000-row change batch ...", flush=True)
        results["quality"] = out = quality.run()
        print(json.dumps(out, indent=2), flush=True)
    if "tracking" in parts:
        import tracking

        print("tracking: MLflow store set-up, register, unreachable server ...", flush=True)
        results["tracking"] = out = tracking.run()
        print(json.dumps(out, indent=2), flush=True)
    if "train" in parts:
        import train

        print("train: ragtune LoRA loop vs transformers Trainer + peft ...", flush=True)
        results["train"] = out = train.run()
        print(json.dumps(out, indent=2), flush=True)
    if "answer" in parts:
        import answer

        print("answer: ask latency, API throughput, bf16 vs fp32 generation ...", flush=True)
        try:
            results["answer"] = out = answer.run()
        except answer.MissingWorkspace as exc:  # the demo index is not built: skip, say why
            results["answer"] = out = {"skipped": str(exc)}
        print(json.dumps(out, indent=2), flush=True)
    if "retrieval" in parts:
        import retrieval

        print("retrieval: recall@5/10 and MRR, old fusion vs new, identifiers ...", flush=True)
        params_file = ROOT / "params.yaml"
        if (ROOT / ".ragtune" / "index").exists():
            results["retrieval"] = out = retrieval.run(params_file, False, 0, 50, 200)
        else:  # the demo index is not built: skip, say why
            results["retrieval"] = out = {"skipped": "no demo index: run `make demo` first"}
        print(json.dumps(out, indent=2), flush=True)
    if "orchestration" in parts:
        import orchestration

        print("orchestration: refresh_index direct vs flow vs served deployment ...", flush=True)
        results["orchestration"] = out = orchestration.run()
        print(json.dumps(out, indent=2), flush=True)
    folder = ROOT / "bench" / "results"
    folder.mkdir(exist_ok=True)
    (folder / "latest.json").write_text(json.dumps(results, indent=2))
    print(f"saved {folder / 'latest.json'}")


if __name__ == "__main__":
    main()
