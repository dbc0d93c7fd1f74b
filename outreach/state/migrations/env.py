"""Alembic environment: the engine is handed over by outreach.state.migrate."""

import sqlmodel
from alembic import context

from outreach.state import ledger, models, sweeps, test_sends  # noqa: F401

target_metadata = sqlmodel.SQLModel.metadata

engine = context.config.attributes["engine"]
with engine.begin() as connection:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()
