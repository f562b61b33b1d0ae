"""Records: SQLite by default, transactions that roll back, cursor pagination newest first."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import Integer, String, select
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from services.common.database import Database, paginate, sqlite_url
from services.common.errors import InvalidArgument


class Base(DeclarativeBase):
    pass


class Item(Base):
    __tablename__ = "items"
    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String, unique=True)
    org: Mapped[str] = mapped_column(String)


@pytest.fixture
async def db(tmp_path: Path):  # type: ignore[no-untyped-def]
    database = Database(sqlite_url(tmp_path / "records" / "test.db"), Base.metadata)
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


async def test_a_failed_transaction_leaves_nothing_and_records_survive_reopening(db: Database, tmp_path: Path) -> None:
    with pytest.raises(RuntimeError):
        async with db.transaction() as session:
            session.add(Item(id="half", org="a"))
            await session.flush()
            raise RuntimeError("crash mid-write")
    async with db.transaction() as session:
        session.add(Item(id="kept", org="a"))
    await db.close()

    reopened = Database(sqlite_url(tmp_path / "records" / "test.db"), Base.metadata)
    async with reopened.transaction() as session:
        ids = (await session.execute(select(Item.id))).scalars().all()
    await reopened.close()
    assert ids == ["kept"]
