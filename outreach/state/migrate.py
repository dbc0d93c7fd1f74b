"""Alembic, driven from code: the migration scripts ship inside the package.

Alembic is imported only to migrate: every command checks the schema, and importing Alembic
costs more (0.16 s) than the rest of a small command's start-up after Python itself.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import sqlalchemy as sa
from sqlalchemy.engine import Engine

if TYPE_CHECKING:
    from alembic.config import Config

SCRIPT_LOCATION = "outreach.state:migrations"
# The newest migration in migrations/versions; tests/unit/test_migrate.py keeps it honest.
SCHEMA_HEAD = "0017"


def _config(engine: Engine | None = None) -> Config:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", SCRIPT_LOCATION)
    if engine is not None:
        config.attributes["engine"] = engine
    return config


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Bring the schema up to REVISION (idempotent)."""
    if revision == "head" and current_revision(engine) == SCHEMA_HEAD:
        return
    from alembic import command

    command.upgrade(_config(engine), revision)


def current_revision(engine: Engine) -> str | None:
    """The revision the database is at; None for a database never migrated."""
    with engine.connect() as connection:
        if not sa.inspect(connection).has_table("alembic_version"):
            return None
        version = connection.execute(sa.text("SELECT version_num FROM alembic_version")).scalar()
        return None if version is None else str(version)


def head_revision() -> str | None:
    """The newest revision among the migration scripts, as Alembic reads them."""
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(_config()).get_current_head()
