"""params.yaml: defaults, env references, relative paths, one-line errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from ragtune.config import load_params
from ragtune.errors import ConfigError

MINIMAL = """
sources:
  docs:
    url: sqlite:///data/docs.db
    table: documents
    text: [body]
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "ws" / "params.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_minimal_file_gets_every_default(tmp_path: Path) -> None:
    params = load_params(write(tmp_path, MINIMAL))
    base = (tmp_path / "ws").resolve()
    assert params.sources["docs"].url == f"sqlite:///{base}/data/docs.db"
    assert params.index.backend == "lancedb"
    assert params.index.path == base / ".ragtune" / "index"
    assert params.workspace.path == base / ".ragtune"
    assert params.sync.batch_size > 0


def test_absolute_paths_stay(tmp_path: Path) -> None:
    text = MINIMAL.replace("sqlite:///data", "sqlite:////abs/data") + "index:\n  path: /abs/idx\n"
    params = load_params(write(tmp_path, text))
    assert params.sources["docs"].url == "sqlite:////abs/data/docs.db"
    assert params.index.path == Path("/abs/idx")


def test_env_references_expand(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RT_TEST_URL", "postgresql+psycopg://u:secret@h/db")
    text = MINIMAL.replace("sqlite:///data/docs.db", "${RT_TEST_URL}")
    text += "index:\n  table: ${RT_TABLE:-chunks_x}\n"
    params = load_params(write(tmp_path, text))
    assert params.sources["docs"].url == "postgresql+psycopg://u:secret@h/db"
    assert params.index.table == "chunks_x"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (MINIMAL + "    txt: [x]\n", "unknown key 'sources.docs.txt'"),
        (MINIMAL + "indx: {}\n", "unknown key 'indx'; allowed here: workspace, sources"),
        (MINIMAL + "index:\n  backend: faiss\n", "'index.backend': 'faiss' is not allowed"),
        (MINIMAL.replace("    table: documents\n", ""), "'sources.docs.table' is required"),
        (
            MINIMAL.replace("sqlite:///data/docs.db", "${RT_MISSING_VAR}"),
            "RT_MISSING_VAR is not set",
        ),
        (MINIMAL + "    capture: cursor\n", "capture: cursor needs `updated_at"),
        ("sources: [1, 2]\n", "'sources'"),
        ("sources:\n  bad-name:\n    url: x\n    table: t\n    text: [a]\n", "bad-name"),
        ("sources: {docs: [}\n", "not valid YAML at line 1"),
        (MINIMAL + "index:\n  backend: weaviate\n", "backend weaviate needs `url:`"),
    ],
)
def test_bad_files_give_one_line_naming_key_and_file(
    tmp_path: Path, text: str, expected: str
) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load_params(path)
    message = str(caught.value)
    assert expected in message
    assert str(path) in message
    assert "\n" not in message


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="params file not found"):
        load_params(tmp_path / "nope.yaml")


def test_params_are_frozen(tmp_path: Path) -> None:
    params = load_params(write(tmp_path, MINIMAL))
    with pytest.raises(ValueError):
        params.sync.batch_size = 3  # type: ignore[misc]


@pytest.mark.parametrize(
    ("tracking", "expected"),
    [
        ("", "{ws}/mlartifacts"),  # local store: a folder in the workspace
        ("tracking: {uri: 'http://mlflow:5000'}\n", None),  # the server's artifact root
        ("tracking: {uri: 'http://mlflow:5000', artifacts: 's3://ml/art'}\n", "s3://ml/art"),
        ("tracking: {artifacts: art}\n", "{root}/art"),  # relative to the params file
    ],
)
def test_artifact_location(tmp_path: Path, tracking: str, expected: str | None) -> None:
    path = tmp_path / "params.yaml"
    path.write_text("sources: {}\n" + tracking)
    params = load_params(path)
    if expected is not None:
        expected = expected.format(ws=params.workspace.path, root=tmp_path.resolve())
    assert params.artifact_location() == expected


def test_services_ports_are_checked(tmp_path: Path) -> None:
    path = tmp_path / "params.yaml"
    path.write_text("services: {prefect_port: 70000}\n")
    with pytest.raises(ConfigError, match=r"services\.prefect_port"):
        load_params(path)


def test_yaml_aliases_are_refused_before_they_expand(tmp_path: Path) -> None:
    # nine levels of nine aliases: 9**9 strings if expanded (the "billion laughs" shape)
    lines = ['l0: &l0 "lol"']
    for level in range(1, 10):
        refs = ", ".join([f"*l{level - 1}"] * 9)
        lines.append(f"l{level}: &l{level} [{refs}]")
    lines.append("sources: {}")
    path = tmp_path / "params.yaml"
    path.write_text("\n".join(lines) + "\n")
    assert len(path.read_bytes()) < 1500
    with pytest.raises(ConfigError) as caught:
        load_params(path)
    message = str(caught.value)
    assert "aliases" in message and "line 2" in message and "\n" not in message
