"""The dataset service's durable records: one row per file, always scoped by organization.

A file's bytes live in the object store under :func:`object_key`; its record (name, size,
purpose, validation verdict, statistics) lives here, in SQLite under the data directory
or in Postgres. Every query filters by organization, so another organization's file id
reads exactly like an unknown one: :class:`FileNotFound`.
"""

from __future__ import annotations

import asyncio
import enum
import time
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

from sqlalchemy import JSON, BigInteger, Index, Integer, String, delete, select
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from services.common.database import Database, first_or_none, paginate, sqlite_url
from services.common.errors import NotFound
from services.common.not_found import file_not_found
from services.common.training_format import ExampleFormat, Problem
from services.dataset.config import DatasetSettings
from services.dataset.validation import FileStatistics


class FilePurpose(enum.StrEnum):
    """What a file is for, as OpenAI's ``purpose`` strings (the API's and the records' spelling)."""

    FINE_TUNE = "fine-tune"
    FINE_TUNE_RESULTS = "fine-tune-results"
    ASSISTANTS = "assistants"
    ASSISTANTS_OUTPUT = "assistants_output"
    BATCH = "batch"
    BATCH_OUTPUT = "batch_output"
    VISION = "vision"
    USER_DATA = "user_data"
    EVALS = "evals"


class FileStatus(enum.StrEnum):
    """Where a file is in its life, as OpenAI's ``status`` strings."""

    UPLOADED = "uploaded"
    PROCESSED = "processed"
    ERROR = "error"


class FileNotFound(NotFound):
    """No file with this id in the caller's organization (whether or not another has one)."""

    def __init__(self, file_id: str) -> None:
        answer = file_not_found(file_id)
        super().__init__(answer.message, param=answer.param, code=answer.code)


def now() -> int:
    """The current time in Unix seconds, as the API reports times."""
    return int(time.time())


def object_key(organization_id: str, file_id: str) -> str:
    """Where a file's bytes live: built from ids only, never from the uploader's filename."""
    return f"orgs/{organization_id}/files/{file_id}"


class Base(DeclarativeBase):
    pass


class FileRecord(Base):
    """One stored file: what the uploader said about it and what validation found."""

    __tablename__ = "files"
    __table_args__ = (Index("ix_files_organization_seq", "organization_id", "seq"),)

    # Listing order: created_at has whole seconds and ties, seq never does.
    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String, unique=True)
    organization_id: Mapped[str] = mapped_column(String)
    filename: Mapped[str] = mapped_column(String)
    # BigInteger: Postgres' Integer stops at 2 GiB.
    bytes: Mapped[int] = mapped_column(BigInteger)
    purpose: Mapped[str] = mapped_column(String)  # a FilePurpose value
    status: Mapped[str] = mapped_column(String)  # a FileStatus value
    status_details: Mapped[str] = mapped_column(String, default="")
    # The first problems, as [{"line", "code", "message"}]; empty unless status is error.
    problems: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    # FileStatistics as a dict, for processed fine-tuning files; null otherwise.
    statistics: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    sha256: Mapped[str] = mapped_column(String)
    created_at: Mapped[int] = mapped_column(BigInteger)
    expires_at: Mapped[int | None] = mapped_column(BigInteger, nullable=True)

    @property
    def object_key(self) -> str:
        return object_key(self.organization_id, self.id)

    @property
    def problem_list(self) -> list[Problem]:
        return [Problem(**problem) for problem in self.problems or ()]

    @property
    def file_statistics(self) -> FileStatistics | None:
        if self.statistics is None:
            return None
        values = dict(self.statistics)
        values["format"] = ExampleFormat(values["format"])
        return FileStatistics(**values)

    @staticmethod
    def problems_column(problems: Sequence[Problem]) -> list[dict[str, Any]]:
        return [asdict(problem) for problem in problems]

    @staticmethod
    def statistics_column(statistics: FileStatistics | None) -> dict[str, Any] | None:
        return None if statistics is None else {**asdict(statistics), "format": statistics.format.value}


def database_url(settings: DatasetSettings) -> str:
    """The configured URL, or SQLite in the data directory."""
    return settings.dataset_database_url or sqlite_url(settings.data_dir / "records" / "dataset.db")


class FileRecords:
    """The files table: add, get, list, delete, each within one organization.

    The schema is created on first use, so building the server needs no event loop.
    Each write is a single statement in its own transaction (no read-then-write), so
    concurrent uploads and deletes never trip over SQLite's refusal to upgrade a reader.
    """

    def __init__(self, database: Database) -> None:
        self.database = database
        self._schema_ready = False
        self._schema_lock = asyncio.Lock()

    @classmethod
    def open(cls, settings: DatasetSettings) -> FileRecords:
        return cls(Database(database_url(settings), Base.metadata))

    async def add(self, record: FileRecord) -> None:
        await self._ensure_schema()
        async with self.database.transaction() as session:
            session.add(record)

    async def get(self, organization_id: str, file_id: str) -> FileRecord:
        """The record; FileNotFound if the organization has no such file."""
        await self._ensure_schema()
        async with self.database.transaction() as session:
            record = await first_or_none(
                session,
                select(FileRecord).where(
                    FileRecord.organization_id == organization_id, FileRecord.id == file_id
                ),
            )
        if record is None:
            raise FileNotFound(file_id)
        return record

    async def list(
        self,
        organization_id: str,
        *,
        purpose: FilePurpose | None,
        after: str | None,
        limit: int,
        newest_first: bool,
    ) -> tuple[Sequence[FileRecord], bool]:
        """One page of the organization's files and whether more follow."""
        await self._ensure_schema()
        query = select(FileRecord).where(FileRecord.organization_id == organization_id)
        if purpose is not None:
            query = query.where(FileRecord.purpose == purpose.value)
        async with self.database.transaction() as session:
            return await paginate(
                session,
                query,
                seq=FileRecord.seq,
                id_column=FileRecord.id,
                after=after,
                limit=limit,
                newest_first=newest_first,
            )

    async def delete(self, organization_id: str, file_id: str) -> None:
        """Remove the record; FileNotFound if there was none (deleting twice is not found)."""
        await self._ensure_schema()
        async with self.database.transaction() as session:
            result = await session.execute(
                delete(FileRecord).where(
                    FileRecord.organization_id == organization_id, FileRecord.id == file_id
                )
            )
        if result.rowcount == 0:  # type: ignore[attr-defined]
            raise FileNotFound(file_id)

    async def check(self) -> None:
        """Readiness: the database answers."""
        await self.database.check()

    async def close(self) -> None:
        await self.database.close()

    async def _ensure_schema(self) -> None:
        if self._schema_ready:
            return
        async with self._schema_lock:
            if not self._schema_ready:
                await self.database.create_schema()
                self._schema_ready = True
