"""Hypothesis strategies for hostile promo.v1 requests, built from the message descriptors.

``hostile(cls)`` fills any request with garbage: huge strings, control characters
and NUL, invalid UTF-8 in bytes fields, int64 extremes, unknown enum numbers,
empty and oversized repeated and map fields, timestamps outside 0001..9999 or
with bad nanos, field masks naming unknown paths. Strings are often drawn from a
vocabulary of plausible values (the seeded promotion, codes and profile) so that
requests reach past the first check. ``valid_shaped(valid)`` starts from a valid
request and swaps a few fields, at any depth, for hostile ones.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from google.protobuf import descriptor, field_mask_pb2, message_factory, timestamp_pb2
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message
from hypothesis import strategies as st

from promo.v1 import code_pb2, profile_pb2, promotion_pb2

SERVICES = tuple(
    service
    for module in (promotion_pb2, code_pb2, profile_pb2)
    for service in module.DESCRIPTOR.services_by_name.values()
)
METHODS: tuple[descriptor.MethodDescriptor, ...] = tuple(
    method for service in SERVICES for method in service.methods
)

INT64 = (-(2**63), 2**63 - 1)
INT32 = (-(2**31), 2**31 - 1)
# google.protobuf.Timestamp's range, 0001-01-01 .. 9999-12-31T23:59:59Z.
MIN_SECONDS, MAX_SECONDS = -62135596800, 253402300799
MAX_DEPTH = 4

NASTY_TEXT = (
    "", " ", "\x00", "a\x00b", "\x01\x02\x1f\x7f", "\r\n", "\t", "\u202e", "\ufeff",
    "\U0001f600", "é", "../../etc/passwd", "' OR 1=1 --", "%s%n", "${x}", "NaN", "-0",
    "1e309", "Infinity", "0x10", "\u0661\u0662", "DROP TABLE code;", "a" * 256, "a" * 1025,
)
NASTY_BYTES = (
    b"", b"\x00", b"\xff\xfe\xfd", b"\xc3\x28\n", b"\xed\xa0\x80\n", b"code\xff\n",
    b"A" * 2000 + b"\n", b",,,\n", b"\"unclosed\n", b"CODE-9,not-a-date\n", b"\r\r\r",
    b"CODE-9,2030-01-01T00:00:00Z,extra\n", b"\xef\xbb\xbfBOM-1\n",
)

# Plausible values by field name: the seed's objects and well-formed values, so that
# hostile requests are not all stopped by the first check.
VOCABULARY: dict[str, tuple[str, ...]] = {
    "external_id": ("p1", "p2", "new-promo", "P1"),
    "promotion": ("p1", "p2", "", "gone"),
    "excluded_promotions": ("p1", "p2"),
    "applied_promotions": ("p1", "p2"),
    "code": ("CODE-1", "code-2", "CODE-3", "NOPE"),
    "profile_id": ("alice", "bob", "new-user"),
    "email": ("alice@example.com", "nobody@example.com"),
    "phone": ("+15550100",),
    "field": ("crm",),
    "value": ("42", "9.99", "gold", "2030-01-01T00:00:00Z", "crm-1"),
    "percent": ("10", "100", "0", "100.01", "-5", "10.123"),
    "amount": ("5", "5.0000", "99999999999999999999.9999", "-1", "0"),
    "currency": ("USD", "EUR", "usd", "XXXX"),
    "unit_price": ("9.99", "0", "50.00", "1.23456"),
    "sku": ("shirt", "hat"),
    "attribute": ("age", "tier"),
    "pattern": ("SALE-####", "#", "??", "*" * 64, "", "#" * 65),
    "page_token": ("", "garbage", "eyJ4IjoxfQ", "AAAA"),
    "request_id": ("r1", "r2"),
    "reason": ("oops",),
    "redemption_id": ("00000000-0000-0000-0000-000000000000",),
    "key": ("en-US", "fr-FR", "EN-us", "tier", "crm"),
}
FIELD_MASK_PATHS = (
    "name", "state", "discount", "redeem_total_limit", "low_stock_threshold", "expire_time",
    "active", "external_id", "create_time", "redemption_count", "nope", "", "name.en-US",
    "discount.percent", "a.b.c", "NAME", "update_mask",
)
# Large enough to go past every documented limit, small enough for a quick test.
OVERSIZED = (101, 1001)


def text(field_name: str) -> st.SearchStrategy[str]:
    plausible = VOCABULARY.get(field_name, ())
    garbage = st.one_of(
        st.sampled_from(NASTY_TEXT),
        st.text(max_size=30),
        st.integers(256, 70_000).map(lambda n: "x" * n),
        st.tuples(st.text(min_size=1, max_size=3), st.integers(100, 5_000)).map(
            lambda pair: pair[0] * pair[1]
        ),
    )
    if plausible:
        return st.one_of(st.sampled_from(plausible), garbage)
    return garbage


def integers(field_name: str, bounds: tuple[int, int]) -> st.SearchStrategy[int]:
    low, high = bounds
    extremes = [low, high, low + 1, high - 1, 0, -1, 1, 2, 100, 1000, 1001, 10_000_001]
    if field_name == "count":  # GenerateCodes: keep valid counts small, the rest hostile
        return st.one_of(st.integers(1, 20), st.sampled_from([0, -1, 10_000_001, low, high]))
    return st.one_of(st.sampled_from([v for v in extremes if low <= v <= high]),
                     st.integers(-10, 10), st.integers(low, high))


def timestamps() -> st.SearchStrategy[Message]:
    seconds = st.one_of(
        st.integers(0, 4_102_444_800),  # 1970..2100
        st.sampled_from([MIN_SECONDS, MIN_SECONDS - 1, MAX_SECONDS, MAX_SECONDS + 1, *INT64, -1]),
        st.integers(*INT64),
    )
    nanos = st.one_of(
        st.just(0),
        st.sampled_from([-1, 999_999_999, 1_000_000_000, *INT32]),
        st.integers(*INT32),
    )
    return st.builds(timestamp_pb2.Timestamp, seconds=seconds, nanos=nanos)


def field_masks() -> st.SearchStrategy[Message]:
    paths = st.one_of(st.sampled_from(FIELD_MASK_PATHS), st.text(max_size=10))
    return st.builds(field_mask_pb2.FieldMask, paths=st.lists(paths, max_size=4))


def _scalar(field: FieldDescriptor) -> st.SearchStrategy[Any]:
    kind = field.type
    if kind == FieldDescriptor.TYPE_STRING:
        return text(field.name)
    if kind == FieldDescriptor.TYPE_BYTES:
        return st.one_of(
            st.sampled_from(NASTY_BYTES),
            st.binary(max_size=64),
            st.lists(st.sampled_from(["CODE-7", "CODE-8", "code-7", "CODE-1", "x" * 65, "a b"]),
                     max_size=5).map(lambda codes: "".join(f"{c}\n" for c in codes).encode()),
        )
    if kind == FieldDescriptor.TYPE_BOOL:
        return st.booleans()
    if kind == FieldDescriptor.TYPE_ENUM:
        known = [value.number for value in field.enum_type.values]
        return st.one_of(st.sampled_from(known), st.sampled_from([-1, 99, *INT32]),
                         st.integers(*INT32))
    if kind in (FieldDescriptor.TYPE_INT32, FieldDescriptor.TYPE_SINT32,
                FieldDescriptor.TYPE_SFIXED32):
        return integers(field.name, INT32)
    if kind in (FieldDescriptor.TYPE_INT64, FieldDescriptor.TYPE_SINT64,
                FieldDescriptor.TYPE_SFIXED64):
        return integers(field.name, INT64)
    raise AssertionError(f"no strategy for {field.full_name} of type {kind}")


def _value(field: FieldDescriptor, depth: int) -> st.SearchStrategy[Any]:
    if field.type != FieldDescriptor.TYPE_MESSAGE:
        return _scalar(field)
    name = field.message_type.full_name
    if name == "google.protobuf.Timestamp":
        return timestamps()
    if name == "google.protobuf.FieldMask":
        return field_masks()
    return hostile(message_factory.GetMessageClass(field.message_type), depth + 1)


def _repeated(field: FieldDescriptor, depth: int) -> st.SearchStrategy[list[Any]]:
    item = _value(field, depth)
    return st.one_of(
        st.lists(item, max_size=3),
        st.tuples(item, st.sampled_from(OVERSIZED)).map(lambda pair: [pair[0]] * _copies(*pair)),
    )


def _copies(item: Any, wanted: int) -> int:
    """``wanted`` copies of a small item; a few of a large one, which would only make the
    request too large for the server to read at all (a case of its own)."""
    size = item.ByteSize() if isinstance(item, Message) else len(str(item))
    return wanted if size * wanted < 1_000_000 else 2


def _map(field: FieldDescriptor) -> st.SearchStrategy[dict[str, str]]:
    keys, values = text("key"), text(field.name)
    return st.one_of(
        st.dictionaries(keys, values, max_size=3),
        st.tuples(values, st.sampled_from(OVERSIZED)).map(
            lambda pair: {f"k{i}": pair[0] for i in range(_copies(*pair))}
        ),
    )


def _assign(msg: Message, field: FieldDescriptor, value: Any) -> None:
    if field.message_type is not None and field.message_type.GetOptions().map_entry:
        getattr(msg, field.name).update(value)
    elif field.is_repeated:
        getattr(msg, field.name).extend(value)
    elif field.type == FieldDescriptor.TYPE_MESSAGE:
        getattr(msg, field.name).CopyFrom(value)
    else:
        setattr(msg, field.name, value)


def _field_strategy(field: FieldDescriptor, depth: int) -> st.SearchStrategy[Any]:
    if field.message_type is not None and field.message_type.GetOptions().map_entry:
        return _map(field)
    if field.is_repeated:
        return _repeated(field, depth)
    return _value(field, depth)


def hostile(cls: type[Message], depth: int = 0) -> st.SearchStrategy[Message]:
    """Any message of ``cls``, each field unset or set to a hostile value."""

    @st.composite
    def build(draw: Callable[[st.SearchStrategy[Any]], Any]) -> Message:
        msg = cls()
        if depth >= MAX_DEPTH:
            return msg
        for field in cls.DESCRIPTOR.fields:
            if draw(st.booleans()):
                _assign(msg, field, draw(_field_strategy(field, depth)))
        return msg

    return build()


def valid_shaped(valid: Message) -> st.SearchStrategy[Message]:
    """``valid`` with a few fields, at any depth, swapped for hostile values."""

    @st.composite
    def build(draw: Callable[[st.SearchStrategy[Any]], Any]) -> Message:
        return _blend(draw, valid, 0)

    return build()


def _blend(draw: Callable[[st.SearchStrategy[Any]], Any], valid: Message, depth: int) -> Message:
    out = type(valid)()
    out.CopyFrom(valid)
    for field in valid.DESCRIPTOR.fields:
        choice = draw(st.sampled_from(["keep", "keep", "keep", "keep", "hostile", "clear", "dig"]))
        singular_message = (field.type == FieldDescriptor.TYPE_MESSAGE
                            and not field.is_repeated)
        if choice == "clear":
            out.ClearField(field.name)
        elif choice == "hostile" or (choice == "dig" and not singular_message):
            out.ClearField(field.name)
            _assign(out, field, draw(_field_strategy(field, depth)))
        elif choice == "dig" and depth < MAX_DEPTH:
            getattr(out, field.name).CopyFrom(_blend(draw, getattr(valid, field.name), depth + 1))
    return out
