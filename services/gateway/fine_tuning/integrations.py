"""A job's ``integrations[]``: OpenAI's ``wandb`` and Tailor's own ``mlflow`` (docs/integrations.md),
as requested and as echoed on the job.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator
from pydantic_core import PydanticCustomError

from tailor.trainer.v1 import job_pb2


class WandbSettings(BaseModel):
    """OpenAI's ``integrations[].wandb``: the W&B project (required), entity, run name and tags."""

    model_config = ConfigDict(extra="forbid")

    project: str = Field(min_length=1, max_length=128)
    entity: str | None = Field(None, max_length=128)
    name: str | None = Field(None, max_length=128)
    tags: list[Annotated[str, Field(min_length=1, max_length=64)]] | None = Field(None, max_length=32)


class MlflowSettings(BaseModel):
    """Tailor's ``integrations[].mlflow``: the tracking server, the experiment (both required), the run name.

    Only lengths are checked here; the trainer owns the rule on the URL (http(s), the
    deployment's allowed hosts) and its refusal reaches the client as a 400 naming the field.
    """

    model_config = ConfigDict(extra="forbid")

    tracking_uri: str = Field(min_length=1, max_length=2048)
    # MLflow's own column sizes: experiments.name 256, runs.name 250.
    experiment_name: str = Field(min_length=1, max_length=256)
    run_name: str | None = Field(None, min_length=1, max_length=250)


class Integration(BaseModel):
    """One ``integrations[]`` item: ``wandb`` (OpenAI's type) or ``mlflow`` (Tailor's own).

    Not a pydantic discriminated union: its errors put the tag in the location
    (``integrations[0].mlflow.mlflow.tracking_uri``); here the block named by ``type`` is
    required and the other one refused, each error naming ``integrations[i].<block>``.
    """

    model_config = ConfigDict(extra="forbid")

    type: Literal["wandb", "mlflow"]
    wandb: WandbSettings | None = Field(None, validate_default=True)
    mlflow: MlflowSettings | None = Field(None, validate_default=True)

    @field_validator("wandb", "mlflow")
    @classmethod
    def _the_block_of_the_type(cls, value: BaseModel | None, info: ValidationInfo) -> BaseModel | None:
        chosen = info.data.get("type")
        if chosen is None:  # the type itself was refused; that error is the one reported
            return value
        if info.field_name == chosen and value is None:
            raise PydanticCustomError("missing", "Field required")
        if info.field_name != chosen and value is not None:
            raise PydanticCustomError("extra_forbidden", "Not allowed with this integration type")
        return value

    def to_proto(self) -> job_pb2.Integration:
        if self.mlflow is not None:
            mlflow = self.mlflow
            return job_pb2.Integration(
                type=self.type,
                mlflow=job_pb2.MlflowIntegration(
                    tracking_uri=mlflow.tracking_uri,
                    experiment_name=mlflow.experiment_name,
                    run_name=mlflow.run_name or "",
                ),
            )
        assert self.wandb is not None  # the validator requires the block of the type
        settings = self.wandb
        return job_pb2.Integration(
            type=self.type,
            wandb=job_pb2.WandbIntegration(
                project=settings.project,
                entity=settings.entity or "",
                name=settings.name or "",
                tags=settings.tags or [],
            ),
        )


def integration_from_proto(integration: job_pb2.Integration) -> dict[str, Any]:
    """The ``integrations[]`` item as requested: unset optional fields are null, ``tags`` a list
    (OpenAI's spec types it a non-null array; the SDK takes either)."""
    if integration.type == "mlflow":
        mlflow = integration.mlflow
        return {
            "type": "mlflow",
            "mlflow": {
                "tracking_uri": mlflow.tracking_uri,
                "experiment_name": mlflow.experiment_name,
                "run_name": mlflow.run_name or None,
            },
        }
    wandb = integration.wandb
    return {
        "type": integration.type,
        "wandb": {
            "project": wandb.project,
            "entity": wandb.entity or None,
            "name": wandb.name or None,
            "tags": list(wandb.tags),
        },
    }
