"""A trainer database made by an earlier release gets the columns added since, and its jobs read as before."""

from __future__ import annotations

from sqlalchemy import text

from services.common.database import Database
from services.trainer.lifecycle import Action, apply
from services.trainer.records import Base, JobRecord, Status, TrainerRecords, job_by_id


def a_paused_job() -> JobRecord:
    return JobRecord(
        id="ftjob-old",
        organization_id="org-a",
        created_at=1,
        model="tailor-tiny",
        base_model="tailor-tiny",
        training_file="file-1",
        method_type="METHOD_TYPE_SUPERVISED",
        seed=1,
        request_fingerprint="f",
        model_id_segment="abcd1234",
        status=Status.PAUSED,
    )


async def test_a_database_without_the_pause_column_gets_it_and_its_paused_jobs_resume_to_the_queue(
    database_url: str,
) -> None:
    records = TrainerRecords(Database(database_url, Base.metadata))
    await records.create_schema()
    async with records.write() as session:
        session.add(a_paused_job())
    # The table as the release before `paused_while_validating` made it.
    async with records.write() as session:
        await session.execute(text("ALTER TABLE jobs DROP COLUMN paused_while_validating"))
    await records.close()

    upgraded = TrainerRecords(Database(database_url, Base.metadata))
    try:
        await upgraded.create_schema()
        await upgraded.create_schema()  # a second start finds nothing to add
        async with upgraded.write() as session:
            job = await job_by_id(session, "ftjob-old")
            assert job is not None and job.paused_while_validating is False
            apply(session, job, Action.RESUME)
            assert job.status == Status.QUEUED
    finally:
        await upgraded.close()
