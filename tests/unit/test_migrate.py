"""The schema check needs no Alembic, so its idea of the newest migration must match Alembic's;
what a migration does to the rows already there."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from outreach.errors import DatabaseNotReady
from outreach.state import ledger
from outreach.state.db import make_engine, require_current_schema
from outreach.state.migrate import SCHEMA_HEAD, current_revision, head_revision, upgrade


def test_the_schema_head_is_the_newest_migration_script() -> None:
    """SCHEMA_HEAD names the migration Alembic sees as the head."""
    assert head_revision() == SCHEMA_HEAD


def test_a_new_sqlite_file_is_migrated_to_the_head(tmp_path: Path) -> None:
    """A SQLite file is created and migrated on first use."""
    engine = make_engine(f"sqlite:///{tmp_path / 'new.db'}")
    assert current_revision(engine) == SCHEMA_HEAD
    require_current_schema(engine)


def test_the_migrations_build_the_schema_the_models_describe(engine: Engine) -> None:
    """Every table, column and index the code declares is what the migrations made, on both
    databases: a model changed without its migration (or the reverse) is caught here."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext
    from sqlmodel import SQLModel

    with engine.connect() as connection:
        drift = compare_metadata(MigrationContext.configure(connection), SQLModel.metadata)
    assert drift == []


def test_an_unmigrated_database_is_refused_with_what_to_run(tmp_path: Path) -> None:
    """A database that was never migrated is refused with the command that fixes it."""
    engine = make_engine(f"sqlite:///{tmp_path / 'bare.db'}", migrate_sqlite=False)
    assert current_revision(engine) is None
    with pytest.raises(DatabaseNotReady, match="run `outreach db upgrade`"):
        require_current_schema(engine)


def _contact(key: str, state: str, at: datetime, *, step: int = 1, sent: bool = False) -> dict[str, object]:
    return {
        "id": f"{key}-{step}",
        "dedupe_key": f"{key}:{step}",
        "rule": "stalled-checkout",
        "about": "checkout",
        "entity_id": key,
        "customer_id": "c1",
        "state": state,
        "reason": "no channel left" if state == "suppressed" else "",
        "decided_at": at,
        "updated_at": at,
        "sent_at": at if sent else None,
        "steps": [],
        "step": step,
        "priority": 0,
        "attempts": 0,
    }


def test_what_waited_before_0012_is_found_by_index_after_it(tmp_path: Path) -> None:
    """0012 finds held contacts by their recheck time and journeys by `next_step_from`: the
    upgrade marks a contact held for want of a channel due at once, and gives each sent contact
    whose next step is not decided its sent time."""
    engine = make_engine(f"sqlite:///{tmp_path / 'old.db'}", migrate_sqlite=False)
    upgrade(engine, "0011")
    at = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
    old = sa.table(
        "contacts", *(sa.column(name, ledger.contacts.c[name].type) for name in _contact("k", "sent", at))
    )
    with engine.begin() as connection:
        connection.execute(
            sa.insert(old),
            [
                _contact("held", "suppressed", at),
                _contact("open", "sent", at, sent=True),
                _contact("done", "sent", at, sent=True),
                _contact("done", "pending", at, step=2),
            ],
        )
    upgrade(engine)
    later = at + timedelta(days=2)
    with engine.connect() as connection:
        assert [held.entity_id for held in ledger.held_due(connection, "stalled-checkout", at)] == ["held"]
        due = ledger.followups_due(connection, "stalled-checkout", [(2, timedelta(days=1))], later)
    assert [(f.entity_id, f.step, f.previous_sent_at) for f in due] == [("open", 2, at)]
