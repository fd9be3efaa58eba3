"""`train` stage: LoRA fine-tuning (transformers + peft) -> models/candidate/adapter.

Run: `dvc repro train` (`ragtune train` runs the whole pipeline, tracked in MLflow).
"""

from ragtune.stages import stage_main
from ragtune.stages.train import train

if __name__ == "__main__":
    stage_main("train", train)
