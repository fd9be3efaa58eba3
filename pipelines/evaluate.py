"""`evaluate` stage: candidate vs champion vs base on the test split -> reports/evaluate.json.

Run: `dvc repro evaluate` (`ragtune train` runs the whole pipeline, tracked in MLflow).
"""

from ragtune.stages import stage_main
from ragtune.stages.evaluate import evaluate

if __name__ == "__main__":
    stage_main("evaluate", evaluate)
