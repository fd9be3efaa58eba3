"""`promote` stage: register the candidate in MLflow; alias champion only if it wins.

Run: `dvc repro promote` (`ragtune train` runs the whole pipeline, tracked in MLflow).
"""

from ragtune.stages import stage_main
from ragtune.stages.promote import promote

if __name__ == "__main__":
    stage_main("promote", promote)
