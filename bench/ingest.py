"""Ingest throughput, side by side in one process on the same chunks and model:

- ragtune's whole sync (read rows, chunk, embed, write LanceDB, ack the changelog)
  against raw `SentenceTransformer.encode` of the very chunks it produced;
- against a LlamaIndex `IngestionPipeline` fed the same chunks (docstore UPSERTS
  strategy, so a re-run re-embeds only changed documents), full and with 1% changed;
- ragtune's 1%-changed re-sync as a fraction of its full sync.

Every contender runs with the same model, the same batch size (64) and under the same
precision (bf16 autocast where the CPU supports it).
"""

from __future__ import annotations

import random
import sqlite3
import tempfile
from pathlib import Path
from typing import Any

from common import django_docs, install_changelog, timed, workspace_params

from ragtune.adapters.index.lance import LanceIndex
from ragtune.core.chunking import chunk_document
from ragtune.demo import create_database
from ragtune.workspace import open_embedder, open_syncs


def run(docs: int | None = None) -> dict[str, Any]:
    rows = django_docs(docs)
    folder = Path(tempfile.mkdtemp(prefix="ragtune-bench-ingest-"))
    database = folder / "docs.db"
    create_database(database, rows)
    params = workspace_params(folder / "ws", f"sqlite:///{database}")
    install_changelog(params)
    embedder = open_embedder(params)
    embedder.encode(["warm up"] * 64)
    t: dict[str, float] = {}

    (sync,) = open_syncs(params, embedder=embedder)
    with timed(t, "ragtune_full"):
        counts = sync.run()
    chunks = counts.written_chunks
    texts = _chunk_texts(params)
    assert len(texts) == chunks

    with timed(t, "raw_encode"), embedder._precision():
        embedder.model.encode(
            texts, batch_size=64, normalize_embeddings=True, show_progress_bar=False
        )

    pipeline, documents = _llamaindex(params, embedder)
    with timed(t, "llamaindex_full"), embedder._precision():
        pipeline.run(documents=documents(), show_progress=False)

    changed = _change_one_percent(database, rows)
    with timed(t, "ragtune_1pct"):
        again = sync.run()
    with timed(t, "llamaindex_1pct"), embedder._precision():
        pipeline.run(documents=documents(), show_progress=False)
    sync.source.close()
    return {
        "index_path": str(params.index.path),
        "documents": len(rows),
        "chunks": chunks,
        "changed_documents": changed,
        "ragtune_1pct_upserted": again.upserted_docs,
        "bf16": embedder.uses_bf16,
        "seconds": {k: round(v, 3) for k, v in t.items()},
        "ratios": {
            "sync_vs_raw_encode": round(t["raw_encode"] / t["ragtune_full"], 3),
            "ragtune_vs_llamaindex_full": round(t["llamaindex_full"] / t["ragtune_full"], 3),
            "ragtune_vs_llamaindex_1pct": round(t["llamaindex_1pct"] / t["ragtune_1pct"], 1),
            "resync_1pct_of_full": round(t["ragtune_1pct"] / t["ragtune_full"], 4),
        },
    }


def _chunk_texts(params: Any) -> list[str]:
    index = LanceIndex(params.index)
    rows = index.table.search().select(["text"]).limit(None).to_arrow()
    return rows["text"].to_pylist()


def _change_one_percent(database: Path, rows: list[Any]) -> int:
    picked = random.Random(1).sample(rows, max(1, len(rows) // 100))
    with sqlite3.connect(database) as db:
        for row in picked:
            db.execute(
                "UPDATE documents SET body = body || ? WHERE id = ?",
                ("\n\nEdited paragraph.", row.id),
            )
    return len(picked)


def _llamaindex(params: Any, embedder: Any) -> tuple[Any, Any]:
    """A LlamaIndex pipeline over the same table, chunked by the same chunker."""
    from llama_index.core import Document
    from llama_index.core.ingestion import DocstoreStrategy, IngestionPipeline
    from llama_index.core.schema import TextNode, TransformComponent
    from llama_index.core.storage.docstore import SimpleDocumentStore
    from llama_index.core.vector_stores import SimpleVectorStore
    from llama_index.embeddings.huggingface import HuggingFaceEmbedding

    tokenizer = embedder.tokenizer
    chunking = params.chunking

    class RagtuneChunks(TransformComponent):  # type: ignore[misc]
        def __call__(self, nodes: list[Any], **_: Any) -> list[Any]:
            out = []
            for node in nodes:
                title, body = node.metadata["title"], node.metadata["body"]
                for piece in chunk_document(
                    title, body, tokenizer, chunking.max_tokens, chunking.overlap_tokens
                ):
                    out.append(
                        TextNode(
                            text=piece.text, id_=f"{node.id_}#{piece.n}", metadata={"key": node.id_}
                        )
                    )
            return out

    embed = HuggingFaceEmbedding(
        model_name=str(embedder.model_path), embed_batch_size=64, device="cpu"
    )
    pipeline = IngestionPipeline(
        transformations=[RagtuneChunks(), embed],
        docstore=SimpleDocumentStore(),
        vector_store=SimpleVectorStore(),
        docstore_strategy=DocstoreStrategy.UPSERTS,
    )
    database = params.sources["docs"].url.removeprefix("sqlite:///")

    def documents() -> list[Any]:
        with sqlite3.connect(database) as db:
            found = db.execute("SELECT id, title, body FROM documents ORDER BY id").fetchall()
        return [
            Document(
                text=f"{title}\n\n{body}",
                id_=key,
                metadata={"title": title, "body": body},
                excluded_embed_metadata_keys=["title", "body"],
                excluded_llm_metadata_keys=["title", "body"],
            )
            for key, title, body in found
        ]

    return pipeline, documents
