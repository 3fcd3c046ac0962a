"""Between promo.v1 messages and domain objects. No rules here beyond what a type can hold."""

from __future__ import annotations

from datetime import datetime, timedelta

from google.protobuf import timestamp_pb2
from google.protobuf.internal.enum_type_wrapper import EnumTypeWrapper

from promo.v1 import code_pb2, profile_pb2
from promo.v1 import promotion_pb2 as pb
from promo_server.domain import codes
from promo_server.domain import promotions as domain
from promo_server.domain.errors import FieldViolation
from promo_server.domain.values import external_id_problem, text_problem

_EPOCH = datetime(1970, 1, 1)
# The range of google.protobuf.Timestamp: 0001-01-01T00:00:00Z .. 9999-12-31T23:59:59Z.
_MIN_SECONDS = -62135596800
_MAX_SECONDS = 253402300799


def time_from_proto(
    ts: timestamp_pb2.Timestamp, path: str, problems: list[FieldViolation]
) -> datetime | None:
    if not (_MIN_SECONDS <= ts.seconds <= _MAX_SECONDS and 0 <= ts.nanos < 1_000_000_000):
        problems.append(FieldViolation(path, "is not a valid timestamp (0001..9999, nanos 0..1e9)"))
        return None
    return _EPOCH + timedelta(seconds=ts.seconds, microseconds=ts.nanos // 1000)


def time_to_proto(moment: datetime | None) -> timestamp_pb2.Timestamp | None:
    if moment is None:
        return None
    delta = moment - _EPOCH
    seconds = delta.days * 86400 + delta.seconds
    return timestamp_pb2.Timestamp(seconds=seconds, nanos=delta.microseconds * 1000)


def enum_name(enum: EnumTypeWrapper, value: int) -> str:
    """The value's name; an unknown number stays a number for the validator to refuse."""
    try:
        return enum.Name(value)
    except ValueError:
        return str(value)


def _discount(msg: pb.Discount) -> domain.Discount:
    return domain.Discount(percent=msg.percent, amount=msg.amount, currency=msg.currency)


def _price_conditions(items: object) -> list[domain.PriceCondition]:
    return [
        domain.PriceCondition(operator=enum_name(pb.Operator, c.operator), value=c.value)
        for c in items  # type: ignore[attr-defined]
    ]


def promotion_from_proto(
    msg: pb.Promotion, prefix: str = "promotion"
) -> tuple[domain.Promotion, list[FieldViolation]]:
    """The domain promotion, and violations of what could not be read (bad timestamps)."""
    problems: list[FieldViolation] = []
    state = enum_name(pb.Promotion.State, msg.state)

    def time(name: str) -> datetime | None:
        if not msg.HasField(name):
            return None
        return time_from_proto(getattr(msg, name), f"{prefix}.{name}", problems)

    def limit(name: str) -> int | None:
        return int(getattr(msg, name)) if msg.HasField(name) else None

    promotion = domain.Promotion(
        external_id=msg.external_id,
        name=dict(msg.name),
        state=domain.ACTIVE if state == "STATE_UNSPECIFIED" else state,
        start_time=time("start_time"),
        end_time=time("end_time"),
        redeem_total_limit=limit("redeem_total_limit"),
        redeem_user_limit=limit("redeem_user_limit"),
        redeem_code_limit=limit("redeem_code_limit"),
        discount=_discount(msg.discount) if msg.HasField("discount") else None,
        discounted_items=[
            domain.DiscountedItem(
                sku=item.sku,
                discount=_discount(item.discount) if item.HasField("discount") else None,
            )
            for item in msg.discounted_items
        ],
        bonus=[domain.BonusItem(sku=b.sku, quantity=b.quantity) for b in msg.bonus],
        attribute_conditions=[
            domain.AttributeCondition(
                attribute=c.attribute,
                type=enum_name(pb.AttributeCondition.Type, c.type),
                operator=enum_name(pb.Operator, c.operator),
                value=c.value,
                can_be_missing=c.can_be_missing,
            )
            for c in msg.attribute_conditions
        ],
        price_conditions=_price_conditions(msg.price_conditions),
        item_price_conditions=_price_conditions(msg.item_price_conditions),
        excluded_promotions=list(msg.excluded_promotions),
        low_stock_threshold=limit("low_stock_threshold"),
    )
    return promotion, problems


def _discount_to_proto(discount: domain.Discount) -> pb.Discount:
    return pb.Discount(
        percent=discount.percent, amount=discount.amount, currency=discount.currency
    )


def _price_conditions_to_proto(items: list[domain.PriceCondition]) -> list[pb.PriceCondition]:
    return [pb.PriceCondition(operator=pb.Operator.Value(c.operator), value=c.value) for c in items]


def promotion_to_proto(promotion: domain.Promotion) -> pb.Promotion:
    return pb.Promotion(
        external_id=promotion.external_id,
        name=promotion.name,
        state=pb.Promotion.State.Value(promotion.state),
        start_time=time_to_proto(promotion.start_time),
        end_time=time_to_proto(promotion.end_time),
        redeem_total_limit=promotion.redeem_total_limit,
        redeem_user_limit=promotion.redeem_user_limit,
        redeem_code_limit=promotion.redeem_code_limit,
        discount=_discount_to_proto(promotion.discount) if promotion.discount else None,
        discounted_items=[
            pb.DiscountedItem(
                sku=item.sku,
                discount=_discount_to_proto(item.discount) if item.discount else None,
            )
            for item in promotion.discounted_items
        ],
        bonus=[pb.BonusItem(sku=b.sku, quantity=b.quantity) for b in promotion.bonus],
        attribute_conditions=[
            pb.AttributeCondition(
                attribute=c.attribute,
                type=pb.AttributeCondition.Type.Value(c.type),
                operator=pb.Operator.Value(c.operator),
                value=c.value,
                can_be_missing=c.can_be_missing,
            )
            for c in promotion.attribute_conditions
        ],
        price_conditions=_price_conditions_to_proto(promotion.price_conditions),
        item_price_conditions=_price_conditions_to_proto(promotion.item_price_conditions),
        excluded_promotions=promotion.excluded_promotions,
        create_time=time_to_proto(promotion.create_time),
        update_time=time_to_proto(promotion.update_time),
        redemption_count=promotion.redemption_count,
        low_stock_threshold=promotion.low_stock_threshold,
        available_code_count=promotion.available_code_count,
    )


def pool_from_proto(promotion: str, path: str, problems: list[FieldViolation]) -> str:
    """A request's promotion external id, "" naming the global pool (or none given): one
    no promotion could have is a bad field, not an unknown promotion."""
    if promotion and (problem := external_id_problem(promotion)):
        problems.append(FieldViolation(path, problem))
    return promotion


def profile_ref_from_proto(
    ref: profile_pb2.ProfileRef, path: str, problems: list[FieldViolation]
) -> codes.ProfileRef | None:
    """The reference a ProfileRef holds, or None when it names no profile."""
    kind = ref.WhichOneof("ref")
    if kind is None:
        return None
    if kind == "custom":
        for name in ("field", "value"):
            if not getattr(ref.custom, name):
                problems.append(FieldViolation(f"{path}.custom.{name}", "is required"))
        return codes.ProfileRef("custom", ref.custom.value, ref.custom.field)
    value = getattr(ref, kind)
    if not value:
        problems.append(FieldViolation(f"{path}.{kind}", "must not be empty"))
    elif kind == "profile_id" and (problem := text_problem(value)):
        # An unknown profile_id creates the profile: it must be one UpsertProfile accepts.
        problems.append(FieldViolation(f"{path}.{kind}", problem))
    return codes.ProfileRef(kind, value)


def code_to_proto(code: codes.Code) -> code_pb2.Code:
    return code_pb2.Code(
        code=code.code,
        promotion=code.promotion,
        active=code.active,
        expire_time=time_to_proto(code.expire_time),
        retired=code.retired,
        profile_id=code.profile_id,
        attachment_count=code.attachment_count,
        redemption_count=code.redemption_count,
        issued_for=code.issued_for,
        create_time=time_to_proto(code.create_time),
    )


def import_result_to_proto(result: codes.ImportResult) -> code_pb2.ImportCodesResponse:
    return code_pb2.ImportCodesResponse(
        imported=result.imported,
        duplicates=result.duplicates,
        rejected=result.rejected,
        retired=result.retired,
        errors=[
            code_pb2.ImportError(line=bad.line, text=bad.text, reason=bad.reason)
            for bad in result.errors
        ],
    )
