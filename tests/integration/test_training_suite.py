"""The training-snapshot suite: what stops a snapshot before training."""

from __future__ import annotations

from pathlib import Path

from ragtune.adapters.quality import QualityGate
from ragtune.config import QualityConfig, TrainingQualityConfig
from ragtune.core.quality import training_rows


def snapshot(n: int) -> tuple[list[str], list[str | None], list[str | None], list[str]]:
    keys = [f"q{i}" for i in range(n)]
    questions: list[str | None] = [f"How do I configure feature number {i}?" for i in range(n)]
    answers: list[str | None] = [f"Set option {i} in settings." for i in range(n)]
    splits = ["train" if i % 5 else "test" for i in range(n)]
    return keys, questions, answers, splits


def gate(tmp_path: Path, min_rows: int = 10) -> QualityGate:
    config = QualityConfig(training=TrainingQualityConfig(min_rows=min_rows))
    return QualityGate(tmp_path / "ws", config)


def test_a_clean_snapshot_passes(tmp_path: Path) -> None:
    report = gate(tmp_path).validate_training(training_rows(*snapshot(30)))
    assert report.success, (report.rows, report.batch)


def test_bad_snapshots_fail_with_reasons(tmp_path: Path) -> None:
    keys, questions, answers, splits = snapshot(30)
    answers[1] = None  # answer missing
    questions[2] = "Hi?"  # question too short
    questions[3] = questions[4]  # duplicate question (both train)
    questions[6] = questions[0].upper()  # an evaluation question (split test) leaks into train
    report = gate(tmp_path).validate_training(training_rows(keys, questions, answers, splits))
    assert not report.success
    assert report.rows["q1"] == ["answer is missing, too short or too long"]
    assert "question is missing, too short or too long" in report.rows["q2"]
    assert {"q3", "q4"} <= set(report.rows)
    assert "q6" in report.rows and "q0" in report.rows  # the leak and its duplicate
    assert any("leaks_evaluation" in str(f.column) for f in report.batch) or any(
        r for r in report.rows["q6"] if "leaks" in r or "failed" in r
    )


def test_too_few_rows_fail_as_a_batch(tmp_path: Path) -> None:
    report = gate(tmp_path, min_rows=50).validate_training(training_rows(*snapshot(30)))
    assert not report.success
    assert [f.expectation for f in report.batch] == ["expect_table_row_count_to_be_between"]
    assert "observed 30 < min 50" in report.describe_batch()
