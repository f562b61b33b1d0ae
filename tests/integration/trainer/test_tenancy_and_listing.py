"""Organizations see only their own jobs and models; listings are newest first with working cursors."""

from __future__ import annotations

import grpc

import tailor.trainer.v1.model_registry_service_pb2 as registry_pb2
import tailor.trainer.v1.trainer_service_pb2 as trainer_pb2
from services.common.tenancy import call_context
from tailor.trainer.v1 import job_pb2
from tests.integration.trainer.conftest import ORG, OTHER_ORG
from tests.integration.trainer.harness import (
    FakeDataset,
    PlayedWorker,
    RecordingExecutor,
    TrainerClient,
    refusal,
)


async def succeeded_job(
    trainer: TrainerClient, files: FakeDataset, executor: RecordingExecutor
) -> job_pb2.Job:
    """A job trained to the end by a played worker, with one checkpoint."""
    job = await trainer.create(ORG, training_file=files.add_file(ORG), suffix="mine")
    worker = PlayedWorker(trainer, await executor.launched(job.id), ORG)
    plan = await worker.claim()
    await worker.started()
    await worker.checkpoint(plan, 3)
    finished = await worker.succeeded(plan)
    executor.exit(worker.identity.attempt_id)
    return finished


async def test_another_organizations_job_and_models_behave_as_missing(
    scripted_trainer: TrainerClient, files: FakeDataset, executor: RecordingExecutor
) -> None:
    job = await succeeded_job(scripted_trainer, files, executor)
    checkpoint = (await scripted_trainer.checkpoints(ORG, job.id))[0].fine_tuned_model_checkpoint
    jobs, models = scripted_trainer.jobs, scripted_trainer.models

    with call_context(OTHER_ORG, None):
        for call in (
            jobs.GetJob(trainer_pb2.GetJobRequest(job_id=job.id)),
            jobs.CancelJob(trainer_pb2.CancelJobRequest(job_id=job.id)),
            jobs.PauseJob(trainer_pb2.PauseJobRequest(job_id=job.id)),
            jobs.ResumeJob(trainer_pb2.ResumeJobRequest(job_id=job.id)),
            jobs.ListJobEvents(trainer_pb2.ListJobEventsRequest(job_id=job.id)),
            jobs.ListJobCheckpoints(trainer_pb2.ListJobCheckpointsRequest(job_id=job.id)),
            models.ResolveModel(registry_pb2.ResolveModelRequest(model=job.fine_tuned_model)),
            models.ResolveModel(registry_pb2.ResolveModelRequest(model=checkpoint)),
            models.DeleteModel(registry_pb2.DeleteModelRequest(model=job.fine_tuned_model)),
        ):
            assert (await refusal(call)).status == grpc.StatusCode.NOT_FOUND
        assert list((await jobs.ListJobs(trainer_pb2.ListJobsRequest())).jobs) == []
        listed = (await models.ListModels(registry_pb2.ListModelsRequest())).models
        assert [m.id for m in listed] == ["tailor-tiny"]
        # Continuing to train another organization's model is refused like an unknown model.
        error = await refusal(
            jobs.CreateJob(
                trainer_pb2.CreateJobRequest(
                    model=job.fine_tuned_model, training_file=files.add_file(OTHER_ORG)
                )
            )
        )
        assert (error.status, error.param, error.code) == (
            grpc.StatusCode.INVALID_ARGUMENT,
            "model",
            "model_not_found",
        )

    # The owner still has everything.
    assert (await scripted_trainer.resolve(ORG, job.fine_tuned_model)).job_id == job.id


async def test_the_registry_lists_and_deletes_an_organizations_models(
    scripted_trainer: TrainerClient, files: FakeDataset, executor: RecordingExecutor
) -> None:
    job = await succeeded_job(scripted_trainer, files, executor)
    checkpoint = f"{job.fine_tuned_model}:ckpt-step-3"
    models = scripted_trainer.models
    with call_context(ORG, None):
        listed = (await models.ListModels(registry_pb2.ListModelsRequest())).models
        # Base models first, then the organization's models newest first.
        assert [(m.id, m.kind, m.owned_by) for m in listed] == [
            ("tailor-tiny", registry_pb2.MODEL_KIND_BASE, "system"),
            (job.fine_tuned_model, registry_pb2.MODEL_KIND_FINE_TUNED, ORG),
            (checkpoint, registry_pb2.MODEL_KIND_CHECKPOINT, ORG),
        ]

        base = (await models.ResolveModel(registry_pb2.ResolveModelRequest(model="tailor-tiny"))).model
        assert (base.kind, base.adapter_uri, base.owned_by) == (registry_pb2.MODEL_KIND_BASE, "", "system")
        error = await refusal(models.DeleteModel(registry_pb2.DeleteModelRequest(model="tailor-tiny")))
        assert error.status == grpc.StatusCode.PERMISSION_DENIED

        deleted = await models.DeleteModel(registry_pb2.DeleteModelRequest(model=job.fine_tuned_model))
        assert (deleted.model, deleted.deleted) == (job.fine_tuned_model, True)
        for call in (
            models.ResolveModel(registry_pb2.ResolveModelRequest(model=job.fine_tuned_model)),
            models.DeleteModel(registry_pb2.DeleteModelRequest(model=job.fine_tuned_model)),
        ):
            error = await refusal(call)
            assert (error.status, error.code) == (grpc.StatusCode.NOT_FOUND, "model_not_found")
        # Its checkpoint is a separate name, deleted on its own (as on OpenAI).
        assert (
            await models.ResolveModel(registry_pb2.ResolveModelRequest(model=checkpoint))
        ).model.id == checkpoint
        listed = (await models.ListModels(registry_pb2.ListModelsRequest())).models
        assert [m.id for m in listed] == ["tailor-tiny", checkpoint]


async def test_jobs_list_newest_first_with_cursor_and_metadata_filter(
    scripted_trainer: TrainerClient, files: FakeDataset
) -> None:
    created = [
        await scripted_trainer.create(ORG, training_file=files.add_file(ORG), metadata={"batch": str(i % 2)})
        for i in range(5)
    ]
    await scripted_trainer.create(OTHER_ORG, training_file=files.add_file(OTHER_ORG))
    jobs = scripted_trainer.jobs
    with call_context(ORG, None):
        pages, after = [], ""
        while True:
            page = await jobs.ListJobs(trainer_pb2.ListJobsRequest(limit=2, after=after))
            pages.append(([job.id for job in page.jobs], page.has_more))
            if not page.has_more:
                break
            after = page.jobs[-1].id
        newest_first = [job.id for job in reversed(created)]
        assert pages == [(newest_first[0:2], True), (newest_first[2:4], True), (newest_first[4:], False)]

        odd = await jobs.ListJobs(trainer_pb2.ListJobsRequest(metadata={"batch": "1"}))
        assert [job.id for job in odd.jobs] == [created[3].id, created[1].id] and not odd.has_more

        for bad in (
            trainer_pb2.ListJobsRequest(limit=101),
            trainer_pb2.ListJobsRequest(after="ftjob-unknown"),
        ):
            assert (await refusal(jobs.ListJobs(bad))).status == grpc.StatusCode.INVALID_ARGUMENT


async def test_events_page_newest_first(scripted_trainer: TrainerClient, files: FakeDataset) -> None:
    job = await scripted_trainer.create(ORG, training_file=files.add_file(ORG))
    await scripted_trainer.wait_for(ORG, job.id, job_pb2.JOB_STATUS_QUEUED)
    with call_context(ORG, None):
        first = await scripted_trainer.jobs.ListJobEvents(
            trainer_pb2.ListJobEventsRequest(job_id=job.id, limit=2)
        )
        rest = await scripted_trainer.jobs.ListJobEvents(
            trainer_pb2.ListJobEventsRequest(job_id=job.id, limit=2, after=first.events[-1].id)
        )
    assert [e.message for e in first.events] == [
        "Files validated, moving job to queued state",
        f"Validating training file: {job.training_file}",
    ]
    assert first.has_more and not rest.has_more
    assert [e.message for e in rest.events] == [f"Created fine-tuning job: {job.id}"]
    assert all(e.id.startswith("ftevent-") and e.level == job_pb2.EVENT_LEVEL_INFO for e in first.events)
