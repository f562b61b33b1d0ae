"""OpenAI shapes shared by several resources: cursor pages and the error envelope.

Responses are built as these pydantic models, so ``/openapi.json`` documents exactly
what is sent. Every field OpenAI sends is present, nulls included: the SDK does not
validate responses, so a missing field reads as ``None`` in the user's code much later.
"""

from __future__ import annotations

from typing import Annotated, Generic, Literal, Self, TypeVar

from pydantic import BaseModel, ConfigDict, Field

# What the gRPC contracts carry: a request integer outside its field's range is a 400 at the
# edge, naming the field, instead of an overflow deep inside a service (a 500).
INT32_MAX = 2**31 - 1
Int32 = Annotated[int, Field(ge=-(2**31), le=INT32_MAX)]
Int64 = Annotated[int, Field(ge=-(2**63), le=2**63 - 1)]

# Every listed object has an `id`, the cursor of the next page.
ItemT = TypeVar("ItemT", bound=BaseModel)


class CursorPage(BaseModel, Generic[ItemT]):
    """``{"object": "list", "data", "first_id", "last_id", "has_more"}``.

    The SDK's auto-pagination asks again with ``after=<last id>`` while ``has_more`` is
    true, so ``has_more`` is always a boolean and ``after`` is honoured by every listing.
    ``first_id`` and ``last_id`` are strings in OpenAI's schemas (required ones for files),
    so an empty page has ``""`` for both, never null.
    """

    object: Literal["list"] = "list"
    data: list[ItemT]
    first_id: str
    last_id: str
    has_more: bool

    @classmethod
    def of(cls, items: list[ItemT], has_more: bool) -> Self:
        """The page holding ``items``, in the order given."""
        return cls(
            data=items,
            first_id=items[0].id if items else "",  # type: ignore[attr-defined]
            last_id=items[-1].id if items else "",  # type: ignore[attr-defined]
            has_more=has_more,
        )


class ErrorDetail(BaseModel):
    """What went wrong: ``type`` and ``code`` are machine-readable, ``param`` names the field at fault."""

    model_config = ConfigDict(json_schema_extra={"required": ["message", "type", "param", "code"]})

    message: str
    type: str
    param: str | None
    code: str | None


class ErrorResponse(BaseModel):
    """Every non-2xx answer: ``{"error": {"message", "type", "param", "code"}}``."""

    error: ErrorDetail
