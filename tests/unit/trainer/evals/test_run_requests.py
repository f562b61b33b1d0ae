"""A run request's own fields: input templates or an item reference, and sampling parameters."""

from __future__ import annotations

import pytest

from services.common.errors import InvalidArgument
from services.trainer.evals.run_requests import check_input, check_sampling
from tailor.trainer.v1 import eval_service_pb2 as pb


def test_templates_and_item_references_are_taken() -> None:
    templates = [pb.MessageTemplate(role="user", content="{{ item.q }}")]
    assert check_input(pb.CreateEvalRunRequest(input_messages=templates)) == (
        [{"role": "user", "content": "{{ item.q }}"}],
        "",
    )
    assert check_input(pb.CreateEvalRunRequest(item_reference=" item.chat ")) == ([], "item.chat")


@pytest.mark.parametrize(
    ("request_fields", "param"),
    [
        ({}, "data_source.input_messages"),
        (
            {"input_messages": [pb.MessageTemplate(role="user")], "item_reference": "item.x"},
            "data_source.input_messages",
        ),
        ({"item_reference": "item..x"}, "data_source.input_messages.item_reference"),
        ({"item_reference": "sample.x"}, "data_source.input_messages.item_reference"),
        (
            {"input_messages": [pb.MessageTemplate(role="user", content="{{ oops }}")]},
            "data_source.input_messages.template[0].content",
        ),
        (
            {"input_messages": [pb.MessageTemplate(role="tool", content="hi")]},
            "data_source.input_messages.template[0].role",
        ),
    ],
)
def test_bad_input_names_its_field(request_fields: dict[str, object], param: str) -> None:
    with pytest.raises(InvalidArgument) as raised:
        check_input(pb.CreateEvalRunRequest(**request_fields))  # type: ignore[arg-type]
    assert raised.value.param == param


def test_sampling_parameters_keep_what_is_set_within_range() -> None:
    assert check_sampling(pb.EvalSamplingParams(temperature=0.0, seed=3)) == {"temperature": 0.0, "seed": 3}
    for fields, param in [
        ({"temperature": 2.5}, "temperature"),
        ({"top_p": 0.0}, "top_p"),
        ({"max_completion_tokens": 0}, "max_completion_tokens"),
    ]:
        with pytest.raises(InvalidArgument) as raised:
            check_sampling(pb.EvalSamplingParams(**fields))  # type: ignore[arg-type]
        assert raised.value.param == f"data_source.sampling_params.{param}"
