from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class FilePurpose(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    FILE_PURPOSE_UNSPECIFIED: _ClassVar[FilePurpose]
    FILE_PURPOSE_FINE_TUNE: _ClassVar[FilePurpose]
    FILE_PURPOSE_FINE_TUNE_RESULTS: _ClassVar[FilePurpose]
    FILE_PURPOSE_ASSISTANTS: _ClassVar[FilePurpose]
    FILE_PURPOSE_ASSISTANTS_OUTPUT: _ClassVar[FilePurpose]
    FILE_PURPOSE_BATCH: _ClassVar[FilePurpose]
    FILE_PURPOSE_BATCH_OUTPUT: _ClassVar[FilePurpose]
    FILE_PURPOSE_VISION: _ClassVar[FilePurpose]
    FILE_PURPOSE_USER_DATA: _ClassVar[FilePurpose]
    FILE_PURPOSE_EVALS: _ClassVar[FilePurpose]

class FileStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    FILE_STATUS_UNSPECIFIED: _ClassVar[FileStatus]
    FILE_STATUS_UPLOADED: _ClassVar[FileStatus]
    FILE_STATUS_PROCESSED: _ClassVar[FileStatus]
    FILE_STATUS_ERROR: _ClassVar[FileStatus]

class ExampleFormat(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    EXAMPLE_FORMAT_UNSPECIFIED: _ClassVar[ExampleFormat]
    EXAMPLE_FORMAT_CHAT: _ClassVar[ExampleFormat]
    EXAMPLE_FORMAT_PROMPT_COMPLETION: _ClassVar[ExampleFormat]
    EXAMPLE_FORMAT_PREFERENCE: _ClassVar[ExampleFormat]

class SortOrder(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SORT_ORDER_UNSPECIFIED: _ClassVar[SortOrder]
    SORT_ORDER_DESCENDING: _ClassVar[SortOrder]
    SORT_ORDER_ASCENDING: _ClassVar[SortOrder]
FILE_PURPOSE_UNSPECIFIED: FilePurpose
FILE_PURPOSE_FINE_TUNE: FilePurpose
FILE_PURPOSE_FINE_TUNE_RESULTS: FilePurpose
FILE_PURPOSE_ASSISTANTS: FilePurpose
FILE_PURPOSE_ASSISTANTS_OUTPUT: FilePurpose
FILE_PURPOSE_BATCH: FilePurpose
FILE_PURPOSE_BATCH_OUTPUT: FilePurpose
FILE_PURPOSE_VISION: FilePurpose
FILE_PURPOSE_USER_DATA: FilePurpose
FILE_PURPOSE_EVALS: FilePurpose
FILE_STATUS_UNSPECIFIED: FileStatus
FILE_STATUS_UPLOADED: FileStatus
FILE_STATUS_PROCESSED: FileStatus
FILE_STATUS_ERROR: FileStatus
EXAMPLE_FORMAT_UNSPECIFIED: ExampleFormat
EXAMPLE_FORMAT_CHAT: ExampleFormat
EXAMPLE_FORMAT_PROMPT_COMPLETION: ExampleFormat
EXAMPLE_FORMAT_PREFERENCE: ExampleFormat
SORT_ORDER_UNSPECIFIED: SortOrder
SORT_ORDER_DESCENDING: SortOrder
SORT_ORDER_ASCENDING: SortOrder

class File(_message.Message):
    __slots__ = ("id", "organization_id", "filename", "bytes", "purpose", "status", "status_details", "problems", "created_at", "expires_at", "sha256", "statistics")
    ID_FIELD_NUMBER: _ClassVar[int]
    ORGANIZATION_ID_FIELD_NUMBER: _ClassVar[int]
    FILENAME_FIELD_NUMBER: _ClassVar[int]
    BYTES_FIELD_NUMBER: _ClassVar[int]
    PURPOSE_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    STATUS_DETAILS_FIELD_NUMBER: _ClassVar[int]
    PROBLEMS_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    STATISTICS_FIELD_NUMBER: _ClassVar[int]
    id: str
    organization_id: str
    filename: str
    bytes: int
    purpose: FilePurpose
    status: FileStatus
    status_details: str
    problems: _containers.RepeatedCompositeFieldContainer[ValidationProblem]
    created_at: int
    expires_at: int
    sha256: str
    statistics: FileStatistics
    def __init__(self, id: _Optional[str] = ..., organization_id: _Optional[str] = ..., filename: _Optional[str] = ..., bytes: _Optional[int] = ..., purpose: _Optional[_Union[FilePurpose, str]] = ..., status: _Optional[_Union[FileStatus, str]] = ..., status_details: _Optional[str] = ..., problems: _Optional[_Iterable[_Union[ValidationProblem, _Mapping]]] = ..., created_at: _Optional[int] = ..., expires_at: _Optional[int] = ..., sha256: _Optional[str] = ..., statistics: _Optional[_Union[FileStatistics, _Mapping]] = ...) -> None: ...

class ValidationProblem(_message.Message):
    __slots__ = ("line", "code", "message")
    LINE_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    line: int
    code: str
    message: str
    def __init__(self, line: _Optional[int] = ..., code: _Optional[str] = ..., message: _Optional[str] = ...) -> None: ...

class FileStatistics(_message.Message):
    __slots__ = ("format", "examples", "messages", "characters", "trained_messages")
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    EXAMPLES_FIELD_NUMBER: _ClassVar[int]
    MESSAGES_FIELD_NUMBER: _ClassVar[int]
    CHARACTERS_FIELD_NUMBER: _ClassVar[int]
    TRAINED_MESSAGES_FIELD_NUMBER: _ClassVar[int]
    format: ExampleFormat
    examples: int
    messages: int
    characters: int
    trained_messages: int
    def __init__(self, format: _Optional[_Union[ExampleFormat, str]] = ..., examples: _Optional[int] = ..., messages: _Optional[int] = ..., characters: _Optional[int] = ..., trained_messages: _Optional[int] = ...) -> None: ...

class TokenStatistics(_message.Message):
    __slots__ = ("base_model", "total_tokens", "max_example_tokens", "examples_over_max_length")
    BASE_MODEL_FIELD_NUMBER: _ClassVar[int]
    TOTAL_TOKENS_FIELD_NUMBER: _ClassVar[int]
    MAX_EXAMPLE_TOKENS_FIELD_NUMBER: _ClassVar[int]
    EXAMPLES_OVER_MAX_LENGTH_FIELD_NUMBER: _ClassVar[int]
    base_model: str
    total_tokens: int
    max_example_tokens: int
    examples_over_max_length: int
    def __init__(self, base_model: _Optional[str] = ..., total_tokens: _Optional[int] = ..., max_example_tokens: _Optional[int] = ..., examples_over_max_length: _Optional[int] = ...) -> None: ...

class UploadFileMetadata(_message.Message):
    __slots__ = ("filename", "purpose", "expected_bytes", "expires_after_seconds")
    FILENAME_FIELD_NUMBER: _ClassVar[int]
    PURPOSE_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_BYTES_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AFTER_SECONDS_FIELD_NUMBER: _ClassVar[int]
    filename: str
    purpose: FilePurpose
    expected_bytes: int
    expires_after_seconds: int
    def __init__(self, filename: _Optional[str] = ..., purpose: _Optional[_Union[FilePurpose, str]] = ..., expected_bytes: _Optional[int] = ..., expires_after_seconds: _Optional[int] = ...) -> None: ...

class UploadFileRequest(_message.Message):
    __slots__ = ("metadata", "chunk", "end")
    METADATA_FIELD_NUMBER: _ClassVar[int]
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    END_FIELD_NUMBER: _ClassVar[int]
    metadata: UploadFileMetadata
    chunk: bytes
    end: UploadFileEnd
    def __init__(self, metadata: _Optional[_Union[UploadFileMetadata, _Mapping]] = ..., chunk: _Optional[bytes] = ..., end: _Optional[_Union[UploadFileEnd, _Mapping]] = ...) -> None: ...

class UploadFileEnd(_message.Message):
    __slots__ = ("sha256", "expires_after_seconds")
    SHA256_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AFTER_SECONDS_FIELD_NUMBER: _ClassVar[int]
    sha256: str
    expires_after_seconds: int
    def __init__(self, sha256: _Optional[str] = ..., expires_after_seconds: _Optional[int] = ...) -> None: ...

class UploadFileResponse(_message.Message):
    __slots__ = ("file",)
    FILE_FIELD_NUMBER: _ClassVar[int]
    file: File
    def __init__(self, file: _Optional[_Union[File, _Mapping]] = ...) -> None: ...

class GetFileRequest(_message.Message):
    __slots__ = ("file_id",)
    FILE_ID_FIELD_NUMBER: _ClassVar[int]
    file_id: str
    def __init__(self, file_id: _Optional[str] = ...) -> None: ...

class GetFileResponse(_message.Message):
    __slots__ = ("file",)
    FILE_FIELD_NUMBER: _ClassVar[int]
    file: File
    def __init__(self, file: _Optional[_Union[File, _Mapping]] = ...) -> None: ...

class ListFilesRequest(_message.Message):
    __slots__ = ("limit", "after", "purpose", "order")
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    AFTER_FIELD_NUMBER: _ClassVar[int]
    PURPOSE_FIELD_NUMBER: _ClassVar[int]
    ORDER_FIELD_NUMBER: _ClassVar[int]
    limit: int
    after: str
    purpose: FilePurpose
    order: SortOrder
    def __init__(self, limit: _Optional[int] = ..., after: _Optional[str] = ..., purpose: _Optional[_Union[FilePurpose, str]] = ..., order: _Optional[_Union[SortOrder, str]] = ...) -> None: ...

class ListFilesResponse(_message.Message):
    __slots__ = ("files", "has_more")
    FILES_FIELD_NUMBER: _ClassVar[int]
    HAS_MORE_FIELD_NUMBER: _ClassVar[int]
    files: _containers.RepeatedCompositeFieldContainer[File]
    has_more: bool
    def __init__(self, files: _Optional[_Iterable[_Union[File, _Mapping]]] = ..., has_more: _Optional[bool] = ...) -> None: ...

class DeleteFileRequest(_message.Message):
    __slots__ = ("file_id",)
    FILE_ID_FIELD_NUMBER: _ClassVar[int]
    file_id: str
    def __init__(self, file_id: _Optional[str] = ...) -> None: ...

class DeleteFileResponse(_message.Message):
    __slots__ = ("file_id", "deleted")
    FILE_ID_FIELD_NUMBER: _ClassVar[int]
    DELETED_FIELD_NUMBER: _ClassVar[int]
    file_id: str
    deleted: bool
    def __init__(self, file_id: _Optional[str] = ..., deleted: _Optional[bool] = ...) -> None: ...

class DownloadFileRequest(_message.Message):
    __slots__ = ("file_id", "offset", "length")
    FILE_ID_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    LENGTH_FIELD_NUMBER: _ClassVar[int]
    file_id: str
    offset: int
    length: int
    def __init__(self, file_id: _Optional[str] = ..., offset: _Optional[int] = ..., length: _Optional[int] = ...) -> None: ...

class DownloadFileResponse(_message.Message):
    __slots__ = ("file", "chunk")
    FILE_FIELD_NUMBER: _ClassVar[int]
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    file: File
    chunk: bytes
    def __init__(self, file: _Optional[_Union[File, _Mapping]] = ..., chunk: _Optional[bytes] = ...) -> None: ...

class GetFileStatisticsRequest(_message.Message):
    __slots__ = ("file_id", "base_model")
    FILE_ID_FIELD_NUMBER: _ClassVar[int]
    BASE_MODEL_FIELD_NUMBER: _ClassVar[int]
    file_id: str
    base_model: str
    def __init__(self, file_id: _Optional[str] = ..., base_model: _Optional[str] = ...) -> None: ...

class GetFileStatisticsResponse(_message.Message):
    __slots__ = ("statistics", "tokens")
    STATISTICS_FIELD_NUMBER: _ClassVar[int]
    TOKENS_FIELD_NUMBER: _ClassVar[int]
    statistics: FileStatistics
    tokens: TokenStatistics
    def __init__(self, statistics: _Optional[_Union[FileStatistics, _Mapping]] = ..., tokens: _Optional[_Union[TokenStatistics, _Mapping]] = ...) -> None: ...
