"""/v1/models: base and own fine-tuned models listed, names with ':' and '/', deletion is final."""

from __future__ import annotations

import openai
import pytest

from tests.unit.gateway.conftest import KEY_B, Gateway
from tests.unit.gateway.fakes import BASE_MODEL, SLASHED_BASE_MODEL
from tests.unit.gateway.test_fine_tuning import training_file


async def fine_tuned_model(gateway: Gateway) -> tuple[str, list[str]]:
    """A succeeded job's model name and its checkpoints' names, in org-a."""
    job = await gateway.sdk().fine_tuning.jobs.create(
        model=BASE_MODEL, training_file=await training_file(gateway), suffix="m"
    )
    done = gateway.fakes.trainer.succeed(job.id, checkpoints=2)
    checkpoints = [c.fine_tuned_model_checkpoint for c in gateway.fakes.trainer.checkpoints[job.id]]
    return done.fine_tuned_model, checkpoints


async def test_list_has_base_models_and_only_the_callers_own(gateway: Gateway) -> None:
    name, checkpoints = await fine_tuned_model(gateway)
    listed = await gateway.sdk().models.list()
    ids = [m.id for m in listed.data]
    assert ids[:2] == [BASE_MODEL, SLASHED_BASE_MODEL]
    assert set(ids[2:]) == {name, *checkpoints}
    own = next(m for m in listed.data if m.id == name)
    assert own.object == "model" and own.owned_by == "org-a" and isinstance(own.created, int)
    assert listed.to_dict().keys() == {"object", "data"}  # not paginated

    other = [m.id for m in (await gateway.sdk(KEY_B).models.list()).data]
    assert other == [BASE_MODEL, SLASHED_BASE_MODEL]


async def test_retrieve_names_with_colons_and_slashes(gateway: Gateway) -> None:
    name, checkpoints = await fine_tuned_model(gateway)
    client = gateway.sdk()
    assert (await client.models.retrieve(name)).id == name
    assert (await client.models.retrieve(checkpoints[0])).id == checkpoints[0]
    # SDK 3.x sends '/' as %2F; SDK 1.x sends it raw: both are one name
    assert (await client.models.retrieve(SLASHED_BASE_MODEL)).owned_by == "system"
    async with gateway.http() as http:
        raw = await http.get(f"/v1/models/{SLASHED_BASE_MODEL}")
    assert raw.status_code == 200 and raw.json()["id"] == SLASHED_BASE_MODEL


async def test_unknown_and_foreign_models_are_404_model_not_found(gateway: Gateway) -> None:
    name, _ = await fine_tuned_model(gateway)
    for client, model in ((gateway.sdk(), "ft:nope:org-a::x"), (gateway.sdk(KEY_B), name)):
        with pytest.raises(openai.NotFoundError) as caught:
            await client.models.retrieve(model)
        assert caught.value.code == "model_not_found"
        assert (
            caught.value.body["message"]
            == f"The model `{model}` does not exist or you do not have access to it."
        )  # type: ignore[index]
    with pytest.raises(openai.NotFoundError):
        await gateway.sdk(KEY_B).models.delete(name)


async def test_delete_is_final_everywhere_and_unloads_the_adapter(gateway: Gateway) -> None:
    name, _ = await fine_tuned_model(gateway)
    client = gateway.sdk()
    deleted = await client.models.delete(name)
    assert (deleted.id, deleted.object, deleted.deleted) == (name, "model", True)
    assert gateway.fakes.inference.unloaded == [name]

    with pytest.raises(openai.NotFoundError):
        await client.models.retrieve(name)
    with pytest.raises(openai.NotFoundError) as caught:
        await client.chat.completions.create(model=name, messages=[{"role": "user", "content": "hi"}])
    assert caught.value.code == "model_not_found"
    assert name not in [m.id for m in (await client.models.list()).data]
    with pytest.raises(openai.NotFoundError):
        await client.models.delete(name)


async def test_base_models_cannot_be_deleted(gateway: Gateway) -> None:
    with pytest.raises(openai.PermissionDeniedError):
        await gateway.sdk().models.delete(BASE_MODEL)
