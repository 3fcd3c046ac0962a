import datetime

from google.protobuf import empty_pb2 as _empty_pb2
from google.protobuf import field_mask_pb2 as _field_mask_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from promo.v1 import profile_pb2 as _profile_pb2
from promo.v1 import promotion_pb2 as _promotion_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class CodeFilter(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CODE_FILTER_UNSPECIFIED: _ClassVar[CodeFilter]
    AVAILABLE: _ClassVar[CodeFilter]
    ATTACHED: _ClassVar[CodeFilter]
    REDEEMED: _ClassVar[CodeFilter]
    RETIRED: _ClassVar[CodeFilter]
    EXPIRED: _ClassVar[CodeFilter]
    INACTIVE: _ClassVar[CodeFilter]
CODE_FILTER_UNSPECIFIED: CodeFilter
AVAILABLE: CodeFilter
ATTACHED: CodeFilter
REDEEMED: CodeFilter
RETIRED: CodeFilter
EXPIRED: CodeFilter
INACTIVE: CodeFilter

class Code(_message.Message):
    __slots__ = ("code", "promotion", "active", "expire_time", "retired", "profile_id", "attachment_count", "redemption_count", "issued_for", "create_time")
    CODE_FIELD_NUMBER: _ClassVar[int]
    PROMOTION_FIELD_NUMBER: _ClassVar[int]
    ACTIVE_FIELD_NUMBER: _ClassVar[int]
    EXPIRE_TIME_FIELD_NUMBER: _ClassVar[int]
    RETIRED_FIELD_NUMBER: _ClassVar[int]
    PROFILE_ID_FIELD_NUMBER: _ClassVar[int]
    ATTACHMENT_COUNT_FIELD_NUMBER: _ClassVar[int]
    REDEMPTION_COUNT_FIELD_NUMBER: _ClassVar[int]
    ISSUED_FOR_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    code: str
    promotion: str
    active: bool
    expire_time: _timestamp_pb2.Timestamp
    retired: bool
    profile_id: str
    attachment_count: int
    redemption_count: int
    issued_for: str
    create_time: _timestamp_pb2.Timestamp
    def __init__(self, code: _Optional[str] = ..., promotion: _Optional[str] = ..., active: _Optional[bool] = ..., expire_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., retired: _Optional[bool] = ..., profile_id: _Optional[str] = ..., attachment_count: _Optional[int] = ..., redemption_count: _Optional[int] = ..., issued_for: _Optional[str] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class Attachment(_message.Message):
    __slots__ = ("code", "promotion", "profile_id", "attach_time")
    CODE_FIELD_NUMBER: _ClassVar[int]
    PROMOTION_FIELD_NUMBER: _ClassVar[int]
    PROFILE_ID_FIELD_NUMBER: _ClassVar[int]
    ATTACH_TIME_FIELD_NUMBER: _ClassVar[int]
    code: str
    promotion: str
    profile_id: str
    attach_time: _timestamp_pb2.Timestamp
    def __init__(self, code: _Optional[str] = ..., promotion: _Optional[str] = ..., profile_id: _Optional[str] = ..., attach_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class Cart(_message.Message):
    __slots__ = ("currency", "items")
    CURRENCY_FIELD_NUMBER: _ClassVar[int]
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    currency: str
    items: _containers.RepeatedCompositeFieldContainer[CartItem]
    def __init__(self, currency: _Optional[str] = ..., items: _Optional[_Iterable[_Union[CartItem, _Mapping]]] = ...) -> None: ...

class CartItem(_message.Message):
    __slots__ = ("sku", "quantity", "unit_price")
    SKU_FIELD_NUMBER: _ClassVar[int]
    QUANTITY_FIELD_NUMBER: _ClassVar[int]
    UNIT_PRICE_FIELD_NUMBER: _ClassVar[int]
    sku: str
    quantity: int
    unit_price: str
    def __init__(self, sku: _Optional[str] = ..., quantity: _Optional[int] = ..., unit_price: _Optional[str] = ...) -> None: ...

class Reward(_message.Message):
    __slots__ = ("cart_total", "discount_total", "final_total", "items", "bonus")
    CART_TOTAL_FIELD_NUMBER: _ClassVar[int]
    DISCOUNT_TOTAL_FIELD_NUMBER: _ClassVar[int]
    FINAL_TOTAL_FIELD_NUMBER: _ClassVar[int]
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    BONUS_FIELD_NUMBER: _ClassVar[int]
    cart_total: str
    discount_total: str
    final_total: str
    items: _containers.RepeatedCompositeFieldContainer[RewardItem]
    bonus: _containers.RepeatedCompositeFieldContainer[_promotion_pb2.BonusItem]
    def __init__(self, cart_total: _Optional[str] = ..., discount_total: _Optional[str] = ..., final_total: _Optional[str] = ..., items: _Optional[_Iterable[_Union[RewardItem, _Mapping]]] = ..., bonus: _Optional[_Iterable[_Union[_promotion_pb2.BonusItem, _Mapping]]] = ...) -> None: ...

class RewardItem(_message.Message):
    __slots__ = ("sku", "quantity", "unit_price", "discount", "final_price")
    SKU_FIELD_NUMBER: _ClassVar[int]
    QUANTITY_FIELD_NUMBER: _ClassVar[int]
    UNIT_PRICE_FIELD_NUMBER: _ClassVar[int]
    DISCOUNT_FIELD_NUMBER: _ClassVar[int]
    FINAL_PRICE_FIELD_NUMBER: _ClassVar[int]
    sku: str
    quantity: int
    unit_price: str
    discount: str
    final_price: str
    def __init__(self, sku: _Optional[str] = ..., quantity: _Optional[int] = ..., unit_price: _Optional[str] = ..., discount: _Optional[str] = ..., final_price: _Optional[str] = ...) -> None: ...

class Redemption(_message.Message):
    __slots__ = ("id", "code", "promotion", "profile_id", "reward", "state", "request_id", "create_time", "rollback_time", "rollback_reason")
    class State(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        REDEMPTION_STATE_UNSPECIFIED: _ClassVar[Redemption.State]
        REDEEMED: _ClassVar[Redemption.State]
        ROLLED_BACK: _ClassVar[Redemption.State]
    REDEMPTION_STATE_UNSPECIFIED: Redemption.State
    REDEEMED: Redemption.State
    ROLLED_BACK: Redemption.State
    ID_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    PROMOTION_FIELD_NUMBER: _ClassVar[int]
    PROFILE_ID_FIELD_NUMBER: _ClassVar[int]
    REWARD_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    ROLLBACK_TIME_FIELD_NUMBER: _ClassVar[int]
    ROLLBACK_REASON_FIELD_NUMBER: _ClassVar[int]
    id: str
    code: str
    promotion: str
    profile_id: str
    reward: Reward
    state: Redemption.State
    request_id: str
    create_time: _timestamp_pb2.Timestamp
    rollback_time: _timestamp_pb2.Timestamp
    rollback_reason: str
    def __init__(self, id: _Optional[str] = ..., code: _Optional[str] = ..., promotion: _Optional[str] = ..., profile_id: _Optional[str] = ..., reward: _Optional[_Union[Reward, _Mapping]] = ..., state: _Optional[_Union[Redemption.State, str]] = ..., request_id: _Optional[str] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., rollback_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., rollback_reason: _Optional[str] = ...) -> None: ...

class ImportCodesRequest(_message.Message):
    __slots__ = ("spec", "chunk")
    class Spec(_message.Message):
        __slots__ = ("promotion", "mode", "has_header", "skip_invalid", "default_expire_time")
        class Mode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
            __slots__ = ()
            MODE_UNSPECIFIED: _ClassVar[ImportCodesRequest.Spec.Mode]
            REPLACE: _ClassVar[ImportCodesRequest.Spec.Mode]
            APPEND: _ClassVar[ImportCodesRequest.Spec.Mode]
        MODE_UNSPECIFIED: ImportCodesRequest.Spec.Mode
        REPLACE: ImportCodesRequest.Spec.Mode
        APPEND: ImportCodesRequest.Spec.Mode
        PROMOTION_FIELD_NUMBER: _ClassVar[int]
        MODE_FIELD_NUMBER: _ClassVar[int]
        HAS_HEADER_FIELD_NUMBER: _ClassVar[int]
        SKIP_INVALID_FIELD_NUMBER: _ClassVar[int]
        DEFAULT_EXPIRE_TIME_FIELD_NUMBER: _ClassVar[int]
        promotion: str
        mode: ImportCodesRequest.Spec.Mode
        has_header: bool
        skip_invalid: bool
        default_expire_time: _timestamp_pb2.Timestamp
        def __init__(self, promotion: _Optional[str] = ..., mode: _Optional[_Union[ImportCodesRequest.Spec.Mode, str]] = ..., has_header: _Optional[bool] = ..., skip_invalid: _Optional[bool] = ..., default_expire_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...
    SPEC_FIELD_NUMBER: _ClassVar[int]
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    spec: ImportCodesRequest.Spec
    chunk: bytes
    def __init__(self, spec: _Optional[_Union[ImportCodesRequest.Spec, _Mapping]] = ..., chunk: _Optional[bytes] = ...) -> None: ...

class ImportError(_message.Message):
    __slots__ = ("line", "text", "reason")
    LINE_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    line: int
    text: str
    reason: str
    def __init__(self, line: _Optional[int] = ..., text: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class ImportCodesResponse(_message.Message):
    __slots__ = ("imported", "duplicates", "rejected", "retired", "errors")
    IMPORTED_FIELD_NUMBER: _ClassVar[int]
    DUPLICATES_FIELD_NUMBER: _ClassVar[int]
    REJECTED_FIELD_NUMBER: _ClassVar[int]
    RETIRED_FIELD_NUMBER: _ClassVar[int]
    ERRORS_FIELD_NUMBER: _ClassVar[int]
    imported: int
    duplicates: int
    rejected: int
    retired: int
    errors: _containers.RepeatedCompositeFieldContainer[ImportError]
    def __init__(self, imported: _Optional[int] = ..., duplicates: _Optional[int] = ..., rejected: _Optional[int] = ..., retired: _Optional[int] = ..., errors: _Optional[_Iterable[_Union[ImportError, _Mapping]]] = ...) -> None: ...

class GenerateCodesRequest(_message.Message):
    __slots__ = ("promotion", "count", "pattern", "expire_time")
    PROMOTION_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    PATTERN_FIELD_NUMBER: _ClassVar[int]
    EXPIRE_TIME_FIELD_NUMBER: _ClassVar[int]
    promotion: str
    count: int
    pattern: str
    expire_time: _timestamp_pb2.Timestamp
    def __init__(self, promotion: _Optional[str] = ..., count: _Optional[int] = ..., pattern: _Optional[str] = ..., expire_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class GenerateCodesResponse(_message.Message):
    __slots__ = ("generated",)
    GENERATED_FIELD_NUMBER: _ClassVar[int]
    generated: int
    def __init__(self, generated: _Optional[int] = ...) -> None: ...

class ExportCodesRequest(_message.Message):
    __slots__ = ("promotion", "filter")
    PROMOTION_FIELD_NUMBER: _ClassVar[int]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    promotion: str
    filter: CodeFilter
    def __init__(self, promotion: _Optional[str] = ..., filter: _Optional[_Union[CodeFilter, str]] = ...) -> None: ...

class ExportCodesResponse(_message.Message):
    __slots__ = ("chunk",)
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    chunk: bytes
    def __init__(self, chunk: _Optional[bytes] = ...) -> None: ...

class GetCodeRequest(_message.Message):
    __slots__ = ("code",)
    CODE_FIELD_NUMBER: _ClassVar[int]
    code: str
    def __init__(self, code: _Optional[str] = ...) -> None: ...

class ListCodesRequest(_message.Message):
    __slots__ = ("promotion", "profile", "filter", "page_size", "page_token")
    PROMOTION_FIELD_NUMBER: _ClassVar[int]
    PROFILE_FIELD_NUMBER: _ClassVar[int]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    promotion: str
    profile: _profile_pb2.ProfileRef
    filter: CodeFilter
    page_size: int
    page_token: str
    def __init__(self, promotion: _Optional[str] = ..., profile: _Optional[_Union[_profile_pb2.ProfileRef, _Mapping]] = ..., filter: _Optional[_Union[CodeFilter, str]] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListCodesResponse(_message.Message):
    __slots__ = ("codes", "next_page_token")
    CODES_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    codes: _containers.RepeatedCompositeFieldContainer[Code]
    next_page_token: str
    def __init__(self, codes: _Optional[_Iterable[_Union[Code, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class UpdateCodeRequest(_message.Message):
    __slots__ = ("code", "update_mask")
    CODE_FIELD_NUMBER: _ClassVar[int]
    UPDATE_MASK_FIELD_NUMBER: _ClassVar[int]
    code: Code
    update_mask: _field_mask_pb2.FieldMask
    def __init__(self, code: _Optional[_Union[Code, _Mapping]] = ..., update_mask: _Optional[_Union[_field_mask_pb2.FieldMask, _Mapping]] = ...) -> None: ...

class AttachCodeRequest(_message.Message):
    __slots__ = ("profile", "promotion", "code")
    PROFILE_FIELD_NUMBER: _ClassVar[int]
    PROMOTION_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    profile: _profile_pb2.ProfileRef
    promotion: str
    code: str
    def __init__(self, profile: _Optional[_Union[_profile_pb2.ProfileRef, _Mapping]] = ..., promotion: _Optional[str] = ..., code: _Optional[str] = ...) -> None: ...

class DetachCodeRequest(_message.Message):
    __slots__ = ("code", "profile")
    CODE_FIELD_NUMBER: _ClassVar[int]
    PROFILE_FIELD_NUMBER: _ClassVar[int]
    code: str
    profile: _profile_pb2.ProfileRef
    def __init__(self, code: _Optional[str] = ..., profile: _Optional[_Union[_profile_pb2.ProfileRef, _Mapping]] = ...) -> None: ...

class ValidateCodeRequest(_message.Message):
    __slots__ = ("code", "profile", "cart", "attributes", "applied_promotions")
    class AttributesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    CODE_FIELD_NUMBER: _ClassVar[int]
    PROFILE_FIELD_NUMBER: _ClassVar[int]
    CART_FIELD_NUMBER: _ClassVar[int]
    ATTRIBUTES_FIELD_NUMBER: _ClassVar[int]
    APPLIED_PROMOTIONS_FIELD_NUMBER: _ClassVar[int]
    code: str
    profile: _profile_pb2.ProfileRef
    cart: Cart
    attributes: _containers.ScalarMap[str, str]
    applied_promotions: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, code: _Optional[str] = ..., profile: _Optional[_Union[_profile_pb2.ProfileRef, _Mapping]] = ..., cart: _Optional[_Union[Cart, _Mapping]] = ..., attributes: _Optional[_Mapping[str, str]] = ..., applied_promotions: _Optional[_Iterable[str]] = ...) -> None: ...

class ValidateCodeResponse(_message.Message):
    __slots__ = ("valid", "reason", "reward")
    VALID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    REWARD_FIELD_NUMBER: _ClassVar[int]
    valid: bool
    reason: str
    reward: Reward
    def __init__(self, valid: _Optional[bool] = ..., reason: _Optional[str] = ..., reward: _Optional[_Union[Reward, _Mapping]] = ...) -> None: ...

class ActivateCodeRequest(_message.Message):
    __slots__ = ("code", "profile", "cart", "attributes", "applied_promotions", "request_id")
    class AttributesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    CODE_FIELD_NUMBER: _ClassVar[int]
    PROFILE_FIELD_NUMBER: _ClassVar[int]
    CART_FIELD_NUMBER: _ClassVar[int]
    ATTRIBUTES_FIELD_NUMBER: _ClassVar[int]
    APPLIED_PROMOTIONS_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    code: str
    profile: _profile_pb2.ProfileRef
    cart: Cart
    attributes: _containers.ScalarMap[str, str]
    applied_promotions: _containers.RepeatedScalarFieldContainer[str]
    request_id: str
    def __init__(self, code: _Optional[str] = ..., profile: _Optional[_Union[_profile_pb2.ProfileRef, _Mapping]] = ..., cart: _Optional[_Union[Cart, _Mapping]] = ..., attributes: _Optional[_Mapping[str, str]] = ..., applied_promotions: _Optional[_Iterable[str]] = ..., request_id: _Optional[str] = ...) -> None: ...

class RollbackRedemptionRequest(_message.Message):
    __slots__ = ("redemption_id", "reason")
    REDEMPTION_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    redemption_id: str
    reason: str
    def __init__(self, redemption_id: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class ListRedemptionsRequest(_message.Message):
    __slots__ = ("promotion", "code", "profile", "page_size", "page_token")
    PROMOTION_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    PROFILE_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    promotion: str
    code: str
    profile: _profile_pb2.ProfileRef
    page_size: int
    page_token: str
    def __init__(self, promotion: _Optional[str] = ..., code: _Optional[str] = ..., profile: _Optional[_Union[_profile_pb2.ProfileRef, _Mapping]] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListRedemptionsResponse(_message.Message):
    __slots__ = ("redemptions", "next_page_token")
    REDEMPTIONS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    redemptions: _containers.RepeatedCompositeFieldContainer[Redemption]
    next_page_token: str
    def __init__(self, redemptions: _Optional[_Iterable[_Union[Redemption, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...
