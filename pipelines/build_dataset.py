"""`build_dataset` stage: the snapshot -> chat-format SFT examples (rag_context: none | raft).

Run: `dvc repro build_dataset` (`ragtune train` runs the whole pipeline, tracked in MLflow).
"""

from ragtune.stages import stage_main
from ragtune.stages.build_dataset import build_dataset

if __name__ == "__main__":
    stage_main("build_dataset", build_dataset)
