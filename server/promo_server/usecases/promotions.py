"""Promotion use cases: validate, then read or write in one transaction."""

from __future__ import annotations

import dataclasses
import logging
import re
from collections.abc import Sequence

from promo_server.domain import pagination
from promo_server.domain import promotions as domain
from promo_server.domain.errors import FieldViolation, InvalidArgument, Violations
from promo_server.domain.values import external_id_problem
from promo_server.store import audit
from promo_server.store import promotions as store
from promo_server.store.db import write_transaction

_LOGGER = logging.getLogger(__name__)


def create(
    project_id: int, promotion: domain.Promotion, known: Sequence[FieldViolation] = ()
) -> domain.Promotion:
    """``known`` are violations found while reading the request (bad timestamps)."""
    domain.require_valid(promotion, known)
    with write_transaction():
        created = store.insert(project_id, promotion)
        audit.record(project_id, "CreatePromotion", f"promotion/{created.external_id}")
    _LOGGER.info("promotion created project=%s external_id=%s", project_id, created.external_id)
    return created


def get(project_id: int, external_id: str) -> domain.Promotion:
    row = store.get_row(project_id, _required_id(external_id, "external_id"))
    return store.counted(project_id, [row])[0]


def list_page(
    project_id: int, *, page_size: int, page_token: str, state: str | None
) -> tuple[list[domain.Promotion], str]:
    problems = Violations()
    size = problems.check(lambda: pagination.page_size(page_size), 0)
    if state is not None and state not in domain.STATES:
        problems.add("state", "must be ACTIVE, INACTIVE or unset for every state")
    query = ("promotions", project_id, state)
    cursor = problems.check(lambda: pagination.decode(page_token, query), None)
    problems.raise_if_any()
    items, last = store.page(
        project_id, after=cursor.after if cursor else None, size=size, state=state
    )
    return items, (pagination.encode(last, query) if last is not None else "")


def update(
    project_id: int,
    incoming: domain.Promotion,
    mask: Sequence[str],
    known: Sequence[FieldViolation] = (),
) -> domain.Promotion:
    """Changes the fields the mask names; an empty mask (or "*") replaces every mutable
    field. A bad request names every bad field at once: of the mask, and of the
    promotion as the mask's good paths would leave it."""
    problems = Violations()
    external_id = problems.check(
        lambda: _required_id(incoming.external_id, "promotion.external_id"), ""
    )
    fields = _fields_of(mask, problems)
    # A field the mask leaves out is not read, bad or not (AIP-134).
    problems.extend(v for v in known if _top_field(v.field) in fields)
    if not external_id:
        problems.raise_if_any()  # no promotion to check the new values against
    with write_transaction():
        row = store.get_row(project_id, external_id, for_update=True)
        current = store.to_domain(row)
        merged = dataclasses.replace(current, **{f: getattr(incoming, f) for f in fields})
        problems.check(lambda: domain.require_valid(merged), None)
        problems.raise_if_any()
        stored = store.replace(row, merged)
        audit.record(project_id, "UpdatePromotion", f"promotion/{external_id}",
                     update_mask=list(mask), fields=list(fields))
    # Counted once the write lock is released: a large pool takes a while.
    updated = store.counted(project_id, [stored])[0]
    _LOGGER.info(
        "promotion updated project=%s external_id=%s fields=%s",
        project_id, external_id, ",".join(fields),
    )
    return updated


def delete(project_id: int, external_id: str) -> None:
    external_id = _required_id(external_id, "external_id")
    with write_transaction():
        retired = store.delete(store.get_row(project_id, external_id, for_update=True))
        audit.record(project_id, "DeletePromotion", f"promotion/{external_id}",
                     retired_codes=retired)
    _LOGGER.info(
        "promotion deleted project=%s external_id=%s retired_codes=%d",
        project_id, external_id, retired,
    )


def _fields_of(mask: Sequence[str], out: Violations) -> tuple[str, ...]:
    """The mutable fields the mask names, its bad paths added to ``out``.

    As AIP-134 and AIP-203 have it: "*" names them all, and output-only fields
    are ignored, as is external_id, which names the promotion and so never
    asks for a change.
    """
    if not mask or list(mask) == ["*"]:
        return domain.MUTABLE
    fields: list[str] = []
    for i, path in enumerate(mask):
        if path in domain.MUTABLE:
            fields.append(path)
        elif path == "*":
            out.add(f"update_mask.paths[{i}]", "'*' must be the mask's only path")
        elif path not in domain.OUTPUT_ONLY | domain.IMMUTABLE:
            out.add(
                f"update_mask.paths[{i}]",
                f"{path!r} is not a mutable field of Promotion "
                f"(one of: {', '.join(domain.MUTABLE)})",
            )
    return tuple(dict.fromkeys(fields))


def _top_field(path: str) -> str:
    """The Promotion field a violation's path is in: "promotion.name['en-US']" -> "name"."""
    return re.split(r"[.\[]", path.removeprefix("promotion."), maxsplit=1)[0]


def _required_id(external_id: str, field: str) -> str:
    """The id, which must be one a promotion could have: else a bad field, not an
    unknown promotion."""
    if problem := external_id_problem(external_id):
        raise InvalidArgument.field(field, problem)
    return external_id
