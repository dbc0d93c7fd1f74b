"""The schema check needs no Alembic, so its idea of the newest migration must match Alembic's."""

from __future__ import annotations

from pathlib import Path

import pytest

from outreach.errors import DatabaseNotReady
from outreach.state.db import make_engine, require_current_schema
from outreach.state.migrate import SCHEMA_HEAD, current_revision, head_revision


def test_the_schema_head_is_the_newest_migration_script() -> None:
    """SCHEMA_HEAD names the migration Alembic sees as the head."""
    assert head_revision() == SCHEMA_HEAD


def test_a_new_sqlite_file_is_migrated_to_the_head(tmp_path: Path) -> None:
    """A SQLite file is created and migrated on first use."""
    engine = make_engine(f"sqlite:///{tmp_path / 'new.db'}")
    assert current_revision(engine) == SCHEMA_HEAD
    require_current_schema(engine)


def test_an_unmigrated_database_is_refused_with_what_to_run(tmp_path: Path) -> None:
    """A database that was never migrated is refused with the command that fixes it."""
    engine = make_engine(f"sqlite:///{tmp_path / 'bare.db'}", migrate_sqlite=False)
    assert current_revision(engine) is None
    with pytest.raises(DatabaseNotReady, match="run `outreach db upgrade`"):
        require_current_schema(engine)
