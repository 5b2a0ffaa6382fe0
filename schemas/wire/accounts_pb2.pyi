from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Empty(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class SignUpMode(_message.Message):
    __slots__ = ("mode",)
    MODE_FIELD_NUMBER: _ClassVar[int]
    mode: str
    def __init__(self, mode: _Optional[str] = ...) -> None: ...

class SignUpRequest(_message.Message):
    __slots__ = ("email", "password", "invite_code")
    EMAIL_FIELD_NUMBER: _ClassVar[int]
    PASSWORD_FIELD_NUMBER: _ClassVar[int]
    INVITE_CODE_FIELD_NUMBER: _ClassVar[int]
    email: str
    password: str
    invite_code: str
    def __init__(self, email: _Optional[str] = ..., password: _Optional[str] = ..., invite_code: _Optional[str] = ...) -> None: ...

class User(_message.Message):
    __slots__ = ("user_id", "email")
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    EMAIL_FIELD_NUMBER: _ClassVar[int]
    user_id: str
    email: str
    def __init__(self, user_id: _Optional[str] = ..., email: _Optional[str] = ...) -> None: ...

class LoginRequest(_message.Message):
    __slots__ = ("email", "password")
    EMAIL_FIELD_NUMBER: _ClassVar[int]
    PASSWORD_FIELD_NUMBER: _ClassVar[int]
    email: str
    password: str
    def __init__(self, email: _Optional[str] = ..., password: _Optional[str] = ...) -> None: ...

class Token(_message.Message):
    __slots__ = ("token", "expires_at", "user_id")
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    token: str
    expires_at: int
    user_id: str
    def __init__(self, token: _Optional[str] = ..., expires_at: _Optional[int] = ..., user_id: _Optional[str] = ...) -> None: ...

class ChangePasswordRequest(_message.Message):
    __slots__ = ("old_password", "new_password")
    OLD_PASSWORD_FIELD_NUMBER: _ClassVar[int]
    NEW_PASSWORD_FIELD_NUMBER: _ClassVar[int]
    old_password: str
    new_password: str
    def __init__(self, old_password: _Optional[str] = ..., new_password: _Optional[str] = ...) -> None: ...

class DeleteAccountRequest(_message.Message):
    __slots__ = ("password",)
    PASSWORD_FIELD_NUMBER: _ClassVar[int]
    password: str
    def __init__(self, password: _Optional[str] = ...) -> None: ...

class DeleteDataRequest(_message.Message):
    __slots__ = ("kind", "device_id", "period_start", "period_end")
    KIND_FIELD_NUMBER: _ClassVar[int]
    DEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    PERIOD_START_FIELD_NUMBER: _ClassVar[int]
    PERIOD_END_FIELD_NUMBER: _ClassVar[int]
    kind: str
    device_id: str
    period_start: int
    period_end: int
    def __init__(self, kind: _Optional[str] = ..., device_id: _Optional[str] = ..., period_start: _Optional[int] = ..., period_end: _Optional[int] = ...) -> None: ...

class DeletionReport(_message.Message):
    __slots__ = ("deletion_id", "removed", "seconds", "summary")
    class RemovedEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    DELETION_ID_FIELD_NUMBER: _ClassVar[int]
    REMOVED_FIELD_NUMBER: _ClassVar[int]
    SECONDS_FIELD_NUMBER: _ClassVar[int]
    SUMMARY_FIELD_NUMBER: _ClassVar[int]
    deletion_id: str
    removed: _containers.ScalarMap[str, int]
    seconds: float
    summary: str
    def __init__(self, deletion_id: _Optional[str] = ..., removed: _Optional[_Mapping[str, int]] = ..., seconds: _Optional[float] = ..., summary: _Optional[str] = ...) -> None: ...

class DeviceInfo(_message.Message):
    __slots__ = ("name", "os", "os_version")
    NAME_FIELD_NUMBER: _ClassVar[int]
    OS_FIELD_NUMBER: _ClassVar[int]
    OS_VERSION_FIELD_NUMBER: _ClassVar[int]
    name: str
    os: str
    os_version: str
    def __init__(self, name: _Optional[str] = ..., os: _Optional[str] = ..., os_version: _Optional[str] = ...) -> None: ...

class EnrollRequest(_message.Message):
    __slots__ = ("email", "password", "enrollment_code", "csr_pem", "device")
    EMAIL_FIELD_NUMBER: _ClassVar[int]
    PASSWORD_FIELD_NUMBER: _ClassVar[int]
    ENROLLMENT_CODE_FIELD_NUMBER: _ClassVar[int]
    CSR_PEM_FIELD_NUMBER: _ClassVar[int]
    DEVICE_FIELD_NUMBER: _ClassVar[int]
    email: str
    password: str
    enrollment_code: str
    csr_pem: bytes
    device: DeviceInfo
    def __init__(self, email: _Optional[str] = ..., password: _Optional[str] = ..., enrollment_code: _Optional[str] = ..., csr_pem: _Optional[bytes] = ..., device: _Optional[_Union[DeviceInfo, _Mapping]] = ...) -> None: ...

class Certificate(_message.Message):
    __slots__ = ("device_id", "user_id", "certificate_pem", "ca_chain_pem", "not_after")
    DEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    CERTIFICATE_PEM_FIELD_NUMBER: _ClassVar[int]
    CA_CHAIN_PEM_FIELD_NUMBER: _ClassVar[int]
    NOT_AFTER_FIELD_NUMBER: _ClassVar[int]
    device_id: str
    user_id: str
    certificate_pem: bytes
    ca_chain_pem: bytes
    not_after: int
    def __init__(self, device_id: _Optional[str] = ..., user_id: _Optional[str] = ..., certificate_pem: _Optional[bytes] = ..., ca_chain_pem: _Optional[bytes] = ..., not_after: _Optional[int] = ...) -> None: ...

class RenewRequest(_message.Message):
    __slots__ = ("csr_pem",)
    CSR_PEM_FIELD_NUMBER: _ClassVar[int]
    csr_pem: bytes
    def __init__(self, csr_pem: _Optional[bytes] = ...) -> None: ...

class EnrollmentCode(_message.Message):
    __slots__ = ("code", "expires_at")
    CODE_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    code: str
    expires_at: int
    def __init__(self, code: _Optional[str] = ..., expires_at: _Optional[int] = ...) -> None: ...

class Device(_message.Message):
    __slots__ = ("device_id", "name", "os", "os_version", "created_at", "certificate_not_after", "revoked")
    DEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    OS_FIELD_NUMBER: _ClassVar[int]
    OS_VERSION_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    CERTIFICATE_NOT_AFTER_FIELD_NUMBER: _ClassVar[int]
    REVOKED_FIELD_NUMBER: _ClassVar[int]
    device_id: str
    name: str
    os: str
    os_version: str
    created_at: int
    certificate_not_after: int
    revoked: bool
    def __init__(self, device_id: _Optional[str] = ..., name: _Optional[str] = ..., os: _Optional[str] = ..., os_version: _Optional[str] = ..., created_at: _Optional[int] = ..., certificate_not_after: _Optional[int] = ..., revoked: _Optional[bool] = ...) -> None: ...

class DeviceList(_message.Message):
    __slots__ = ("devices",)
    DEVICES_FIELD_NUMBER: _ClassVar[int]
    devices: _containers.RepeatedCompositeFieldContainer[Device]
    def __init__(self, devices: _Optional[_Iterable[_Union[Device, _Mapping]]] = ...) -> None: ...

class RenameRequest(_message.Message):
    __slots__ = ("device_id", "name")
    DEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    device_id: str
    name: str
    def __init__(self, device_id: _Optional[str] = ..., name: _Optional[str] = ...) -> None: ...

class DeviceRef(_message.Message):
    __slots__ = ("device_id",)
    DEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    device_id: str
    def __init__(self, device_id: _Optional[str] = ...) -> None: ...

class ShareLinkRequest(_message.Message):
    __slots__ = ("view", "period_start", "period_end", "tz", "ttl_seconds")
    VIEW_FIELD_NUMBER: _ClassVar[int]
    PERIOD_START_FIELD_NUMBER: _ClassVar[int]
    PERIOD_END_FIELD_NUMBER: _ClassVar[int]
    TZ_FIELD_NUMBER: _ClassVar[int]
    TTL_SECONDS_FIELD_NUMBER: _ClassVar[int]
    view: str
    period_start: int
    period_end: int
    tz: str
    ttl_seconds: int
    def __init__(self, view: _Optional[str] = ..., period_start: _Optional[int] = ..., period_end: _Optional[int] = ..., tz: _Optional[str] = ..., ttl_seconds: _Optional[int] = ...) -> None: ...

class ShareLink(_message.Message):
    __slots__ = ("link_id", "user_id", "view", "period_start", "period_end", "tz", "created_at", "expires_at", "revoked")
    LINK_ID_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    VIEW_FIELD_NUMBER: _ClassVar[int]
    PERIOD_START_FIELD_NUMBER: _ClassVar[int]
    PERIOD_END_FIELD_NUMBER: _ClassVar[int]
    TZ_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    REVOKED_FIELD_NUMBER: _ClassVar[int]
    link_id: str
    user_id: str
    view: str
    period_start: int
    period_end: int
    tz: str
    created_at: int
    expires_at: int
    revoked: bool
    def __init__(self, link_id: _Optional[str] = ..., user_id: _Optional[str] = ..., view: _Optional[str] = ..., period_start: _Optional[int] = ..., period_end: _Optional[int] = ..., tz: _Optional[str] = ..., created_at: _Optional[int] = ..., expires_at: _Optional[int] = ..., revoked: _Optional[bool] = ...) -> None: ...

class ShareLinkToken(_message.Message):
    __slots__ = ("token", "link")
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    LINK_FIELD_NUMBER: _ClassVar[int]
    token: str
    link: ShareLink
    def __init__(self, token: _Optional[str] = ..., link: _Optional[_Union[ShareLink, _Mapping]] = ...) -> None: ...

class ShareLinkList(_message.Message):
    __slots__ = ("links",)
    LINKS_FIELD_NUMBER: _ClassVar[int]
    links: _containers.RepeatedCompositeFieldContainer[ShareLink]
    def __init__(self, links: _Optional[_Iterable[_Union[ShareLink, _Mapping]]] = ...) -> None: ...

class ShareLinkRef(_message.Message):
    __slots__ = ("link_id",)
    LINK_ID_FIELD_NUMBER: _ClassVar[int]
    link_id: str
    def __init__(self, link_id: _Optional[str] = ...) -> None: ...

class CategoryRule(_message.Message):
    __slots__ = ("rule_id", "field", "pattern", "category", "position")
    RULE_ID_FIELD_NUMBER: _ClassVar[int]
    FIELD_FIELD_NUMBER: _ClassVar[int]
    PATTERN_FIELD_NUMBER: _ClassVar[int]
    CATEGORY_FIELD_NUMBER: _ClassVar[int]
    POSITION_FIELD_NUMBER: _ClassVar[int]
    rule_id: str
    field: str
    pattern: str
    category: str
    position: int
    def __init__(self, rule_id: _Optional[str] = ..., field: _Optional[str] = ..., pattern: _Optional[str] = ..., category: _Optional[str] = ..., position: _Optional[int] = ...) -> None: ...

class CategoryRuleRef(_message.Message):
    __slots__ = ("rule_id",)
    RULE_ID_FIELD_NUMBER: _ClassVar[int]
    rule_id: str
    def __init__(self, rule_id: _Optional[str] = ...) -> None: ...

class Goal(_message.Message):
    __slots__ = ("kind", "target", "direction", "period", "minutes", "weekdays", "devices")
    KIND_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    DIRECTION_FIELD_NUMBER: _ClassVar[int]
    PERIOD_FIELD_NUMBER: _ClassVar[int]
    MINUTES_FIELD_NUMBER: _ClassVar[int]
    WEEKDAYS_FIELD_NUMBER: _ClassVar[int]
    DEVICES_FIELD_NUMBER: _ClassVar[int]
    kind: str
    target: str
    direction: str
    period: str
    minutes: int
    weekdays: _containers.RepeatedScalarFieldContainer[int]
    devices: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, kind: _Optional[str] = ..., target: _Optional[str] = ..., direction: _Optional[str] = ..., period: _Optional[str] = ..., minutes: _Optional[int] = ..., weekdays: _Optional[_Iterable[int]] = ..., devices: _Optional[_Iterable[str]] = ...) -> None: ...

class GoalRef(_message.Message):
    __slots__ = ("goal_id",)
    GOAL_ID_FIELD_NUMBER: _ClassVar[int]
    goal_id: str
    def __init__(self, goal_id: _Optional[str] = ...) -> None: ...

class GoalNoticeSwitch(_message.Message):
    __slots__ = ("goal_id", "channel", "enabled")
    GOAL_ID_FIELD_NUMBER: _ClassVar[int]
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    ENABLED_FIELD_NUMBER: _ClassVar[int]
    goal_id: str
    channel: str
    enabled: bool
    def __init__(self, goal_id: _Optional[str] = ..., channel: _Optional[str] = ..., enabled: _Optional[bool] = ...) -> None: ...

class NoticePause(_message.Message):
    __slots__ = ("paused", "tz")
    PAUSED_FIELD_NUMBER: _ClassVar[int]
    TZ_FIELD_NUMBER: _ClassVar[int]
    paused: bool
    tz: str
    def __init__(self, paused: _Optional[bool] = ..., tz: _Optional[str] = ...) -> None: ...

class WeeklySummarySwitch(_message.Message):
    __slots__ = ("enabled", "tz")
    ENABLED_FIELD_NUMBER: _ClassVar[int]
    TZ_FIELD_NUMBER: _ClassVar[int]
    enabled: bool
    tz: str
    def __init__(self, enabled: _Optional[bool] = ..., tz: _Optional[str] = ...) -> None: ...

class DeviceNotice(_message.Message):
    __slots__ = ("notice_id", "summary", "body")
    NOTICE_ID_FIELD_NUMBER: _ClassVar[int]
    SUMMARY_FIELD_NUMBER: _ClassVar[int]
    BODY_FIELD_NUMBER: _ClassVar[int]
    notice_id: str
    summary: str
    body: str
    def __init__(self, notice_id: _Optional[str] = ..., summary: _Optional[str] = ..., body: _Optional[str] = ...) -> None: ...

class NoticeList(_message.Message):
    __slots__ = ("notices",)
    NOTICES_FIELD_NUMBER: _ClassVar[int]
    notices: _containers.RepeatedCompositeFieldContainer[DeviceNotice]
    def __init__(self, notices: _Optional[_Iterable[_Union[DeviceNotice, _Mapping]]] = ...) -> None: ...

class PrivacyRule(_message.Message):
    __slots__ = ("rule_id", "on", "pattern", "action")
    RULE_ID_FIELD_NUMBER: _ClassVar[int]
    ON_FIELD_NUMBER: _ClassVar[int]
    PATTERN_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    rule_id: str
    on: str
    pattern: str
    action: str
    def __init__(self, rule_id: _Optional[str] = ..., on: _Optional[str] = ..., pattern: _Optional[str] = ..., action: _Optional[str] = ...) -> None: ...

class PrivacyRuleRef(_message.Message):
    __slots__ = ("rule_id",)
    RULE_ID_FIELD_NUMBER: _ClassVar[int]
    rule_id: str
    def __init__(self, rule_id: _Optional[str] = ...) -> None: ...

class RuleEffect(_message.Message):
    __slots__ = ("intervals", "active_seconds", "devices", "seconds")
    INTERVALS_FIELD_NUMBER: _ClassVar[int]
    ACTIVE_SECONDS_FIELD_NUMBER: _ClassVar[int]
    DEVICES_FIELD_NUMBER: _ClassVar[int]
    SECONDS_FIELD_NUMBER: _ClassVar[int]
    intervals: int
    active_seconds: int
    devices: int
    seconds: float
    def __init__(self, intervals: _Optional[int] = ..., active_seconds: _Optional[int] = ..., devices: _Optional[int] = ..., seconds: _Optional[float] = ...) -> None: ...

class TitleModeRequest(_message.Message):
    __slots__ = ("mode",)
    MODE_FIELD_NUMBER: _ClassVar[int]
    mode: str
    def __init__(self, mode: _Optional[str] = ...) -> None: ...

class Privacy(_message.Message):
    __slots__ = ("title_mode", "rules")
    TITLE_MODE_FIELD_NUMBER: _ClassVar[int]
    RULES_FIELD_NUMBER: _ClassVar[int]
    title_mode: str
    rules: _containers.RepeatedCompositeFieldContainer[PrivacyRule]
    def __init__(self, title_mode: _Optional[str] = ..., rules: _Optional[_Iterable[_Union[PrivacyRule, _Mapping]]] = ...) -> None: ...
