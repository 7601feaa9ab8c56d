"""Schema migrations with Alembic, shipped in the package.

Every change to the tables in :mod:`hfgit.store` is a revision in ``versions/``: start
one with ``alembic -c src/hfgit/migrations/alembic.ini revision -m "…"`` and write its
``upgrade`` by hand; ``tests/test_migrations.py`` checks that the revisions build exactly
the tables :mod:`hfgit.store` declares, and that an older database upgrades. A
database created before migrations existed (hfgit 0.1 made its tables with
``metadata.create_all``) is recognised by its tables and stamped as :data:`BASELINE`.
"""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

#: The first revision: the schema exactly as hfgit 0.1 created it.
BASELINE = "0001"
_HERE = Path(__file__).resolve().parent


def _config(connection: sa.Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(_HERE))
    config.attributes["connection"] = connection
    return config


def head() -> str:
    """The revision this release's code expects."""
    revision = ScriptDirectory.from_config(_config()).get_current_head()
    assert revision is not None
    return revision


def known(revision: str) -> bool:
    """Whether this release has ``revision`` (a newer release's database does not)."""
    return ScriptDirectory.from_config(_config()).get_revision(revision) is not None


def current(connection: sa.Connection) -> str | None:
    """The database's revision; :data:`BASELINE` for an unstamped hfgit 0.1 database,
    None for an empty one."""
    revision = MigrationContext.configure(connection).get_current_revision()
    if revision is None and sa.inspect(connection).has_table("accounts"):
        return BASELINE
    return revision


def upgrade(connection: sa.Connection) -> None:
    """Bring the database to :func:`head`, inside the caller's transaction."""
    config = _config(connection)
    unstamped = MigrationContext.configure(connection).get_current_revision() is None
    if unstamped and sa.inspect(connection).has_table("accounts"):
        command.stamp(config, BASELINE)
    command.upgrade(config, "head")
