"""The `promote` stage decides on evidence: real stages, real files, the real MLflow registry.

A tiny project (tests/training_support.py) runs the pipeline's own stage entry points
(`stage_main`, what each pipelines/<stage>.py calls) in this process, so models and
libraries load once and the file stays fast; `validate` (the data gate, not under test
here) is left out. Which candidate is better is known by construction: every labelled
answer has one form ("Team N wears a COLOUR badge."), which the random two-layer base
gives near-uniform odds; an adapter trained twelve steps at a high learning rate on the
training answers lowers the loss of every test answer (the most a LoRA on this tiny,
randomly embedded model can: about 0.19 nats of 10.8), while an adapter trained one step
at a learning rate of 1e-7 is the base model, so it cannot beat a champion that learned.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from ragtune.adapters.tracking import MODEL_NAME
from ragtune.config import load_params
from ragtune.stages import open_tracker, read_json, stage_main, write_run_params
from ragtune.stages.build_dataset import build_dataset
from ragtune.stages.evaluate import evaluate
from ragtune.stages.promote import promote
from ragtune.stages.snapshot import snapshot
from ragtune.stages.train import train
from tests.training_support import make_project

STAGES = {
    "snapshot": snapshot,
    "build_dataset": build_dataset,
    "train": train,
    "evaluate": evaluate,
    "promote": promote,
}
LEARNS = {"learning_rate": 0.02, "max_steps": 12, "eval_every": 12}
# the LoRA matrices are drawn before train.seed is applied, from torch's global generator:
# seeded here, so the outcome does not depend on what ran earlier in this process
SEED = 0
LEARNS_NOTHING = {"learning_rate": 1e-7, "max_steps": 1}


def run_stages(root: Path, names: list[str], **overrides: dict[str, Any]) -> dict[str, Any]:
    """The stages, as `ragtune train` runs them with these overrides; reports/promote.json."""
    write_run_params(root, load_params(root / "params.yaml", overrides=overrides))
    for name in names:
        if name == "train":
            print(f"torch seed {SEED}")
            torch.manual_seed(SEED)
        stage_main(name, STAGES[name])
    return read_json(root / "reports/promote.json")


def aliases(tracker: Any) -> dict[str, str]:
    """The registry's aliases of the generator model, as MLflow holds them."""
    return {k: str(v) for k, v in tracker.client.get_registered_model(MODEL_NAME).aliases.items()}


def test_promotion_follows_the_interval_and_the_margin(
    tiny_base: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = make_project(tmp_path / "p", tiny_base).parent
    monkeypatch.chdir(root)
    tracker = open_tracker(load_params(root / "params.yaml"))

    # a candidate that learned the answers, against the untrained base: a clear win
    won = run_stages(root, list(STAGES), train=LEARNS)
    assert won["promoted"] and won["version"] == "1", won["reason"]
    assert won["metric"] == "answer_loss"
    assert won["reason"].startswith("answer_loss (lower is better) improves on base by ")
    assert "95% CI [" in won["reason"] and won["reason"].endswith("each lower bound > margin 0")
    assert aliases(tracker) == {"champion": "1"}
    assert tracker.version_info("1")["tags"]["ragtune.promotion"] == won["reason"]
    [over_base] = won["evidence"]
    low, mean = over_base["ci95"][0], over_base["improvement"]
    assert over_base["against"] == "base" and 0 < low < mean
    evaluated = read_json(root / "reports/evaluate.json")
    keys = evaluated["per_question"]["keys"]
    assert len(keys) == evaluated["questions"] > 1
    assert len(evaluated["per_question"]["candidate"]["answer_loss"]) == len(keys)
    assert over_base["wins"] + over_base["ties"] + over_base["losses"] == len(keys)

    # the same evidence, with a margin between the interval's lower bound and its mean
    margin = round((low + mean) / 2, 4)
    held = run_stages(root, ["promote"], train=LEARNS, promote={"margin": margin})
    assert not held["promoted"] and held["version"] == "2"
    assert held["evidence"] == won["evidence"]
    assert held["reason"].startswith(
        "answer_loss (lower is better) does not improve on base by more than margin "
        f"{margin:.3g}: improvement "
    )
    assert aliases(tracker) == {"champion": "1", "challenger": "2"}

    # a candidate that learned nothing, against the champion that learned the answers
    lost = run_stages(root, ["train", "evaluate", "promote"], train=LEARNS_NOTHING)
    assert not lost["promoted"] and lost["version"] == "3"
    assert lost["reason"].startswith(
        "answer_loss (lower is better) does not improve on champion by more than margin 0:"
    )
    over_champion, _ = lost["evidence"]
    assert [c["against"] for c in lost["evidence"]] == ["champion", "base"]
    assert over_champion["ci95"][1] < 0  # worse on the whole interval
    assert read_json(root / "reports/evaluate.json")["champion_version"] == "1"
    assert aliases(tracker) == {"champion": "1", "challenger": "3"}

    # promote.force still moves the alias, whatever the evidence, and says so
    forced = run_stages(root, ["promote"], train=LEARNS_NOTHING, promote={"force": True})
    assert forced["promoted"] and forced["reason"].startswith("forced promotion")
    assert aliases(tracker) == {"champion": "4", "challenger": "3"}
