"""Promotions in the database: rows to domain objects and back, keyset pages."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from peewee import IntegrityError

from promo_server.domain import promotions as domain
from promo_server.domain.errors import AlreadyExists, NotFound
from promo_server.store.db import Compiled, is_sqlite, utcnow
from promo_server.store.models import Code
from promo_server.store.models import Promotion as Row

# The domain fields kept as one JSON document in ``promotion.rules``.
_RULES = (
    "discount",
    "discounted_items",
    "bonus",
    "attribute_conditions",
    "price_conditions",
    "item_price_conditions",
    "excluded_promotions",
)
_COLUMNS = (
    "state",
    "start_time",
    "end_time",
    "redeem_total_limit",
    "redeem_user_limit",
    "redeem_code_limit",
)


def insert(project_id: int, promotion: domain.Promotion) -> domain.Promotion:
    now = utcnow()
    try:
        row = Row.create(project=project_id, create_time=now, update_time=now,
                         **_row_values(promotion))
    except IntegrityError:
        raise AlreadyExists(
            f"a promotion with external_id {promotion.external_id!r} already exists"
        ) from None
    return to_domain(row)


def _live(project_id: int, external_id: str) -> Any:
    return Row.select().where(
        (Row.project == project_id) & (Row.external_id == external_id) & Row.delete_time.is_null()
    )


_GET = Compiled(_live)
# SQLite has no row locks: its writers already hold the database's write lock.
_GET_FOR_UPDATE = Compiled(lambda p, e: _live(p, e) if is_sqlite() else _live(p, e).for_update())


def get_row(project_id: int, external_id: str, *, for_update: bool = False) -> Row:
    query = _GET_FOR_UPDATE if for_update else _GET
    row = query.first(Row, project_id, external_id)
    if row is None:
        raise NotFound(f"promotion {external_id!r} not found")
    return row


def get(project_id: int, external_id: str) -> domain.Promotion:
    return to_domain(get_row(project_id, external_id))


_BY_ID = Compiled(lambda i: Row.select().where(Row.id == i))
# Parsed promotions by (id, update_time as stored): a version is parsed once,
# not on every redemption. Bounded; emptied when full.
_BY_VERSION: dict[tuple[int, Any], domain.Promotion] = {}
VERSIONS_KEPT = 1024


def by_version(promotion_id: int, version: Any) -> domain.Promotion:
    """The promotion as of ``version``, its stored update_time (redemptions read it first).

    A concurrent update may make this the newer version: a redemption's
    version check then fails, and it reads again.
    """
    found = _BY_VERSION.get((promotion_id, version))
    if found is None:
        row = _BY_ID.first(Row, promotion_id)
        assert row is not None, "a promotion row is never deleted"
        found = to_domain(row)
        if len(_BY_VERSION) >= VERSIONS_KEPT:
            _BY_VERSION.clear()
        _BY_VERSION[(promotion_id, version)] = found
    return found


def page(
    project_id: int, *, after: int | None, size: int, state: str | None
) -> tuple[list[domain.Promotion], int | None]:
    """One page in creation order, and the key to continue after (None at the end)."""
    query = Row.select().where((Row.project == project_id) & Row.delete_time.is_null())
    if state is not None:
        query = query.where(Row.state == state)
    if after is not None:
        query = query.where(Row.id > after)
    rows = list(query.order_by(Row.id).limit(size + 1))
    more = len(rows) > size
    rows = rows[:size]
    return [to_domain(r) for r in rows], (rows[-1].id if more else None)


def replace(row: Row, promotion: domain.Promotion) -> domain.Promotion:
    values = _row_values(promotion)
    values["update_time"] = utcnow()
    Row.update(**values).where(Row.id == row.id).execute()
    return to_domain(Row.get_by_id(row.id))


def delete(row: Row) -> int:
    """Marks the promotion deleted and retires its codes; returns how many were retired."""
    now = utcnow()
    Row.update(delete_time=now, update_time=now).where(Row.id == row.id).execute()
    retired: int = (
        Code.update(retire_time=now)
        .where((Code.promotion == row.id) & Code.retire_time.is_null())
        .execute()
    )
    return retired


def _row_values(promotion: domain.Promotion) -> dict[str, Any]:
    values = {name: getattr(promotion, name) for name in _COLUMNS}
    values["external_id"] = promotion.external_id
    values["name"] = json.dumps(promotion.name, sort_keys=True, ensure_ascii=False)
    rules = {name: _jsonable(getattr(promotion, name)) for name in _RULES}
    values["rules"] = json.dumps(rules, sort_keys=True, ensure_ascii=False)
    return values


def _jsonable(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    return value


def to_domain(row: Row) -> domain.Promotion:
    rules = json.loads(row.rules)
    discount = rules["discount"]
    return domain.Promotion(
        external_id=row.external_id,
        name=json.loads(row.name),
        **{name: getattr(row, name) for name in _COLUMNS},
        discount=domain.Discount(**discount) if discount else None,
        discounted_items=[
            domain.DiscountedItem(
                sku=item["sku"],
                discount=domain.Discount(**item["discount"]) if item["discount"] else None,
            )
            for item in rules["discounted_items"]
        ],
        bonus=[domain.BonusItem(**b) for b in rules["bonus"]],
        attribute_conditions=[
            domain.AttributeCondition(**c) for c in rules["attribute_conditions"]
        ],
        price_conditions=[domain.PriceCondition(**c) for c in rules["price_conditions"]],
        item_price_conditions=[
            domain.PriceCondition(**c) for c in rules["item_price_conditions"]
        ],
        excluded_promotions=list(rules["excluded_promotions"]),
        create_time=row.create_time,
        update_time=row.update_time,
        redemption_count=row.redemption_count,
    )
