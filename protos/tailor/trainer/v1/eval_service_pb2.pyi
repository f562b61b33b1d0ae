from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class EvalRunStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    EVAL_RUN_STATUS_UNSPECIFIED: _ClassVar[EvalRunStatus]
    EVAL_RUN_STATUS_QUEUED: _ClassVar[EvalRunStatus]
    EVAL_RUN_STATUS_IN_PROGRESS: _ClassVar[EvalRunStatus]
    EVAL_RUN_STATUS_COMPLETED: _ClassVar[EvalRunStatus]
    EVAL_RUN_STATUS_FAILED: _ClassVar[EvalRunStatus]
    EVAL_RUN_STATUS_CANCELED: _ClassVar[EvalRunStatus]
EVAL_RUN_STATUS_UNSPECIFIED: EvalRunStatus
EVAL_RUN_STATUS_QUEUED: EvalRunStatus
EVAL_RUN_STATUS_IN_PROGRESS: EvalRunStatus
EVAL_RUN_STATUS_COMPLETED: EvalRunStatus
EVAL_RUN_STATUS_FAILED: EvalRunStatus
EVAL_RUN_STATUS_CANCELED: EvalRunStatus

class StringCheckGrader(_message.Message):
    __slots__ = ("input", "reference", "operation")
    INPUT_FIELD_NUMBER: _ClassVar[int]
    REFERENCE_FIELD_NUMBER: _ClassVar[int]
    OPERATION_FIELD_NUMBER: _ClassVar[int]
    input: str
    reference: str
    operation: str
    def __init__(self, input: _Optional[str] = ..., reference: _Optional[str] = ..., operation: _Optional[str] = ...) -> None: ...

class TextSimilarityGrader(_message.Message):
    __slots__ = ("input", "reference", "evaluation_metric", "pass_threshold")
    INPUT_FIELD_NUMBER: _ClassVar[int]
    REFERENCE_FIELD_NUMBER: _ClassVar[int]
    EVALUATION_METRIC_FIELD_NUMBER: _ClassVar[int]
    PASS_THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    input: str
    reference: str
    evaluation_metric: str
    pass_threshold: float
    def __init__(self, input: _Optional[str] = ..., reference: _Optional[str] = ..., evaluation_metric: _Optional[str] = ..., pass_threshold: _Optional[float] = ...) -> None: ...

class TestingCriterion(_message.Message):
    __slots__ = ("name", "string_check", "text_similarity")
    NAME_FIELD_NUMBER: _ClassVar[int]
    STRING_CHECK_FIELD_NUMBER: _ClassVar[int]
    TEXT_SIMILARITY_FIELD_NUMBER: _ClassVar[int]
    name: str
    string_check: StringCheckGrader
    text_similarity: TextSimilarityGrader
    def __init__(self, name: _Optional[str] = ..., string_check: _Optional[_Union[StringCheckGrader, _Mapping]] = ..., text_similarity: _Optional[_Union[TextSimilarityGrader, _Mapping]] = ...) -> None: ...

class Eval(_message.Message):
    __slots__ = ("id", "name", "created_at", "metadata", "item_schema_json", "include_sample_schema", "testing_criteria")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    ITEM_SCHEMA_JSON_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_SAMPLE_SCHEMA_FIELD_NUMBER: _ClassVar[int]
    TESTING_CRITERIA_FIELD_NUMBER: _ClassVar[int]
    id: str
    name: str
    created_at: int
    metadata: _containers.ScalarMap[str, str]
    item_schema_json: str
    include_sample_schema: bool
    testing_criteria: _containers.RepeatedCompositeFieldContainer[TestingCriterion]
    def __init__(self, id: _Optional[str] = ..., name: _Optional[str] = ..., created_at: _Optional[int] = ..., metadata: _Optional[_Mapping[str, str]] = ..., item_schema_json: _Optional[str] = ..., include_sample_schema: _Optional[bool] = ..., testing_criteria: _Optional[_Iterable[_Union[TestingCriterion, _Mapping]]] = ...) -> None: ...

class MessageTemplate(_message.Message):
    __slots__ = ("role", "content")
    ROLE_FIELD_NUMBER: _ClassVar[int]
    CONTENT_FIELD_NUMBER: _ClassVar[int]
    role: str
    content: str
    def __init__(self, role: _Optional[str] = ..., content: _Optional[str] = ...) -> None: ...

class EvalSamplingParams(_message.Message):
    __slots__ = ("temperature", "top_p", "max_completion_tokens", "seed")
    TEMPERATURE_FIELD_NUMBER: _ClassVar[int]
    TOP_P_FIELD_NUMBER: _ClassVar[int]
    MAX_COMPLETION_TOKENS_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    temperature: float
    top_p: float
    max_completion_tokens: int
    seed: int
    def __init__(self, temperature: _Optional[float] = ..., top_p: _Optional[float] = ..., max_completion_tokens: _Optional[int] = ..., seed: _Optional[int] = ...) -> None: ...

class EvalResultCounts(_message.Message):
    __slots__ = ("total", "errored", "failed", "passed")
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    ERRORED_FIELD_NUMBER: _ClassVar[int]
    FAILED_FIELD_NUMBER: _ClassVar[int]
    PASSED_FIELD_NUMBER: _ClassVar[int]
    total: int
    errored: int
    failed: int
    passed: int
    def __init__(self, total: _Optional[int] = ..., errored: _Optional[int] = ..., failed: _Optional[int] = ..., passed: _Optional[int] = ...) -> None: ...

class CriterionResult(_message.Message):
    __slots__ = ("testing_criteria", "passed", "failed")
    TESTING_CRITERIA_FIELD_NUMBER: _ClassVar[int]
    PASSED_FIELD_NUMBER: _ClassVar[int]
    FAILED_FIELD_NUMBER: _ClassVar[int]
    testing_criteria: str
    passed: int
    failed: int
    def __init__(self, testing_criteria: _Optional[str] = ..., passed: _Optional[int] = ..., failed: _Optional[int] = ...) -> None: ...

class EvalModelUsage(_message.Message):
    __slots__ = ("model_name", "invocation_count", "prompt_tokens", "completion_tokens", "total_tokens", "cached_tokens")
    MODEL_NAME_FIELD_NUMBER: _ClassVar[int]
    INVOCATION_COUNT_FIELD_NUMBER: _ClassVar[int]
    PROMPT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    COMPLETION_TOKENS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_TOKENS_FIELD_NUMBER: _ClassVar[int]
    CACHED_TOKENS_FIELD_NUMBER: _ClassVar[int]
    model_name: str
    invocation_count: int
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    cached_tokens: int
    def __init__(self, model_name: _Optional[str] = ..., invocation_count: _Optional[int] = ..., prompt_tokens: _Optional[int] = ..., completion_tokens: _Optional[int] = ..., total_tokens: _Optional[int] = ..., cached_tokens: _Optional[int] = ...) -> None: ...

class EvalRun(_message.Message):
    __slots__ = ("id", "eval_id", "name", "created_at", "metadata", "model", "status", "input_messages", "item_reference", "sampling_params", "source_file_id", "result_counts", "per_testing_criteria_results", "per_model_usage", "error_code", "error_message")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ID_FIELD_NUMBER: _ClassVar[int]
    EVAL_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    INPUT_MESSAGES_FIELD_NUMBER: _ClassVar[int]
    ITEM_REFERENCE_FIELD_NUMBER: _ClassVar[int]
    SAMPLING_PARAMS_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FILE_ID_FIELD_NUMBER: _ClassVar[int]
    RESULT_COUNTS_FIELD_NUMBER: _ClassVar[int]
    PER_TESTING_CRITERIA_RESULTS_FIELD_NUMBER: _ClassVar[int]
    PER_MODEL_USAGE_FIELD_NUMBER: _ClassVar[int]
    ERROR_CODE_FIELD_NUMBER: _ClassVar[int]
    ERROR_MESSAGE_FIELD_NUMBER: _ClassVar[int]
    id: str
    eval_id: str
    name: str
    created_at: int
    metadata: _containers.ScalarMap[str, str]
    model: str
    status: EvalRunStatus
    input_messages: _containers.RepeatedCompositeFieldContainer[MessageTemplate]
    item_reference: str
    sampling_params: EvalSamplingParams
    source_file_id: str
    result_counts: EvalResultCounts
    per_testing_criteria_results: _containers.RepeatedCompositeFieldContainer[CriterionResult]
    per_model_usage: _containers.RepeatedCompositeFieldContainer[EvalModelUsage]
    error_code: str
    error_message: str
    def __init__(self, id: _Optional[str] = ..., eval_id: _Optional[str] = ..., name: _Optional[str] = ..., created_at: _Optional[int] = ..., metadata: _Optional[_Mapping[str, str]] = ..., model: _Optional[str] = ..., status: _Optional[_Union[EvalRunStatus, str]] = ..., input_messages: _Optional[_Iterable[_Union[MessageTemplate, _Mapping]]] = ..., item_reference: _Optional[str] = ..., sampling_params: _Optional[_Union[EvalSamplingParams, _Mapping]] = ..., source_file_id: _Optional[str] = ..., result_counts: _Optional[_Union[EvalResultCounts, _Mapping]] = ..., per_testing_criteria_results: _Optional[_Iterable[_Union[CriterionResult, _Mapping]]] = ..., per_model_usage: _Optional[_Iterable[_Union[EvalModelUsage, _Mapping]]] = ..., error_code: _Optional[str] = ..., error_message: _Optional[str] = ...) -> None: ...

class EvalMessage(_message.Message):
    __slots__ = ("role", "content")
    ROLE_FIELD_NUMBER: _ClassVar[int]
    CONTENT_FIELD_NUMBER: _ClassVar[int]
    role: str
    content: str
    def __init__(self, role: _Optional[str] = ..., content: _Optional[str] = ...) -> None: ...

class EvalSample(_message.Message):
    __slots__ = ("input", "output", "finish_reason", "model", "prompt_tokens", "completion_tokens", "error_code", "error_message")
    INPUT_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_FIELD_NUMBER: _ClassVar[int]
    FINISH_REASON_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    PROMPT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    COMPLETION_TOKENS_FIELD_NUMBER: _ClassVar[int]
    ERROR_CODE_FIELD_NUMBER: _ClassVar[int]
    ERROR_MESSAGE_FIELD_NUMBER: _ClassVar[int]
    input: _containers.RepeatedCompositeFieldContainer[EvalMessage]
    output: _containers.RepeatedCompositeFieldContainer[EvalMessage]
    finish_reason: str
    model: str
    prompt_tokens: int
    completion_tokens: int
    error_code: str
    error_message: str
    def __init__(self, input: _Optional[_Iterable[_Union[EvalMessage, _Mapping]]] = ..., output: _Optional[_Iterable[_Union[EvalMessage, _Mapping]]] = ..., finish_reason: _Optional[str] = ..., model: _Optional[str] = ..., prompt_tokens: _Optional[int] = ..., completion_tokens: _Optional[int] = ..., error_code: _Optional[str] = ..., error_message: _Optional[str] = ...) -> None: ...

class EvalGrade(_message.Message):
    __slots__ = ("name", "type", "score", "passed")
    NAME_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    PASSED_FIELD_NUMBER: _ClassVar[int]
    name: str
    type: str
    score: float
    passed: bool
    def __init__(self, name: _Optional[str] = ..., type: _Optional[str] = ..., score: _Optional[float] = ..., passed: _Optional[bool] = ...) -> None: ...

class EvalRunOutputItem(_message.Message):
    __slots__ = ("id", "eval_id", "run_id", "created_at", "datasource_item_id", "datasource_item_json", "status", "sample", "results")
    ID_FIELD_NUMBER: _ClassVar[int]
    EVAL_ID_FIELD_NUMBER: _ClassVar[int]
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    DATASOURCE_ITEM_ID_FIELD_NUMBER: _ClassVar[int]
    DATASOURCE_ITEM_JSON_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    SAMPLE_FIELD_NUMBER: _ClassVar[int]
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    id: str
    eval_id: str
    run_id: str
    created_at: int
    datasource_item_id: int
    datasource_item_json: str
    status: str
    sample: EvalSample
    results: _containers.RepeatedCompositeFieldContainer[EvalGrade]
    def __init__(self, id: _Optional[str] = ..., eval_id: _Optional[str] = ..., run_id: _Optional[str] = ..., created_at: _Optional[int] = ..., datasource_item_id: _Optional[int] = ..., datasource_item_json: _Optional[str] = ..., status: _Optional[str] = ..., sample: _Optional[_Union[EvalSample, _Mapping]] = ..., results: _Optional[_Iterable[_Union[EvalGrade, _Mapping]]] = ...) -> None: ...

class CreateEvalRequest(_message.Message):
    __slots__ = ("name", "metadata", "item_schema_json", "include_sample_schema", "testing_criteria")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    ITEM_SCHEMA_JSON_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_SAMPLE_SCHEMA_FIELD_NUMBER: _ClassVar[int]
    TESTING_CRITERIA_FIELD_NUMBER: _ClassVar[int]
    name: str
    metadata: _containers.ScalarMap[str, str]
    item_schema_json: str
    include_sample_schema: bool
    testing_criteria: _containers.RepeatedCompositeFieldContainer[TestingCriterion]
    def __init__(self, name: _Optional[str] = ..., metadata: _Optional[_Mapping[str, str]] = ..., item_schema_json: _Optional[str] = ..., include_sample_schema: _Optional[bool] = ..., testing_criteria: _Optional[_Iterable[_Union[TestingCriterion, _Mapping]]] = ...) -> None: ...

class CreateEvalResponse(_message.Message):
    __slots__ = ("eval",)
    EVAL_FIELD_NUMBER: _ClassVar[int]
    eval: Eval
    def __init__(self, eval: _Optional[_Union[Eval, _Mapping]] = ...) -> None: ...

class GetEvalRequest(_message.Message):
    __slots__ = ("eval_id",)
    EVAL_ID_FIELD_NUMBER: _ClassVar[int]
    eval_id: str
    def __init__(self, eval_id: _Optional[str] = ...) -> None: ...

class GetEvalResponse(_message.Message):
    __slots__ = ("eval",)
    EVAL_FIELD_NUMBER: _ClassVar[int]
    eval: Eval
    def __init__(self, eval: _Optional[_Union[Eval, _Mapping]] = ...) -> None: ...

class ListEvalsRequest(_message.Message):
    __slots__ = ("limit", "after", "ascending")
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    AFTER_FIELD_NUMBER: _ClassVar[int]
    ASCENDING_FIELD_NUMBER: _ClassVar[int]
    limit: int
    after: str
    ascending: bool
    def __init__(self, limit: _Optional[int] = ..., after: _Optional[str] = ..., ascending: _Optional[bool] = ...) -> None: ...

class ListEvalsResponse(_message.Message):
    __slots__ = ("evals", "has_more")
    EVALS_FIELD_NUMBER: _ClassVar[int]
    HAS_MORE_FIELD_NUMBER: _ClassVar[int]
    evals: _containers.RepeatedCompositeFieldContainer[Eval]
    has_more: bool
    def __init__(self, evals: _Optional[_Iterable[_Union[Eval, _Mapping]]] = ..., has_more: _Optional[bool] = ...) -> None: ...

class UpdateEvalRequest(_message.Message):
    __slots__ = ("eval_id", "name", "metadata", "set_metadata")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    EVAL_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    SET_METADATA_FIELD_NUMBER: _ClassVar[int]
    eval_id: str
    name: str
    metadata: _containers.ScalarMap[str, str]
    set_metadata: bool
    def __init__(self, eval_id: _Optional[str] = ..., name: _Optional[str] = ..., metadata: _Optional[_Mapping[str, str]] = ..., set_metadata: _Optional[bool] = ...) -> None: ...

class UpdateEvalResponse(_message.Message):
    __slots__ = ("eval",)
    EVAL_FIELD_NUMBER: _ClassVar[int]
    eval: Eval
    def __init__(self, eval: _Optional[_Union[Eval, _Mapping]] = ...) -> None: ...

class DeleteEvalRequest(_message.Message):
    __slots__ = ("eval_id",)
    EVAL_ID_FIELD_NUMBER: _ClassVar[int]
    eval_id: str
    def __init__(self, eval_id: _Optional[str] = ...) -> None: ...

class DeleteEvalResponse(_message.Message):
    __slots__ = ("eval_id",)
    EVAL_ID_FIELD_NUMBER: _ClassVar[int]
    eval_id: str
    def __init__(self, eval_id: _Optional[str] = ...) -> None: ...

class CreateEvalRunRequest(_message.Message):
    __slots__ = ("eval_id", "name", "metadata", "model", "input_messages", "item_reference", "sampling_params", "file_id", "content")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    EVAL_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    INPUT_MESSAGES_FIELD_NUMBER: _ClassVar[int]
    ITEM_REFERENCE_FIELD_NUMBER: _ClassVar[int]
    SAMPLING_PARAMS_FIELD_NUMBER: _ClassVar[int]
    FILE_ID_FIELD_NUMBER: _ClassVar[int]
    CONTENT_FIELD_NUMBER: _ClassVar[int]
    eval_id: str
    name: str
    metadata: _containers.ScalarMap[str, str]
    model: str
    input_messages: _containers.RepeatedCompositeFieldContainer[MessageTemplate]
    item_reference: str
    sampling_params: EvalSamplingParams
    file_id: str
    content: InlineItems
    def __init__(self, eval_id: _Optional[str] = ..., name: _Optional[str] = ..., metadata: _Optional[_Mapping[str, str]] = ..., model: _Optional[str] = ..., input_messages: _Optional[_Iterable[_Union[MessageTemplate, _Mapping]]] = ..., item_reference: _Optional[str] = ..., sampling_params: _Optional[_Union[EvalSamplingParams, _Mapping]] = ..., file_id: _Optional[str] = ..., content: _Optional[_Union[InlineItems, _Mapping]] = ...) -> None: ...

class InlineItems(_message.Message):
    __slots__ = ("rows_json",)
    ROWS_JSON_FIELD_NUMBER: _ClassVar[int]
    rows_json: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, rows_json: _Optional[_Iterable[str]] = ...) -> None: ...

class CreateEvalRunResponse(_message.Message):
    __slots__ = ("run",)
    RUN_FIELD_NUMBER: _ClassVar[int]
    run: EvalRun
    def __init__(self, run: _Optional[_Union[EvalRun, _Mapping]] = ...) -> None: ...

class GetEvalRunRequest(_message.Message):
    __slots__ = ("eval_id", "run_id")
    EVAL_ID_FIELD_NUMBER: _ClassVar[int]
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    eval_id: str
    run_id: str
    def __init__(self, eval_id: _Optional[str] = ..., run_id: _Optional[str] = ...) -> None: ...

class GetEvalRunResponse(_message.Message):
    __slots__ = ("run",)
    RUN_FIELD_NUMBER: _ClassVar[int]
    run: EvalRun
    def __init__(self, run: _Optional[_Union[EvalRun, _Mapping]] = ...) -> None: ...

class ListEvalRunsRequest(_message.Message):
    __slots__ = ("eval_id", "limit", "after", "ascending", "status")
    EVAL_ID_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    AFTER_FIELD_NUMBER: _ClassVar[int]
    ASCENDING_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    eval_id: str
    limit: int
    after: str
    ascending: bool
    status: EvalRunStatus
    def __init__(self, eval_id: _Optional[str] = ..., limit: _Optional[int] = ..., after: _Optional[str] = ..., ascending: _Optional[bool] = ..., status: _Optional[_Union[EvalRunStatus, str]] = ...) -> None: ...

class ListEvalRunsResponse(_message.Message):
    __slots__ = ("runs", "has_more")
    RUNS_FIELD_NUMBER: _ClassVar[int]
    HAS_MORE_FIELD_NUMBER: _ClassVar[int]
    runs: _containers.RepeatedCompositeFieldContainer[EvalRun]
    has_more: bool
    def __init__(self, runs: _Optional[_Iterable[_Union[EvalRun, _Mapping]]] = ..., has_more: _Optional[bool] = ...) -> None: ...

class CancelEvalRunRequest(_message.Message):
    __slots__ = ("eval_id", "run_id")
    EVAL_ID_FIELD_NUMBER: _ClassVar[int]
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    eval_id: str
    run_id: str
    def __init__(self, eval_id: _Optional[str] = ..., run_id: _Optional[str] = ...) -> None: ...

class CancelEvalRunResponse(_message.Message):
    __slots__ = ("run",)
    RUN_FIELD_NUMBER: _ClassVar[int]
    run: EvalRun
    def __init__(self, run: _Optional[_Union[EvalRun, _Mapping]] = ...) -> None: ...

class DeleteEvalRunRequest(_message.Message):
    __slots__ = ("eval_id", "run_id")
    EVAL_ID_FIELD_NUMBER: _ClassVar[int]
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    eval_id: str
    run_id: str
    def __init__(self, eval_id: _Optional[str] = ..., run_id: _Optional[str] = ...) -> None: ...

class DeleteEvalRunResponse(_message.Message):
    __slots__ = ("run_id",)
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    def __init__(self, run_id: _Optional[str] = ...) -> None: ...

class ListEvalRunOutputItemsRequest(_message.Message):
    __slots__ = ("eval_id", "run_id", "limit", "after", "ascending", "status")
    EVAL_ID_FIELD_NUMBER: _ClassVar[int]
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    AFTER_FIELD_NUMBER: _ClassVar[int]
    ASCENDING_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    eval_id: str
    run_id: str
    limit: int
    after: str
    ascending: bool
    status: str
    def __init__(self, eval_id: _Optional[str] = ..., run_id: _Optional[str] = ..., limit: _Optional[int] = ..., after: _Optional[str] = ..., ascending: _Optional[bool] = ..., status: _Optional[str] = ...) -> None: ...

class ListEvalRunOutputItemsResponse(_message.Message):
    __slots__ = ("output_items", "has_more")
    OUTPUT_ITEMS_FIELD_NUMBER: _ClassVar[int]
    HAS_MORE_FIELD_NUMBER: _ClassVar[int]
    output_items: _containers.RepeatedCompositeFieldContainer[EvalRunOutputItem]
    has_more: bool
    def __init__(self, output_items: _Optional[_Iterable[_Union[EvalRunOutputItem, _Mapping]]] = ..., has_more: _Optional[bool] = ...) -> None: ...

class GetEvalRunOutputItemRequest(_message.Message):
    __slots__ = ("eval_id", "run_id", "output_item_id")
    EVAL_ID_FIELD_NUMBER: _ClassVar[int]
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_ITEM_ID_FIELD_NUMBER: _ClassVar[int]
    eval_id: str
    run_id: str
    output_item_id: str
    def __init__(self, eval_id: _Optional[str] = ..., run_id: _Optional[str] = ..., output_item_id: _Optional[str] = ...) -> None: ...

class GetEvalRunOutputItemResponse(_message.Message):
    __slots__ = ("output_item",)
    OUTPUT_ITEM_FIELD_NUMBER: _ClassVar[int]
    output_item: EvalRunOutputItem
    def __init__(self, output_item: _Optional[_Union[EvalRunOutputItem, _Mapping]] = ...) -> None: ...

class ClaimEvalSamplesRequest(_message.Message):
    __slots__ = ("sampler", "max_items", "lease_s")
    SAMPLER_FIELD_NUMBER: _ClassVar[int]
    MAX_ITEMS_FIELD_NUMBER: _ClassVar[int]
    LEASE_S_FIELD_NUMBER: _ClassVar[int]
    sampler: str
    max_items: int
    lease_s: int
    def __init__(self, sampler: _Optional[str] = ..., max_items: _Optional[int] = ..., lease_s: _Optional[int] = ...) -> None: ...

class EvalSampleTask(_message.Message):
    __slots__ = ("item_index", "messages")
    ITEM_INDEX_FIELD_NUMBER: _ClassVar[int]
    MESSAGES_FIELD_NUMBER: _ClassVar[int]
    item_index: int
    messages: _containers.RepeatedCompositeFieldContainer[EvalMessage]
    def __init__(self, item_index: _Optional[int] = ..., messages: _Optional[_Iterable[_Union[EvalMessage, _Mapping]]] = ...) -> None: ...

class ClaimEvalSamplesResponse(_message.Message):
    __slots__ = ("run_id", "eval_id", "organization_id", "model", "sampling_params", "tasks")
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    EVAL_ID_FIELD_NUMBER: _ClassVar[int]
    ORGANIZATION_ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    SAMPLING_PARAMS_FIELD_NUMBER: _ClassVar[int]
    TASKS_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    eval_id: str
    organization_id: str
    model: str
    sampling_params: EvalSamplingParams
    tasks: _containers.RepeatedCompositeFieldContainer[EvalSampleTask]
    def __init__(self, run_id: _Optional[str] = ..., eval_id: _Optional[str] = ..., organization_id: _Optional[str] = ..., model: _Optional[str] = ..., sampling_params: _Optional[_Union[EvalSamplingParams, _Mapping]] = ..., tasks: _Optional[_Iterable[_Union[EvalSampleTask, _Mapping]]] = ...) -> None: ...

class SampledItem(_message.Message):
    __slots__ = ("item_index", "sample")
    ITEM_INDEX_FIELD_NUMBER: _ClassVar[int]
    SAMPLE_FIELD_NUMBER: _ClassVar[int]
    item_index: int
    sample: EvalSample
    def __init__(self, item_index: _Optional[int] = ..., sample: _Optional[_Union[EvalSample, _Mapping]] = ...) -> None: ...

class RecordEvalSamplesRequest(_message.Message):
    __slots__ = ("run_id", "items")
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    items: _containers.RepeatedCompositeFieldContainer[SampledItem]
    def __init__(self, run_id: _Optional[str] = ..., items: _Optional[_Iterable[_Union[SampledItem, _Mapping]]] = ...) -> None: ...

class RecordEvalSamplesResponse(_message.Message):
    __slots__ = ("run_cancelled",)
    RUN_CANCELLED_FIELD_NUMBER: _ClassVar[int]
    run_cancelled: bool
    def __init__(self, run_cancelled: _Optional[bool] = ...) -> None: ...
