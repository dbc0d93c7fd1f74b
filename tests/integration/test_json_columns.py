"""JSON columns read back as stored, on SQLite and PostgreSQL — also what a faster parser
would bend (orjson reads an integer beyond 64 bits as a float)."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from outreach.state.models import Customer

ATTRIBUTES: dict[str, Any] = {
    "points": 2**70 + 1,  # beyond 64 bits, and not a float's
    "ratio": 0.1,
    "note": 'تأخر الطلب — "quoted", back\\slash, tab\t',
    "tags": ["vip", None, True, {"nested": [1, 2.5]}],
}


def test_attributes_read_back_exactly_as_written(engine: Engine) -> None:
    with engine.begin() as connection:
        connection.execute(
            sa.insert(Customer.__table__),  # type: ignore[attr-defined]
            [{"id": "c-1", "name": "Layla", "attributes": ATTRIBUTES}],
        )
        (stored,) = connection.execute(sa.select(Customer.__table__.c.attributes)).scalars()  # type: ignore[attr-defined]
    assert stored == ATTRIBUTES
