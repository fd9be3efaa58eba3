"""`snapshot` stage: the labelled table -> data/training/snapshot.parquet, each row split by key.

Run: `dvc repro snapshot` (`ragtune train` runs the whole pipeline, tracked in MLflow).
"""

from ragtune.stages import stage_main
from ragtune.stages.snapshot import snapshot

if __name__ == "__main__":
    stage_main("snapshot", snapshot)
