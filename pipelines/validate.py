"""`validate` stage: the training-snapshot suite (Great Expectations); a failure stops the pipeline.

Run: `dvc repro validate` (`ragtune train` runs the whole pipeline, tracked in MLflow).
"""

from ragtune.stages import stage_main
from ragtune.stages.validate import validate

if __name__ == "__main__":
    stage_main("validate", validate)
