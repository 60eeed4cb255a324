"""Alembic environment: the URL comes from core.settings unless the caller hands one over.

Callers may set, on the alembic Config: `attributes["connection"]` (an open Connection to use),
`attributes["url"]` (a URL string), or the `sqlalchemy.url` option; otherwise
`INKWELL_DATABASE_URL` (via core.settings) decides. `attributes["configure_logger"] = False`
leaves the process's logging alone (tests, api startup).
"""

from __future__ import annotations

from logging.config import fileConfig

from alembic import context
from sqlalchemy import Connection
from sqlalchemy.pool import NullPool

from core.db import make_engine, normalize_url
from core.models import Base
from core.settings import absolute_sqlite_url, ensure_sqlite_parent, get_settings

config = context.config
target_metadata = Base.metadata

if config.config_file_name is not None and config.attributes.get("configure_logger", True):
    fileConfig(config.config_file_name, disable_existing_loggers=False)


def database_url() -> str:
    """The URL to migrate: the caller's, else the settings' (relative SQLite paths made absolute)."""
    url = config.attributes.get("url") or config.get_main_option("sqlalchemy.url")
    if url:
        return absolute_sqlite_url(str(url)) or str(url)
    return get_settings().database_url


def configure(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        compare_type=True,
        render_as_batch=connection.dialect.name == "sqlite",  # SQLite alters tables by copying them
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_offline() -> None:
    """`alembic upgrade head --sql`: print the SQL instead of running it."""
    url = normalize_url(database_url())
    context.configure(
        url=url,
        target_metadata=target_metadata,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
        compare_type=True,
        render_as_batch=url.get_backend_name() == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        configure(connection)
        return
    url = database_url()
    ensure_sqlite_parent(url)
    engine = make_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            if conn.dialect.name == "sqlite":
                # Batch mode copies a table and drops the old one; with foreign keys on, that DROP would
                # cascade to every child row. Off for the migration (outside any transaction), checked after.
                conn.exec_driver_sql("PRAGMA foreign_keys=OFF")
                conn.commit()
            configure(conn)
            if conn.dialect.name == "sqlite":
                broken = conn.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
                conn.commit()
                if broken:
                    raise RuntimeError(f"migration left rows with broken foreign keys: {broken[:5]}")
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
