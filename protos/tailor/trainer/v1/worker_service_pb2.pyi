from tailor.trainer.v1 import job_pb2 as _job_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class WorkerDirective(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    WORKER_DIRECTIVE_UNSPECIFIED: _ClassVar[WorkerDirective]
    WORKER_DIRECTIVE_CONTINUE: _ClassVar[WorkerDirective]
    WORKER_DIRECTIVE_CANCEL: _ClassVar[WorkerDirective]
    WORKER_DIRECTIVE_PAUSE: _ClassVar[WorkerDirective]
WORKER_DIRECTIVE_UNSPECIFIED: WorkerDirective
WORKER_DIRECTIVE_CONTINUE: WorkerDirective
WORKER_DIRECTIVE_CANCEL: WorkerDirective
WORKER_DIRECTIVE_PAUSE: WorkerDirective

class WorkerIdentity(_message.Message):
    __slots__ = ("job_id", "attempt_id")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_ID_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    attempt_id: str
    def __init__(self, job_id: _Optional[str] = ..., attempt_id: _Optional[str] = ...) -> None: ...

class TrainingPlan(_message.Message):
    __slots__ = ("job", "base_model", "base_model_source", "base_learning_rate", "max_seq_length", "output_prefix", "resume_from_uri", "initial_adapter_uri", "heartbeat_interval_s")
    JOB_FIELD_NUMBER: _ClassVar[int]
    BASE_MODEL_FIELD_NUMBER: _ClassVar[int]
    BASE_MODEL_SOURCE_FIELD_NUMBER: _ClassVar[int]
    BASE_LEARNING_RATE_FIELD_NUMBER: _ClassVar[int]
    MAX_SEQ_LENGTH_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_PREFIX_FIELD_NUMBER: _ClassVar[int]
    RESUME_FROM_URI_FIELD_NUMBER: _ClassVar[int]
    INITIAL_ADAPTER_URI_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_INTERVAL_S_FIELD_NUMBER: _ClassVar[int]
    job: _job_pb2.Job
    base_model: str
    base_model_source: str
    base_learning_rate: float
    max_seq_length: int
    output_prefix: str
    resume_from_uri: str
    initial_adapter_uri: str
    heartbeat_interval_s: int
    def __init__(self, job: _Optional[_Union[_job_pb2.Job, _Mapping]] = ..., base_model: _Optional[str] = ..., base_model_source: _Optional[str] = ..., base_learning_rate: _Optional[float] = ..., max_seq_length: _Optional[int] = ..., output_prefix: _Optional[str] = ..., resume_from_uri: _Optional[str] = ..., initial_adapter_uri: _Optional[str] = ..., heartbeat_interval_s: _Optional[int] = ...) -> None: ...

class ClaimJobRequest(_message.Message):
    __slots__ = ("worker",)
    WORKER_FIELD_NUMBER: _ClassVar[int]
    worker: WorkerIdentity
    def __init__(self, worker: _Optional[_Union[WorkerIdentity, _Mapping]] = ...) -> None: ...

class ClaimJobResponse(_message.Message):
    __slots__ = ("plan",)
    PLAN_FIELD_NUMBER: _ClassVar[int]
    plan: TrainingPlan
    def __init__(self, plan: _Optional[_Union[TrainingPlan, _Mapping]] = ...) -> None: ...

class ReportStartedRequest(_message.Message):
    __slots__ = ("worker", "resolved_method", "total_steps", "training_examples")
    WORKER_FIELD_NUMBER: _ClassVar[int]
    RESOLVED_METHOD_FIELD_NUMBER: _ClassVar[int]
    TOTAL_STEPS_FIELD_NUMBER: _ClassVar[int]
    TRAINING_EXAMPLES_FIELD_NUMBER: _ClassVar[int]
    worker: WorkerIdentity
    resolved_method: _job_pb2.Method
    total_steps: int
    training_examples: int
    def __init__(self, worker: _Optional[_Union[WorkerIdentity, _Mapping]] = ..., resolved_method: _Optional[_Union[_job_pb2.Method, _Mapping]] = ..., total_steps: _Optional[int] = ..., training_examples: _Optional[int] = ...) -> None: ...

class ReportStartedResponse(_message.Message):
    __slots__ = ("directive",)
    DIRECTIVE_FIELD_NUMBER: _ClassVar[int]
    directive: WorkerDirective
    def __init__(self, directive: _Optional[_Union[WorkerDirective, str]] = ...) -> None: ...

class WorkerEvent(_message.Message):
    __slots__ = ("level", "message", "type", "metrics")
    LEVEL_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    METRICS_FIELD_NUMBER: _ClassVar[int]
    level: _job_pb2.EventLevel
    message: str
    type: _job_pb2.EventType
    metrics: _job_pb2.Metrics
    def __init__(self, level: _Optional[_Union[_job_pb2.EventLevel, str]] = ..., message: _Optional[str] = ..., type: _Optional[_Union[_job_pb2.EventType, str]] = ..., metrics: _Optional[_Union[_job_pb2.Metrics, _Mapping]] = ...) -> None: ...

class ReportEventsRequest(_message.Message):
    __slots__ = ("worker", "events", "current_step")
    WORKER_FIELD_NUMBER: _ClassVar[int]
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    CURRENT_STEP_FIELD_NUMBER: _ClassVar[int]
    worker: WorkerIdentity
    events: _containers.RepeatedCompositeFieldContainer[WorkerEvent]
    current_step: int
    def __init__(self, worker: _Optional[_Union[WorkerIdentity, _Mapping]] = ..., events: _Optional[_Iterable[_Union[WorkerEvent, _Mapping]]] = ..., current_step: _Optional[int] = ...) -> None: ...

class ReportEventsResponse(_message.Message):
    __slots__ = ("directive",)
    DIRECTIVE_FIELD_NUMBER: _ClassVar[int]
    directive: WorkerDirective
    def __init__(self, directive: _Optional[_Union[WorkerDirective, str]] = ...) -> None: ...

class ReportCheckpointRequest(_message.Message):
    __slots__ = ("worker", "step_number", "epoch", "adapter_uri", "state_uri", "metrics", "lora_rank")
    WORKER_FIELD_NUMBER: _ClassVar[int]
    STEP_NUMBER_FIELD_NUMBER: _ClassVar[int]
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    ADAPTER_URI_FIELD_NUMBER: _ClassVar[int]
    STATE_URI_FIELD_NUMBER: _ClassVar[int]
    METRICS_FIELD_NUMBER: _ClassVar[int]
    LORA_RANK_FIELD_NUMBER: _ClassVar[int]
    worker: WorkerIdentity
    step_number: int
    epoch: int
    adapter_uri: str
    state_uri: str
    metrics: _job_pb2.Metrics
    lora_rank: int
    def __init__(self, worker: _Optional[_Union[WorkerIdentity, _Mapping]] = ..., step_number: _Optional[int] = ..., epoch: _Optional[int] = ..., adapter_uri: _Optional[str] = ..., state_uri: _Optional[str] = ..., metrics: _Optional[_Union[_job_pb2.Metrics, _Mapping]] = ..., lora_rank: _Optional[int] = ...) -> None: ...

class ReportCheckpointResponse(_message.Message):
    __slots__ = ("checkpoint", "directive")
    CHECKPOINT_FIELD_NUMBER: _ClassVar[int]
    DIRECTIVE_FIELD_NUMBER: _ClassVar[int]
    checkpoint: _job_pb2.Checkpoint
    directive: WorkerDirective
    def __init__(self, checkpoint: _Optional[_Union[_job_pb2.Checkpoint, _Mapping]] = ..., directive: _Optional[_Union[WorkerDirective, str]] = ...) -> None: ...

class ReportSucceededRequest(_message.Message):
    __slots__ = ("worker", "adapter_uri", "trained_tokens", "result_files", "lora_rank")
    WORKER_FIELD_NUMBER: _ClassVar[int]
    ADAPTER_URI_FIELD_NUMBER: _ClassVar[int]
    TRAINED_TOKENS_FIELD_NUMBER: _ClassVar[int]
    RESULT_FILES_FIELD_NUMBER: _ClassVar[int]
    LORA_RANK_FIELD_NUMBER: _ClassVar[int]
    worker: WorkerIdentity
    adapter_uri: str
    trained_tokens: int
    result_files: _containers.RepeatedScalarFieldContainer[str]
    lora_rank: int
    def __init__(self, worker: _Optional[_Union[WorkerIdentity, _Mapping]] = ..., adapter_uri: _Optional[str] = ..., trained_tokens: _Optional[int] = ..., result_files: _Optional[_Iterable[str]] = ..., lora_rank: _Optional[int] = ...) -> None: ...

class ReportSucceededResponse(_message.Message):
    __slots__ = ("job",)
    JOB_FIELD_NUMBER: _ClassVar[int]
    job: _job_pb2.Job
    def __init__(self, job: _Optional[_Union[_job_pb2.Job, _Mapping]] = ...) -> None: ...

class ReportFailedRequest(_message.Message):
    __slots__ = ("worker", "error", "retryable")
    WORKER_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    RETRYABLE_FIELD_NUMBER: _ClassVar[int]
    worker: WorkerIdentity
    error: _job_pb2.JobError
    retryable: bool
    def __init__(self, worker: _Optional[_Union[WorkerIdentity, _Mapping]] = ..., error: _Optional[_Union[_job_pb2.JobError, _Mapping]] = ..., retryable: _Optional[bool] = ...) -> None: ...

class ReportFailedResponse(_message.Message):
    __slots__ = ("job",)
    JOB_FIELD_NUMBER: _ClassVar[int]
    job: _job_pb2.Job
    def __init__(self, job: _Optional[_Union[_job_pb2.Job, _Mapping]] = ...) -> None: ...

class UploadCheckpointHeader(_message.Message):
    __slots__ = ("worker", "key")
    WORKER_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    worker: WorkerIdentity
    key: str
    def __init__(self, worker: _Optional[_Union[WorkerIdentity, _Mapping]] = ..., key: _Optional[str] = ...) -> None: ...

class UploadCheckpointRequest(_message.Message):
    __slots__ = ("header", "chunk")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    header: UploadCheckpointHeader
    chunk: bytes
    def __init__(self, header: _Optional[_Union[UploadCheckpointHeader, _Mapping]] = ..., chunk: _Optional[bytes] = ...) -> None: ...

class UploadCheckpointResponse(_message.Message):
    __slots__ = ("key", "bytes", "sha256")
    KEY_FIELD_NUMBER: _ClassVar[int]
    BYTES_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    key: str
    bytes: int
    sha256: str
    def __init__(self, key: _Optional[str] = ..., bytes: _Optional[int] = ..., sha256: _Optional[str] = ...) -> None: ...

class DownloadCheckpointRequest(_message.Message):
    __slots__ = ("worker", "prefix")
    WORKER_FIELD_NUMBER: _ClassVar[int]
    PREFIX_FIELD_NUMBER: _ClassVar[int]
    worker: WorkerIdentity
    prefix: str
    def __init__(self, worker: _Optional[_Union[WorkerIdentity, _Mapping]] = ..., prefix: _Optional[str] = ...) -> None: ...

class DownloadCheckpointResponse(_message.Message):
    __slots__ = ("path", "chunk")
    PATH_FIELD_NUMBER: _ClassVar[int]
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    path: str
    chunk: bytes
    def __init__(self, path: _Optional[str] = ..., chunk: _Optional[bytes] = ...) -> None: ...
