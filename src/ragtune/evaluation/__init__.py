"""`ragtune evaluate`: base, RAG, fine-tuned and both, measured on the same questions.

Configurations: `base` (base model, no sources), `rag` (base model with retrieved
sources), `finetuned` (champion, no sources), `finetuned_rag` (champion with sources),
and `raft` (the newest version trained on RAFT examples, with sources) when one is
registered. `measure` answers and scores every question; `report` summarises the scores
with paired bootstrap intervals and a verdict, renders them, and logs them to MLflow.

    report = evaluate(params, root)
    save(params, report, root)
"""

from ragtune.evaluation.measure import evaluate, evaluation_rows, run_configuration
from ragtune.evaluation.report import chart, columns, markdown, save, tables

__all__ = [
    "chart",
    "columns",
    "evaluate",
    "evaluation_rows",
    "markdown",
    "run_configuration",
    "save",
    "tables",
]
