import datetime

from google.protobuf import empty_pb2 as _empty_pb2
from google.protobuf import field_mask_pb2 as _field_mask_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Operator(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    OPERATOR_UNSPECIFIED: _ClassVar[Operator]
    EQ: _ClassVar[Operator]
    NE: _ClassVar[Operator]
    GT: _ClassVar[Operator]
    GE: _ClassVar[Operator]
    LT: _ClassVar[Operator]
    LE: _ClassVar[Operator]
OPERATOR_UNSPECIFIED: Operator
EQ: Operator
NE: Operator
GT: Operator
GE: Operator
LT: Operator
LE: Operator

class Promotion(_message.Message):
    __slots__ = ("external_id", "name", "state", "start_time", "end_time", "redeem_total_limit", "redeem_user_limit", "redeem_code_limit", "discount", "discounted_items", "bonus", "attribute_conditions", "price_conditions", "item_price_conditions", "excluded_promotions", "create_time", "update_time", "redemption_count", "low_stock_threshold", "available_code_count")
    class State(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        STATE_UNSPECIFIED: _ClassVar[Promotion.State]
        ACTIVE: _ClassVar[Promotion.State]
        INACTIVE: _ClassVar[Promotion.State]
    STATE_UNSPECIFIED: Promotion.State
    ACTIVE: Promotion.State
    INACTIVE: Promotion.State
    class NameEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    EXTERNAL_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    REDEEM_TOTAL_LIMIT_FIELD_NUMBER: _ClassVar[int]
    REDEEM_USER_LIMIT_FIELD_NUMBER: _ClassVar[int]
    REDEEM_CODE_LIMIT_FIELD_NUMBER: _ClassVar[int]
    DISCOUNT_FIELD_NUMBER: _ClassVar[int]
    DISCOUNTED_ITEMS_FIELD_NUMBER: _ClassVar[int]
    BONUS_FIELD_NUMBER: _ClassVar[int]
    ATTRIBUTE_CONDITIONS_FIELD_NUMBER: _ClassVar[int]
    PRICE_CONDITIONS_FIELD_NUMBER: _ClassVar[int]
    ITEM_PRICE_CONDITIONS_FIELD_NUMBER: _ClassVar[int]
    EXCLUDED_PROMOTIONS_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TIME_FIELD_NUMBER: _ClassVar[int]
    REDEMPTION_COUNT_FIELD_NUMBER: _ClassVar[int]
    LOW_STOCK_THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    AVAILABLE_CODE_COUNT_FIELD_NUMBER: _ClassVar[int]
    external_id: str
    name: _containers.ScalarMap[str, str]
    state: Promotion.State
    start_time: _timestamp_pb2.Timestamp
    end_time: _timestamp_pb2.Timestamp
    redeem_total_limit: int
    redeem_user_limit: int
    redeem_code_limit: int
    discount: Discount
    discounted_items: _containers.RepeatedCompositeFieldContainer[DiscountedItem]
    bonus: _containers.RepeatedCompositeFieldContainer[BonusItem]
    attribute_conditions: _containers.RepeatedCompositeFieldContainer[AttributeCondition]
    price_conditions: _containers.RepeatedCompositeFieldContainer[PriceCondition]
    item_price_conditions: _containers.RepeatedCompositeFieldContainer[PriceCondition]
    excluded_promotions: _containers.RepeatedScalarFieldContainer[str]
    create_time: _timestamp_pb2.Timestamp
    update_time: _timestamp_pb2.Timestamp
    redemption_count: int
    low_stock_threshold: int
    available_code_count: int
    def __init__(self, external_id: _Optional[str] = ..., name: _Optional[_Mapping[str, str]] = ..., state: _Optional[_Union[Promotion.State, str]] = ..., start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., redeem_total_limit: _Optional[int] = ..., redeem_user_limit: _Optional[int] = ..., redeem_code_limit: _Optional[int] = ..., discount: _Optional[_Union[Discount, _Mapping]] = ..., discounted_items: _Optional[_Iterable[_Union[DiscountedItem, _Mapping]]] = ..., bonus: _Optional[_Iterable[_Union[BonusItem, _Mapping]]] = ..., attribute_conditions: _Optional[_Iterable[_Union[AttributeCondition, _Mapping]]] = ..., price_conditions: _Optional[_Iterable[_Union[PriceCondition, _Mapping]]] = ..., item_price_conditions: _Optional[_Iterable[_Union[PriceCondition, _Mapping]]] = ..., excluded_promotions: _Optional[_Iterable[str]] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., update_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., redemption_count: _Optional[int] = ..., low_stock_threshold: _Optional[int] = ..., available_code_count: _Optional[int] = ...) -> None: ...

class Discount(_message.Message):
    __slots__ = ("percent", "amount", "currency")
    PERCENT_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_FIELD_NUMBER: _ClassVar[int]
    CURRENCY_FIELD_NUMBER: _ClassVar[int]
    percent: str
    amount: str
    currency: str
    def __init__(self, percent: _Optional[str] = ..., amount: _Optional[str] = ..., currency: _Optional[str] = ...) -> None: ...

class DiscountedItem(_message.Message):
    __slots__ = ("sku", "discount")
    SKU_FIELD_NUMBER: _ClassVar[int]
    DISCOUNT_FIELD_NUMBER: _ClassVar[int]
    sku: str
    discount: Discount
    def __init__(self, sku: _Optional[str] = ..., discount: _Optional[_Union[Discount, _Mapping]] = ...) -> None: ...

class BonusItem(_message.Message):
    __slots__ = ("sku", "quantity")
    SKU_FIELD_NUMBER: _ClassVar[int]
    QUANTITY_FIELD_NUMBER: _ClassVar[int]
    sku: str
    quantity: int
    def __init__(self, sku: _Optional[str] = ..., quantity: _Optional[int] = ...) -> None: ...

class AttributeCondition(_message.Message):
    __slots__ = ("attribute", "type", "operator", "value", "can_be_missing")
    class Type(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        TYPE_UNSPECIFIED: _ClassVar[AttributeCondition.Type]
        STRING: _ClassVar[AttributeCondition.Type]
        NUMBER: _ClassVar[AttributeCondition.Type]
        DATE: _ClassVar[AttributeCondition.Type]
    TYPE_UNSPECIFIED: AttributeCondition.Type
    STRING: AttributeCondition.Type
    NUMBER: AttributeCondition.Type
    DATE: AttributeCondition.Type
    ATTRIBUTE_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    OPERATOR_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    CAN_BE_MISSING_FIELD_NUMBER: _ClassVar[int]
    attribute: str
    type: AttributeCondition.Type
    operator: Operator
    value: str
    can_be_missing: bool
    def __init__(self, attribute: _Optional[str] = ..., type: _Optional[_Union[AttributeCondition.Type, str]] = ..., operator: _Optional[_Union[Operator, str]] = ..., value: _Optional[str] = ..., can_be_missing: _Optional[bool] = ...) -> None: ...

class PriceCondition(_message.Message):
    __slots__ = ("operator", "value")
    OPERATOR_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    operator: Operator
    value: str
    def __init__(self, operator: _Optional[_Union[Operator, str]] = ..., value: _Optional[str] = ...) -> None: ...

class CreatePromotionRequest(_message.Message):
    __slots__ = ("promotion",)
    PROMOTION_FIELD_NUMBER: _ClassVar[int]
    promotion: Promotion
    def __init__(self, promotion: _Optional[_Union[Promotion, _Mapping]] = ...) -> None: ...

class GetPromotionRequest(_message.Message):
    __slots__ = ("external_id",)
    EXTERNAL_ID_FIELD_NUMBER: _ClassVar[int]
    external_id: str
    def __init__(self, external_id: _Optional[str] = ...) -> None: ...

class ListPromotionsRequest(_message.Message):
    __slots__ = ("page_size", "page_token", "state")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    state: Promotion.State
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., state: _Optional[_Union[Promotion.State, str]] = ...) -> None: ...

class ListPromotionsResponse(_message.Message):
    __slots__ = ("promotions", "next_page_token")
    PROMOTIONS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    promotions: _containers.RepeatedCompositeFieldContainer[Promotion]
    next_page_token: str
    def __init__(self, promotions: _Optional[_Iterable[_Union[Promotion, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class UpdatePromotionRequest(_message.Message):
    __slots__ = ("promotion", "update_mask")
    PROMOTION_FIELD_NUMBER: _ClassVar[int]
    UPDATE_MASK_FIELD_NUMBER: _ClassVar[int]
    promotion: Promotion
    update_mask: _field_mask_pb2.FieldMask
    def __init__(self, promotion: _Optional[_Union[Promotion, _Mapping]] = ..., update_mask: _Optional[_Union[_field_mask_pb2.FieldMask, _Mapping]] = ...) -> None: ...

class DeletePromotionRequest(_message.Message):
    __slots__ = ("external_id",)
    EXTERNAL_ID_FIELD_NUMBER: _ClassVar[int]
    external_id: str
    def __init__(self, external_id: _Optional[str] = ...) -> None: ...
