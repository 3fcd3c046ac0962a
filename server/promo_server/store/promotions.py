"""Promotions in the database: rows to domain objects and back, keyset pages."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any, NamedTuple

from peewee import IntegrityError, fn

from promo_server.domain import promotions as domain
from promo_server.domain.errors import AlreadyExists, NotFound
from promo_server.store.db import Compiled, is_sqlite, utcnow
from promo_server.store.models import Code, Project, RedemptionShare, available
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
    "low_stock_threshold",
)


def insert(project_id: int, promotion: domain.Promotion) -> domain.Promotion:
    """Stores a new promotion; its pool is empty, so its available_code_count is 0."""
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
_GET_FOR_SHARE = Compiled(
    lambda p, e: _live(p, e) if is_sqlite() else _live(p, e).for_update("FOR KEY SHARE")
)


def get_row(
    project_id: int, external_id: str, *, for_update: bool = False, for_share: bool = False
) -> Row:
    """The live promotion's row; ``for_update`` locks it against every other writer,
    ``for_share`` only against UpdatePromotion and DeletePromotion (which lock it for
    update) until the transaction ends: redemptions still count on it meanwhile."""
    query = _GET_FOR_UPDATE if for_update else _GET_FOR_SHARE if for_share else _GET
    row = query.first(Row, project_id, external_id)
    if row is None:
        raise NotFound(f"promotion {external_id!r} not found")
    return row


def get(project_id: int, external_id: str) -> domain.Promotion:
    """The promotion's rules, without counting its pool (see ``counted``)."""
    return to_domain(get_row(project_id, external_id))


def counted(project_id: int, rows: Sequence[Row]) -> list[domain.Promotion]:
    """The promotions with their pools' available codes, counted by one query, and
    their redemptions by another."""
    ids = [row.id for row in rows]
    counts = available_counts(project_id, ids, utcnow())
    redeemed = redemption_counts(ids)
    return [
        to_domain(row, counts.get(row.id, 0), redeemed.get(row.id, row.redemption_count))
        for row in rows
    ]


def redemption_counts(promotion_ids: Sequence[int]) -> dict[int, int]:
    """Each promotion's live redemptions, by id: its row's count and its shares', read
    in one statement, so that an UpdatePromotion moving the shares into the row is
    seen whole or not at all."""
    if not promotion_ids:
        return {}
    shares = RedemptionShare.alias()
    shared = shares.select(fn.COALESCE(fn.SUM(shares.redemption_count), 0)).where(
        shares.promotion == Row.id
    )
    query: Any = (
        Row.select(Row.id, Row.redemption_count + shared)
        .where(Row.id.in_(list(promotion_ids)))
        .tuples()
    )
    return {promotion_id: int(count) for promotion_id, count in query}


def available_counts(
    project_id: int, promotion_ids: Sequence[int], now: datetime
) -> dict[int, int]:
    """How many codes each promotion's pool could still hand out, by promotion id."""
    if not promotion_ids:
        return {}
    query: Any = (
        Code.select(Code.promotion, fn.COUNT(Code.id))
        .where(
            (Code.project == project_id) & Code.promotion.in_(list(promotion_ids))
            & available(now)
        )
        .group_by(Code.promotion)
        .tuples()
    )
    return {promotion_id: count for promotion_id, count in query}


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
    return counted(project_id, rows), (rows[-1].id if more else None)


def replace(row: Row, promotion: domain.Promotion) -> Row:
    """Stores the promotion's new values; returns its row as now stored.

    The row must be locked for update. With a total limit, the redemptions
    counted in shares move into the row, where activations check the limit.
    """
    values = _row_values(promotion)
    values["update_time"] = utcnow()
    if promotion.redeem_total_limit is not None:
        _fold_shares(row.id)
    Row.update(**values).where(Row.id == row.id).execute()
    return Row.get_by_id(row.id)


def _fold_shares(promotion_id: int) -> None:
    shares = RedemptionShare.promotion == promotion_id
    shared = RedemptionShare.select(fn.COALESCE(fn.SUM(RedemptionShare.redemption_count), 0))
    Row.update(redemption_count=Row.redemption_count + shared.where(shares)).where(
        Row.id == promotion_id
    ).execute()
    RedemptionShare.delete().where(shares).execute()


def delete(row: Row) -> int:
    """Marks the promotion deleted and retires its codes, the global pool's codes
    issued for it among them (they redeem under its rules); returns how many."""
    now = utcnow()
    Row.update(delete_time=now, update_time=now).where(Row.id == row.id).execute()
    retired: int = (
        Code.update(retire_time=now)
        .where(
            ((Code.promotion == row.id) | (Code.issued_for == row.id))
            & Code.retire_time.is_null()
        )
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


def to_domain(
    row: Row, available_code_count: int = 0, redemption_count: int | None = None
) -> domain.Promotion:
    """The promotion a row holds; ``redemption_count`` its count with its shares
    (``counted``), else the row's alone."""
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
        redemption_count=row.redemption_count if redemption_count is None else redemption_count,
        available_code_count=available_code_count,
    )


class PoolStock(NamedTuple):
    """A pool's available codes and low-stock threshold (None: no threshold)."""

    project_id: int
    promotion_id: int | None  # None: the project's global pool
    external_id: str  # "" for the global pool
    available: int
    threshold: int | None


def pool_stock(now: datetime) -> list[PoolStock]:
    """Every pool of every project: each live promotion's and each global one.

    One grouped count over the available codes, whatever the number of pools.
    """
    grouped: Any = (
        Code.select(Code.project, Code.promotion, fn.COUNT(Code.id))
        .where(available(now))
        .group_by(Code.project, Code.promotion)
        .tuples()
    )
    counts = {(project_id, promotion_id): count for project_id, promotion_id, count in grouped}
    projects: Any = Project.select(Project.id, Project.low_stock_threshold).tuples()
    live: Any = (
        Row.select(Row.id, Row.project, Row.external_id, Row.low_stock_threshold)
        .where(Row.delete_time.is_null())
        .tuples()
    )
    pools = [
        PoolStock(project_id, None, "", counts.get((project_id, None), 0), threshold)
        for project_id, threshold in projects
    ]
    pools += [
        PoolStock(project_id, promotion_id, external_id,
                  counts.get((project_id, promotion_id), 0), threshold)
        for promotion_id, project_id, external_id, threshold in live
    ]
    return pools
