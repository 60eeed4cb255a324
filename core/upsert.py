"""INSERT ... ON CONFLICT DO UPDATE for the two backends this project runs on."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session


def upsert(session: Session, model: type, values: dict[str, Any], keys: list[str], update: list[str]) -> None:
    """Insert `values` into `model`'s table, or update the columns `update` of the row with equal `keys`.

    Uses the dialect's own insert (PostgreSQL or SQLite); it does not commit.
    """
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    elif dialect == "sqlite":
        from sqlalchemy.dialects.sqlite import insert
    else:
        raise NotImplementedError(f"upsert is not implemented for {dialect}")
    stmt = insert(model).values(**values)
    stmt = stmt.on_conflict_do_update(index_elements=keys, set_={col: stmt.excluded[col] for col in update})
    session.execute(stmt)
