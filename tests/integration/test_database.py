"""Records on SQLite and on Postgres: transactions that roll back, cursor pagination newest first,
and a database that cannot be reached reported as unavailable (retryable), not as a bug."""

from __future__ import annotations

import pytest
from sqlalchemy import Integer, String, select, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from services.common.database import Database, paginate
from services.common.errors import InvalidArgument, Unavailable
from tests.support.processes import free_port


class Base(DeclarativeBase):
    pass


class Item(Base):
    __tablename__ = "items"
    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String, unique=True)
    org: Mapped[str] = mapped_column(String)


@pytest.fixture
async def db(database_url: str):  # type: ignore[no-untyped-def]
    database = Database(database_url, Base.metadata)
    await database.create_schema()
    yield database
    await database.close()


async def test_pages_are_newest_first_exclusive_and_end_with_has_more_false(db: Database) -> None:
    async with db.transaction() as session:
        session.add_all([Item(id=f"item-{i}", org="a") for i in range(7)] + [Item(id="other", org="b")])
    seen, after, pages = [], None, 0
    while True:
        async with db.transaction() as session:
            rows, has_more = await paginate(
                session, select(Item).where(Item.org == "a"), seq=Item.seq, id_column=Item.id, after=after, limit=3
            )
        pages += 1
        seen += [r.id for r in rows]
        if not has_more:
            break
        after = rows[-1].id
    assert seen == [f"item-{i}" for i in reversed(range(7))]
    assert pages == 3


async def test_a_foreign_or_unknown_cursor_is_refused(db: Database) -> None:
    async with db.transaction() as session:
        session.add_all([Item(id="mine", org="a"), Item(id="theirs", org="b")])
    for cursor in ("theirs", "nope"):
        async with db.transaction() as session:
            with pytest.raises(InvalidArgument) as caught:
                await paginate(session, select(Item).where(Item.org == "a"), seq=Item.seq, id_column=Item.id,
                               after=cursor, limit=10)  # fmt: skip
        assert caught.value.param == "after"


async def test_a_failed_transaction_leaves_nothing_and_records_survive_reopening(
    db: Database, database_url: str
) -> None:
    with pytest.raises(RuntimeError):
        async with db.transaction() as session:
            session.add(Item(id="half", org="a"))
            await session.flush()
            raise RuntimeError("crash mid-write")
    async with db.transaction() as session:
        session.add(Item(id="kept", org="a"))
    await db.close()

    reopened = Database(database_url, Base.metadata)
    async with reopened.transaction() as session:
        ids = (await session.execute(select(Item.id))).scalars().all()
    await reopened.close()
    assert ids == ["kept"]


# SQLite raises OperationalError for anything that goes wrong, and every OperationalError
# is UNAVAILABLE; asyncpg needs telling apart (see services.common.database).


async def test_on_postgres_a_server_that_cannot_be_reached_is_unavailable_not_an_internal_error() -> None:
    database = Database(f"postgresql+asyncpg://tailor@127.0.0.1:{free_port()}/tailor", Base.metadata)
    try:
        with pytest.raises(Unavailable, match="the records database is unavailable"):
            await database.create_schema()
        with pytest.raises(Unavailable, match="the records database is unavailable"):
            async with database.transaction() as session:
                await session.execute(select(Item))
        with pytest.raises(Unavailable):
            await database.check()
    finally:
        await database.close()


async def test_on_postgres_a_bad_statement_is_not_mistaken_for_an_unreachable_database(
    postgres_url: str,
) -> None:
    # (SQLite cannot tell them apart: it raises OperationalError for both.)
    database = Database(postgres_url, Base.metadata)
    try:
        with pytest.raises(DBAPIError):
            async with database.transaction() as session:
                await session.execute(text("SELECT * FROM no_such_table"))
    finally:
        await database.close()
