"""Durable records behind SQLAlchemy 2 (async): SQLite in the data directory, or Postgres.

Each service that keeps records declares its own tables (its own ``DeclarativeBase``) and
opens one :class:`Database` with its URL setting: ``sqlite+aiosqlite:///...`` by default,
``postgresql+asyncpg://...`` in production. Blobs never go into SQL.

Listings are newest first with OpenAI's cursor pagination (``after`` = the id of the last
item of the previous page, exclusive). Rows are ordered by an autoincrement ``seq``
column rather than by ``created_at`` (whole seconds tie often), so pages never skip or
repeat a row; :func:`paginate` does this for any table that has ``seq`` and ``id``.

A database that cannot be reached is UNAVAILABLE (retryable), whatever the driver calls
it: SQLite and psycopg raise ``OperationalError``, but asyncpg raises a plain ``OSError``
when the server refuses the connection and errors with a SQLSTATE of connection failure,
shutdown or exhausted resources when it goes away; see :func:`_means_unavailable`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Connection, MetaData, Select, event, inspect, text
from sqlalchemy.engine.interfaces import DBAPIConnection
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import InstrumentedAttribute
from sqlalchemy.pool import ConnectionPoolEntry
from sqlalchemy.schema import CreateColumn

from services.common.errors import InvalidArgument, Unavailable, shown

RowT = TypeVar("RowT")

# SQLSTATE classes of a server that is gone or cannot take the work now, rather than of a bad
# statement: 08 connection exception, 53 insufficient resources (too many connections, disk
# full), 57 operator intervention (shutting down, starting up).
_UNAVAILABLE_SQLSTATE_CLASSES = frozenset({"08", "53", "57"})


def _means_unavailable(error: DBAPIError) -> bool:
    """Whether a driver error says the database cannot be reached, not that a statement failed."""
    if isinstance(error, OperationalError) or error.connection_invalidated:
        return True
    sqlstate = getattr(error.orig, "sqlstate", None) or getattr(error.orig, "pgcode", None)
    return isinstance(sqlstate, str) and sqlstate[:2] in _UNAVAILABLE_SQLSTATE_CLASSES


def _unavailable(error: BaseException) -> Unavailable:
    detail = getattr(error, "orig", None) or error
    return Unavailable(f"the records database is unavailable: {detail}")


def sqlite_url(path: Path) -> str:
    """The async SQLite URL of a database file (its directory is created)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite+aiosqlite:///{path.resolve()}"


def _sqlite_pragmas(dbapi_connection: DBAPIConnection, _: ConnectionPoolEntry) -> None:
    cursor = dbapi_connection.cursor()
    # WAL lets readers proceed during a write; busy_timeout makes a second writer wait
    # instead of failing at once; synchronous=NORMAL is durable across process crashes in WAL.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


class Database:
    """An async engine and session factory for one service's tables."""

    def __init__(self, url: str, metadata: MetaData, *, echo: bool = False) -> None:
        self.url = url
        self.metadata = metadata
        self.engine: AsyncEngine = create_async_engine(url, echo=echo, pool_pre_ping=True)
        if self.engine.dialect.name == "sqlite":
            event.listen(self.engine.sync_engine, "connect", _sqlite_pragmas)
        self.sessions = async_sessionmaker(self.engine, expire_on_commit=False)

    async def create_schema(self) -> None:
        """Creates missing tables and the columns added to them since (idempotent)."""
        try:
            async with self.engine.begin() as connection:
                await connection.run_sync(self.metadata.create_all)
                await connection.run_sync(add_new_columns, self.metadata)
        except OSError as error:
            raise _unavailable(error) from error
        except DBAPIError as error:
            if _means_unavailable(error):
                raise _unavailable(error) from error
            raise

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        """A session in a transaction: committed on success, rolled back on any error.

        A database that cannot be reached surfaces as UNAVAILABLE, not as an internal error.
        """
        try:
            async with self.sessions() as session, session.begin():
                try:
                    # Connect before the caller's work, so that an OSError here is known to be
                    # the database's (the caller's own I/O may raise OSError too).
                    await session.connection()
                except OSError as error:
                    raise _unavailable(error) from error
                yield session
        except DBAPIError as error:
            if _means_unavailable(error):
                raise _unavailable(error) from error
            raise

    async def check(self) -> None:
        """Readiness: a trivial query."""
        async with self.transaction() as session:
            await session.execute(text("SELECT 1"))

    async def close(self) -> None:
        await self.engine.dispose()


async def paginate(
    session: AsyncSession,
    query: Select[Any],
    *,
    seq: InstrumentedAttribute[int],
    id_column: InstrumentedAttribute[str],
    after: str | None,
    limit: int,
    newest_first: bool = True,
) -> tuple[Sequence[Any], bool]:
    """One page of ``query`` (already filtered, e.g. by organization) and whether more follow.

    ``after`` must be the id of a row ``query`` can see: another organization's id is
    refused exactly like an unknown one (INVALID_ARGUMENT on ``after``).
    """
    if after:
        cursor = (await session.execute(query.with_only_columns(seq).where(id_column == after))).scalar()
        if cursor is None:
            raise InvalidArgument(f"after: no object with id {shown(after)!r} in this listing", param="after")
        query = query.where(seq < cursor if newest_first else seq > cursor)
    query = query.order_by(seq.desc() if newest_first else seq.asc()).limit(limit + 1)
    rows = (await session.execute(query)).scalars().all()
    return rows[:limit], len(rows) > limit


async def first_or_none(session: AsyncSession, query: Select[tuple[RowT]]) -> RowT | None:
    return (await session.execute(query.limit(1))).scalar_one_or_none()


__all__ = ["Database", "first_or_none", "paginate", "sqlite_url"]


def add_new_columns(connection: Connection, metadata: MetaData) -> None:
    """Adds the columns that a database made by an earlier release lacks (``create_all`` adds tables only).

    A column added after a table's first release must have a server default, so that the
    rows already there read as they did. Postgres replicas starting together may race to
    add one; ``IF NOT EXISTS`` makes the loser's statement a no-op (SQLite has one process).
    """
    inspector = inspect(connection)
    for table in metadata.sorted_tables:
        present = {column["name"] for column in inspector.get_columns(table.name)}
        for column in table.columns:
            if column.name in present:
                continue
            definition = CreateColumn(column).compile(dialect=connection.dialect)
            guard = "IF NOT EXISTS " if connection.dialect.name == "postgresql" else ""
            connection.execute(text(f"ALTER TABLE {table.name} ADD COLUMN {guard}{definition}"))
