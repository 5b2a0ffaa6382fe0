from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Batch(_message.Message):
    __slots__ = ("batch_id", "intervals")
    BATCH_ID_FIELD_NUMBER: _ClassVar[int]
    INTERVALS_FIELD_NUMBER: _ClassVar[int]
    batch_id: int
    intervals: _containers.RepeatedScalarFieldContainer[bytes]
    def __init__(self, batch_id: _Optional[int] = ..., intervals: _Optional[_Iterable[bytes]] = ...) -> None: ...

class RecordError(_message.Message):
    __slots__ = ("index", "reason")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    index: int
    reason: str
    def __init__(self, index: _Optional[int] = ..., reason: _Optional[str] = ...) -> None: ...

class BatchAck(_message.Message):
    __slots__ = ("batch_id", "accepted", "errors")
    BATCH_ID_FIELD_NUMBER: _ClassVar[int]
    ACCEPTED_FIELD_NUMBER: _ClassVar[int]
    ERRORS_FIELD_NUMBER: _ClassVar[int]
    batch_id: int
    accepted: int
    errors: _containers.RepeatedCompositeFieldContainer[RecordError]
    def __init__(self, batch_id: _Optional[int] = ..., accepted: _Optional[int] = ..., errors: _Optional[_Iterable[_Union[RecordError, _Mapping]]] = ...) -> None: ...

class ImportBatch(_message.Message):
    __slots__ = ("batch_id", "origin", "host", "source", "device_id", "intervals")
    BATCH_ID_FIELD_NUMBER: _ClassVar[int]
    ORIGIN_FIELD_NUMBER: _ClassVar[int]
    HOST_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    DEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    INTERVALS_FIELD_NUMBER: _ClassVar[int]
    batch_id: int
    origin: str
    host: str
    source: str
    device_id: str
    intervals: _containers.RepeatedScalarFieldContainer[bytes]
    def __init__(self, batch_id: _Optional[int] = ..., origin: _Optional[str] = ..., host: _Optional[str] = ..., source: _Optional[str] = ..., device_id: _Optional[str] = ..., intervals: _Optional[_Iterable[bytes]] = ...) -> None: ...

class ImportAck(_message.Message):
    __slots__ = ("batch_id", "accepted", "already_imported", "overlapped", "errors", "stream_id")
    BATCH_ID_FIELD_NUMBER: _ClassVar[int]
    ACCEPTED_FIELD_NUMBER: _ClassVar[int]
    ALREADY_IMPORTED_FIELD_NUMBER: _ClassVar[int]
    OVERLAPPED_FIELD_NUMBER: _ClassVar[int]
    ERRORS_FIELD_NUMBER: _ClassVar[int]
    STREAM_ID_FIELD_NUMBER: _ClassVar[int]
    batch_id: int
    accepted: int
    already_imported: int
    overlapped: int
    errors: _containers.RepeatedCompositeFieldContainer[RecordError]
    stream_id: str
    def __init__(self, batch_id: _Optional[int] = ..., accepted: _Optional[int] = ..., already_imported: _Optional[int] = ..., overlapped: _Optional[int] = ..., errors: _Optional[_Iterable[_Union[RecordError, _Mapping]]] = ..., stream_id: _Optional[str] = ...) -> None: ...
