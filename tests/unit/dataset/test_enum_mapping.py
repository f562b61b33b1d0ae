"""The API's enums and the OpenAI strings the records hold map one to one, both ways."""

from __future__ import annotations

from enum import StrEnum

import pytest
from google.protobuf.internal.enum_type_wrapper import EnumTypeWrapper

from services.common.training_format import ExampleFormat
from services.dataset.records import FilePurpose, FileStatus
from services.dataset.server import FORMATS, PURPOSES, STATUSES, purpose_from_pb
from tailor.dataset.v1 import dataset_service_pb2 as pb


@pytest.mark.parametrize(
    ("domain", "mapping", "api"),
    [
        (FilePurpose, PURPOSES, pb.FilePurpose),
        (FileStatus, STATUSES, pb.FileStatus),
        (ExampleFormat, FORMATS, pb.ExampleFormat),
    ],
)
def test_every_api_value_but_unspecified_has_exactly_one_domain_value(
    domain: type[StrEnum], mapping: dict[StrEnum, int], api: EnumTypeWrapper
) -> None:
    specified = {value for value in api.values() if value != 0}
    assert sorted(mapping.values()) == sorted(specified)
    assert set(mapping) == set(domain)


def test_purposes_are_openais_strings() -> None:
    assert PURPOSES[FilePurpose("fine-tune")] == pb.FILE_PURPOSE_FINE_TUNE
    assert PURPOSES[FilePurpose("fine-tune-results")] == pb.FILE_PURPOSE_FINE_TUNE_RESULTS
    assert purpose_from_pb(pb.FILE_PURPOSE_BATCH_OUTPUT) == "batch_output"
    assert purpose_from_pb(pb.FILE_PURPOSE_UNSPECIFIED) is None
    assert purpose_from_pb(99) is None  # a value from a newer client
