"""Changelog install and uninstall on every dialect: triggers capture, uninstall removes."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa

from ragtune.adapters.changelog import Changelog
from ragtune.adapters.sources import SqlSource
from ragtune.config import load_params
from ragtune.errors import SourceError
from ragtune.workspace import open_syncs
from tests.support import Database, create_documents, write_params


def test_triggers_capture_every_kind_of_change_and_uninstall_removes_them(
    database: Database, tmp_path: Path
) -> None:
    table = create_documents(database)
    params = load_params(write_params(tmp_path / "ws", database.url))
    source = SqlSource.open("docs", params.sources["docs"])
    changelog = Changelog(source, params.workspace.path)
    changelog.install()
    changelog.install()  # idempotent
    with database.engine.begin() as c:
        c.execute(
            table.insert(),
            [{"id": 1, "title": "a", "body": "x"}, {"id": 2, "title": "b", "body": "y"}],
        )
        c.execute(table.update().where(table.c.id == 1).values(body="z"))
        c.execute(table.update().where(table.c.id == 2).values(id=3))  # a key change logs both keys
        c.execute(table.delete().where(table.c.id == 1))
    pending = changelog.pending(100)
    assert [(p.key, p.op) for p in pending] == [
        ("1", "I"),
        ("2", "I"),
        ("1", "U"),
        ("2", "U"),
        ("3", "U"),
        ("1", "D"),
    ]
    assert all(p.changed_at.tzinfo is not None for p in pending)
    assert changelog.ack([pending[0].id, pending[2].id])
    assert [p.id for p in changelog.pending(100)] == [
        p.id for p in pending if p.id not in (pending[0].id, pending[2].id)
    ]

    changelog.uninstall()
    assert not changelog.is_installed()
    inspector = sa.inspect(database.engine)
    assert not [t for t in inspector.get_table_names() if t.startswith("ragtune_")]
    with database.engine.begin() as c:  # writes work as before, and nothing is captured
        c.execute(table.insert().values(id=9, title="after", body="uninstall"))
    with pytest.raises(
        SourceError, match="changelog is not installed; run `ragtune source install docs`"
    ):
        open_syncs(params)
    source.close()
