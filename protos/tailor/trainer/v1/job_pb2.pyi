from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class JobStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    JOB_STATUS_UNSPECIFIED: _ClassVar[JobStatus]
    JOB_STATUS_VALIDATING_FILES: _ClassVar[JobStatus]
    JOB_STATUS_QUEUED: _ClassVar[JobStatus]
    JOB_STATUS_RUNNING: _ClassVar[JobStatus]
    JOB_STATUS_SUCCEEDED: _ClassVar[JobStatus]
    JOB_STATUS_FAILED: _ClassVar[JobStatus]
    JOB_STATUS_CANCELLED: _ClassVar[JobStatus]
    JOB_STATUS_PAUSED: _ClassVar[JobStatus]

class MethodType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    METHOD_TYPE_UNSPECIFIED: _ClassVar[MethodType]
    METHOD_TYPE_SUPERVISED: _ClassVar[MethodType]
    METHOD_TYPE_DPO: _ClassVar[MethodType]

class EventLevel(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    EVENT_LEVEL_UNSPECIFIED: _ClassVar[EventLevel]
    EVENT_LEVEL_INFO: _ClassVar[EventLevel]
    EVENT_LEVEL_WARN: _ClassVar[EventLevel]
    EVENT_LEVEL_ERROR: _ClassVar[EventLevel]

class EventType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    EVENT_TYPE_UNSPECIFIED: _ClassVar[EventType]
    EVENT_TYPE_MESSAGE: _ClassVar[EventType]
    EVENT_TYPE_METRICS: _ClassVar[EventType]
JOB_STATUS_UNSPECIFIED: JobStatus
JOB_STATUS_VALIDATING_FILES: JobStatus
JOB_STATUS_QUEUED: JobStatus
JOB_STATUS_RUNNING: JobStatus
JOB_STATUS_SUCCEEDED: JobStatus
JOB_STATUS_FAILED: JobStatus
JOB_STATUS_CANCELLED: JobStatus
JOB_STATUS_PAUSED: JobStatus
METHOD_TYPE_UNSPECIFIED: MethodType
METHOD_TYPE_SUPERVISED: MethodType
METHOD_TYPE_DPO: MethodType
EVENT_LEVEL_UNSPECIFIED: EventLevel
EVENT_LEVEL_INFO: EventLevel
EVENT_LEVEL_WARN: EventLevel
EVENT_LEVEL_ERROR: EventLevel
EVENT_TYPE_UNSPECIFIED: EventType
EVENT_TYPE_MESSAGE: EventType
EVENT_TYPE_METRICS: EventType

class Hyperparameters(_message.Message):
    __slots__ = ("n_epochs", "batch_size", "learning_rate_multiplier", "beta", "lora_rank", "lora_alpha", "lora_dropout", "lora_target_modules")
    N_EPOCHS_FIELD_NUMBER: _ClassVar[int]
    BATCH_SIZE_FIELD_NUMBER: _ClassVar[int]
    LEARNING_RATE_MULTIPLIER_FIELD_NUMBER: _ClassVar[int]
    BETA_FIELD_NUMBER: _ClassVar[int]
    LORA_RANK_FIELD_NUMBER: _ClassVar[int]
    LORA_ALPHA_FIELD_NUMBER: _ClassVar[int]
    LORA_DROPOUT_FIELD_NUMBER: _ClassVar[int]
    LORA_TARGET_MODULES_FIELD_NUMBER: _ClassVar[int]
    n_epochs: int
    batch_size: int
    learning_rate_multiplier: float
    beta: float
    lora_rank: int
    lora_alpha: float
    lora_dropout: float
    lora_target_modules: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, n_epochs: _Optional[int] = ..., batch_size: _Optional[int] = ..., learning_rate_multiplier: _Optional[float] = ..., beta: _Optional[float] = ..., lora_rank: _Optional[int] = ..., lora_alpha: _Optional[float] = ..., lora_dropout: _Optional[float] = ..., lora_target_modules: _Optional[_Iterable[str]] = ...) -> None: ...

class Method(_message.Message):
    __slots__ = ("type", "hyperparameters")
    TYPE_FIELD_NUMBER: _ClassVar[int]
    HYPERPARAMETERS_FIELD_NUMBER: _ClassVar[int]
    type: MethodType
    hyperparameters: Hyperparameters
    def __init__(self, type: _Optional[_Union[MethodType, str]] = ..., hyperparameters: _Optional[_Union[Hyperparameters, _Mapping]] = ...) -> None: ...

class JobError(_message.Message):
    __slots__ = ("code", "message", "param")
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    PARAM_FIELD_NUMBER: _ClassVar[int]
    code: str
    message: str
    param: str
    def __init__(self, code: _Optional[str] = ..., message: _Optional[str] = ..., param: _Optional[str] = ...) -> None: ...

class Job(_message.Message):
    __slots__ = ("id", "organization_id", "model", "base_model", "training_file", "validation_file", "method", "status", "fine_tuned_model", "created_at", "finished_at", "estimated_finish", "trained_tokens", "error", "result_files", "seed", "suffix", "metadata", "integrations")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ID_FIELD_NUMBER: _ClassVar[int]
    ORGANIZATION_ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    BASE_MODEL_FIELD_NUMBER: _ClassVar[int]
    TRAINING_FILE_FIELD_NUMBER: _ClassVar[int]
    VALIDATION_FILE_FIELD_NUMBER: _ClassVar[int]
    METHOD_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    FINE_TUNED_MODEL_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    FINISHED_AT_FIELD_NUMBER: _ClassVar[int]
    ESTIMATED_FINISH_FIELD_NUMBER: _ClassVar[int]
    TRAINED_TOKENS_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    RESULT_FILES_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    SUFFIX_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    INTEGRATIONS_FIELD_NUMBER: _ClassVar[int]
    id: str
    organization_id: str
    model: str
    base_model: str
    training_file: str
    validation_file: str
    method: Method
    status: JobStatus
    fine_tuned_model: str
    created_at: int
    finished_at: int
    estimated_finish: int
    trained_tokens: int
    error: JobError
    result_files: _containers.RepeatedScalarFieldContainer[str]
    seed: int
    suffix: str
    metadata: _containers.ScalarMap[str, str]
    integrations: _containers.RepeatedCompositeFieldContainer[Integration]
    def __init__(self, id: _Optional[str] = ..., organization_id: _Optional[str] = ..., model: _Optional[str] = ..., base_model: _Optional[str] = ..., training_file: _Optional[str] = ..., validation_file: _Optional[str] = ..., method: _Optional[_Union[Method, _Mapping]] = ..., status: _Optional[_Union[JobStatus, str]] = ..., fine_tuned_model: _Optional[str] = ..., created_at: _Optional[int] = ..., finished_at: _Optional[int] = ..., estimated_finish: _Optional[int] = ..., trained_tokens: _Optional[int] = ..., error: _Optional[_Union[JobError, _Mapping]] = ..., result_files: _Optional[_Iterable[str]] = ..., seed: _Optional[int] = ..., suffix: _Optional[str] = ..., metadata: _Optional[_Mapping[str, str]] = ..., integrations: _Optional[_Iterable[_Union[Integration, _Mapping]]] = ...) -> None: ...

class Integration(_message.Message):
    __slots__ = ("type", "wandb", "mlflow")
    TYPE_FIELD_NUMBER: _ClassVar[int]
    WANDB_FIELD_NUMBER: _ClassVar[int]
    MLFLOW_FIELD_NUMBER: _ClassVar[int]
    type: str
    wandb: WandbIntegration
    mlflow: MlflowIntegration
    def __init__(self, type: _Optional[str] = ..., wandb: _Optional[_Union[WandbIntegration, _Mapping]] = ..., mlflow: _Optional[_Union[MlflowIntegration, _Mapping]] = ...) -> None: ...

class WandbIntegration(_message.Message):
    __slots__ = ("project", "entity", "name", "tags")
    PROJECT_FIELD_NUMBER: _ClassVar[int]
    ENTITY_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    project: str
    entity: str
    name: str
    tags: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, project: _Optional[str] = ..., entity: _Optional[str] = ..., name: _Optional[str] = ..., tags: _Optional[_Iterable[str]] = ...) -> None: ...

class MlflowIntegration(_message.Message):
    __slots__ = ("tracking_uri", "experiment_name", "run_name")
    TRACKING_URI_FIELD_NUMBER: _ClassVar[int]
    EXPERIMENT_NAME_FIELD_NUMBER: _ClassVar[int]
    RUN_NAME_FIELD_NUMBER: _ClassVar[int]
    tracking_uri: str
    experiment_name: str
    run_name: str
    def __init__(self, tracking_uri: _Optional[str] = ..., experiment_name: _Optional[str] = ..., run_name: _Optional[str] = ...) -> None: ...

class Metrics(_message.Message):
    __slots__ = ("step", "total_steps", "train_loss", "train_mean_token_accuracy", "valid_loss", "valid_mean_token_accuracy", "full_valid_loss", "full_valid_mean_token_accuracy", "epoch")
    STEP_FIELD_NUMBER: _ClassVar[int]
    TOTAL_STEPS_FIELD_NUMBER: _ClassVar[int]
    TRAIN_LOSS_FIELD_NUMBER: _ClassVar[int]
    TRAIN_MEAN_TOKEN_ACCURACY_FIELD_NUMBER: _ClassVar[int]
    VALID_LOSS_FIELD_NUMBER: _ClassVar[int]
    VALID_MEAN_TOKEN_ACCURACY_FIELD_NUMBER: _ClassVar[int]
    FULL_VALID_LOSS_FIELD_NUMBER: _ClassVar[int]
    FULL_VALID_MEAN_TOKEN_ACCURACY_FIELD_NUMBER: _ClassVar[int]
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    step: int
    total_steps: int
    train_loss: float
    train_mean_token_accuracy: float
    valid_loss: float
    valid_mean_token_accuracy: float
    full_valid_loss: float
    full_valid_mean_token_accuracy: float
    epoch: int
    def __init__(self, step: _Optional[int] = ..., total_steps: _Optional[int] = ..., train_loss: _Optional[float] = ..., train_mean_token_accuracy: _Optional[float] = ..., valid_loss: _Optional[float] = ..., valid_mean_token_accuracy: _Optional[float] = ..., full_valid_loss: _Optional[float] = ..., full_valid_mean_token_accuracy: _Optional[float] = ..., epoch: _Optional[int] = ...) -> None: ...

class JobEvent(_message.Message):
    __slots__ = ("id", "job_id", "created_at", "level", "message", "type", "metrics")
    ID_FIELD_NUMBER: _ClassVar[int]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    LEVEL_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    METRICS_FIELD_NUMBER: _ClassVar[int]
    id: str
    job_id: str
    created_at: int
    level: EventLevel
    message: str
    type: EventType
    metrics: Metrics
    def __init__(self, id: _Optional[str] = ..., job_id: _Optional[str] = ..., created_at: _Optional[int] = ..., level: _Optional[_Union[EventLevel, str]] = ..., message: _Optional[str] = ..., type: _Optional[_Union[EventType, str]] = ..., metrics: _Optional[_Union[Metrics, _Mapping]] = ...) -> None: ...

class Checkpoint(_message.Message):
    __slots__ = ("id", "job_id", "created_at", "fine_tuned_model_checkpoint", "step_number", "metrics")
    ID_FIELD_NUMBER: _ClassVar[int]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    FINE_TUNED_MODEL_CHECKPOINT_FIELD_NUMBER: _ClassVar[int]
    STEP_NUMBER_FIELD_NUMBER: _ClassVar[int]
    METRICS_FIELD_NUMBER: _ClassVar[int]
    id: str
    job_id: str
    created_at: int
    fine_tuned_model_checkpoint: str
    step_number: int
    metrics: Metrics
    def __init__(self, id: _Optional[str] = ..., job_id: _Optional[str] = ..., created_at: _Optional[int] = ..., fine_tuned_model_checkpoint: _Optional[str] = ..., step_number: _Optional[int] = ..., metrics: _Optional[_Union[Metrics, _Mapping]] = ...) -> None: ...
