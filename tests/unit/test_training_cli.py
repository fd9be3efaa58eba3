"""`ragtune train` argument handling: clear one-line errors before anything runs."""

from __future__ import annotations

from pathlib import Path

import pytest

from ragtune.config import load_params
from ragtune.errors import ConfigError
from ragtune.training import parse_overrides


def test_set_values_are_parsed_as_yaml() -> None:
    assert parse_overrides(["train.max_steps=20", "train.learning_rate=1e-4"]) == {
        "train": {"max_steps": 20, "learning_rate": 1e-4}
    }
    assert parse_overrides(["build_dataset.rag_context=raft", "promote.force=true"]) == {
        "build_dataset": {"rag_context": "raft"},
        "promote": {"force": True},
    }


@pytest.mark.parametrize(
    "bad", ["train.max_steps", "max_steps=3", "train.nonsense=1", "sync.batch_size=3"]
)
def test_bad_set_values_name_the_allowed_ones(bad: str) -> None:
    with pytest.raises(
        ConfigError, match=r"expected NAME=VALUE with NAME one of: .*train\.max_steps"
    ):
        parse_overrides([bad])


def test_override_values_are_validated(tmp_path: Path) -> None:
    path = tmp_path / "params.yaml"
    path.write_text("sources: {}\n")
    with pytest.raises(ConfigError, match=r"train\.max_steps"):
        load_params(path, overrides={"train": {"max_steps": -1}})
    assert load_params(path, overrides={"train": {"max_steps": 5}}).train.max_steps == 5


def test_training_needs_a_training_section(tmp_path: Path) -> None:
    path = tmp_path / "params.yaml"
    path.write_text("sources: {}\n")
    with pytest.raises(ConfigError, match="no `training:` section"):
        load_params(path).training_source()


def test_stage_order_matches_dvc_yaml() -> None:
    """The Prefect UI's training progress counts stages in this order."""
    import yaml

    from ragtune.stages import STAGES

    root = Path(__file__).resolve().parents[2]
    assert tuple(yaml.safe_load((root / "dvc.yaml").read_text())["stages"]) == STAGES


def test_help_texts_keep_their_brackets() -> None:
    """Rich markup must not swallow literal [n] in command help."""
    from typer.testing import CliRunner

    from ragtune.cli import app

    shown = CliRunner().invoke(app, ["ask", "--help"], env={"COLUMNS": "200"})
    assert shown.exit_code == 0
    assert "citing them as [n]" in shown.output
