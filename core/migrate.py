"""Run the Alembic migrations from code (api/worker startup, tests); same as `alembic upgrade head`."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config

ROOT = Path(__file__).resolve().parents[1]
ALEMBIC_INI = ROOT / "alembic.ini"


def alembic_config(url: str | None = None, configure_logger: bool = False) -> Config:
    """An Alembic Config for this repo; `url` overrides INKWELL_DATABASE_URL when given."""
    config = Config(str(ALEMBIC_INI))
    if url is not None:
        config.attributes["url"] = str(url)
    config.attributes["configure_logger"] = configure_logger
    return config


def upgrade_head(url: str | None = None) -> None:
    """Create or update the schema of `url` (default: the settings' database) to the newest revision."""
    command.upgrade(alembic_config(url), "head")
