"""The audit log of admin changes, on SQLite and PostgreSQL: who, what, when.

The RPCs go to a real in-process server; the operator commands run through
``main`` against the database alone.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import grpc
import pytest
from google.protobuf import field_mask_pb2

from promo.v1 import code_pb2 as pb
from promo.v1 import code_pb2_grpc, profile_pb2, promotion_pb2, promotion_pb2_grpc
from promo_server.domain import keys
from promo_server.main import main
from promo_server.store import audit
from promo_server.store.db import database, utcnow
from tests.conftest import Project, Running, bearer
from tests.rpc import refused

INVALID = grpc.StatusCode.INVALID_ARGUMENT
CART = pb.Cart(currency="USD", items=[pb.CartItem(sku="shirt", quantity=1, unit_price="50.00")])
ANN = profile_pb2.ProfileRef(profile_id="ann")


def key_id(token: str) -> str:
    parsed = keys.parse_token(token)
    assert parsed is not None
    return parsed[0]


def logged(project_id: int, since: datetime | None = None, limit: int = 1000) -> list[audit.Entry]:
    database.connect(reuse_if_open=True)
    try:
        return audit.entries(project_id, since=since, limit=limit)
    finally:
        database.close()


@dataclass
class Api:
    codes: code_pb2_grpc.CodeServiceStub
    promotions: promotion_pb2_grpc.PromotionServiceStub
    key: str

    def call(self, method: Callable[..., Any], request: Any) -> Any:
        return method(request, metadata=bearer(self.key), timeout=20)

    def create(self, external_id: str, name: str = "P") -> promotion_pb2.Promotion:
        return self.call(self.promotions.CreatePromotion, promotion_pb2.CreatePromotionRequest(
            promotion=promotion_pb2.Promotion(external_id=external_id, name={"en-US": name},
                                              discount=promotion_pb2.Discount(percent="10"))))

    def update(self, external_id: str, name: str, *paths: str) -> promotion_pb2.Promotion:
        return self.call(self.promotions.UpdatePromotion, promotion_pb2.UpdatePromotionRequest(
            promotion=promotion_pb2.Promotion(external_id=external_id, name={"en-US": name}),
            update_mask=field_mask_pb2.FieldMask(paths=paths)))

    def delete(self, external_id: str) -> None:
        self.call(self.promotions.DeletePromotion,
                  promotion_pb2.DeletePromotionRequest(external_id=external_id))

    def import_codes(self, promotion: str, text: str,
                     mode: int = pb.ImportCodesRequest.Spec.APPEND) -> pb.ImportCodesResponse:
        return self.codes.ImportCodes(iter([
            pb.ImportCodesRequest(spec=pb.ImportCodesRequest.Spec(
                promotion=promotion, mode=mode, skip_invalid=True)),
            pb.ImportCodesRequest(chunk=text.encode()),
        ]), metadata=bearer(self.key), timeout=20)

    def generate(self, promotion: str, count: int, pattern: str = "GEN-######") -> int:
        return int(self.call(self.codes.GenerateCodes, pb.GenerateCodesRequest(
            promotion=promotion, count=count, pattern=pattern)).generated)

    def deactivate(self, code: str) -> pb.Code:
        return self.call(self.codes.UpdateCode, pb.UpdateCodeRequest(
            code=pb.Code(code=code, active=False),
            update_mask=field_mask_pb2.FieldMask(paths=["active"])))


@pytest.fixture
def api(running: Running, project: Project) -> Iterator[Api]:
    with running.channel() as channel:
        yield Api(code_pb2_grpc.CodeServiceStub(channel),
                  promotion_pb2_grpc.PromotionServiceStub(channel), project.admin_key)


def test_each_admin_change_is_logged_once_with_who_what_and_when(
    api: Api, project: Project
) -> None:
    before = logged(project.id)
    started = utcnow()

    api.create("summer")
    api.update("summer", "Summer sale", "name")
    api.import_codes("summer", "S-1\nS-2\nS-1\nbad code!\n")
    api.generate("", 3)
    api.deactivate("S-1")
    api.delete("summer")

    entries = logged(project.id)[: -len(before) or None]
    admin = key_id(project.admin_key)
    assert [(e.actor, e.action, e.resource, e.details) for e in reversed(entries)] == [
        (admin, "CreatePromotion", "promotion/summer", {}),
        (admin, "UpdatePromotion", "promotion/summer",
         {"update_mask": ["name"], "fields": ["name"]}),
        (admin, "ImportCodes", "pool/summer",
         {"mode": "APPEND", "imported": 2, "duplicates": 1, "rejected": 1, "retired": 0}),
        (admin, "GenerateCodes", "pool/(global)", {"pattern": "GEN-######", "count": 3}),
        (admin, "UpdateCode", "code/S-1", {"active": False}),
        (admin, "DeletePromotion", "promotion/summer", {"retired_codes": 2}),
    ]
    assert all(started <= e.create_time <= utcnow() for e in entries)


def test_refused_changes_leave_no_entry(api: Api, project: Project) -> None:
    api.create("summer")
    before = logged(project.id)

    refused(lambda: api.create("", name=""), INVALID)
    refused(lambda: api.update("summer", "x", "redemption_count_typo"), INVALID)
    refused(lambda: api.import_codes("summer", "bad code!\n",
                                     mode=pb.ImportCodesRequest.Spec.REPLACE), INVALID)
    refused(lambda: api.generate("summer", 5, pattern=""), INVALID)
    refused(lambda: api.deactivate("NO-SUCH-CODE"), grpc.StatusCode.NOT_FOUND)
    refused(lambda: api.delete("no-such-promotion"), grpc.StatusCode.NOT_FOUND)

    assert logged(project.id) == before


def test_redemption_traffic_leaves_no_entry(api: Api, project: Project) -> None:
    api.create("summer")
    api.import_codes("summer", "S-1\nS-2\n")
    before = logged(project.id)

    api.call(api.codes.AttachCode, pb.AttachCodeRequest(profile=ANN, promotion="summer"))
    assert api.call(api.codes.ValidateCode,
                    pb.ValidateCodeRequest(code="S-1", profile=ANN, cart=CART)).valid
    redeemed = api.call(api.codes.ActivateCode,
                        pb.ActivateCodeRequest(code="S-1", profile=ANN, cart=CART))
    api.call(api.codes.RollbackRedemption,
             pb.RollbackRedemptionRequest(redemption_id=redeemed.id, reason="refund"))

    assert logged(project.id) == before


def test_a_change_whose_entry_cannot_be_written_is_not_made(
    api: Api, project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    def fail(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("the audit log is unwritable")

    monkeypatch.setattr(audit, "record", fail)
    refused(lambda: api.create("summer"), grpc.StatusCode.INTERNAL)
    monkeypatch.undo()

    refused(lambda: api.call(api.promotions.GetPromotion,
                             promotion_pb2.GetPromotionRequest(external_id="summer")),
            grpc.StatusCode.NOT_FOUND)


# The operator commands, and the audit command that lists them.


@dataclass
class Result:
    code: int
    out: str
    err: str


@pytest.fixture
def server_cli(db_url: str, capsys: pytest.CaptureFixture[str]) -> Iterator[Callable[..., Result]]:
    """Runs `promo-server ARGS --db <the database under test>`."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level

    def run(*args: str) -> Result:
        try:
            code = main([*args, "--db", db_url])
        except SystemExit as exit_:  # argparse refusing an argument
            code = int(exit_.code or 0)
        captured = capsys.readouterr()
        return Result(code, captured.out, captured.err)

    yield run
    root.handlers[:] = handlers
    root.setLevel(level)


def audit_rows(result: Result) -> list[list[str]]:
    """The audit table's rows, each cut into TIME, ACTOR, ACTION, RESOURCE and DETAILS."""
    assert result.code == 0, result.err
    header, *rows = result.out.strip().splitlines()
    assert header.split() == ["TIME", "ACTOR", "ACTION", "RESOURCE", "DETAILS"]
    return [row.split(maxsplit=4) for row in rows]


def test_operator_commands_are_logged_and_listed_newest_first(
    server_cli: Callable[..., Result],
) -> None:
    started = utcnow().replace(microsecond=0)
    created = server_cli("create-project", "demo")
    admin = key_id(created.out.strip().splitlines()[-1])
    read = key_id(server_cli("create-key", "demo", "--role", "read").out.strip().splitlines()[-1])
    assert server_cli("revoke-key", read).code == 0
    assert server_cli("set-low-stock-threshold", "demo", "5").code == 0

    rows = audit_rows(server_cli("audit", "demo"))

    assert [row[1:] for row in rows] == [
        ["operator", "set-low-stock-threshold", "pool/(global)", "threshold=5"],
        ["operator", "revoke-key", f"key/{read}", 'role="read"'],
        ["operator", "create-key", f"key/{read}", 'role="read" expire_time=null'],
        ["operator", "create-project", "project/demo", f'admin_key="{admin}"'],
    ]
    for row in rows:
        assert started <= datetime.strptime(row[0], "%Y-%m-%dT%H:%M:%SZ") <= utcnow()
    assert [row[2] for row in audit_rows(server_cli("audit", "demo", "--limit", "2"))] == [
        "set-low-stock-threshold", "revoke-key",
    ]
    future = f"{utcnow() + timedelta(hours=1):%Y-%m-%dT%H:%M:%SZ}"
    assert audit_rows(server_cli("audit", "demo", "--since", future)) == []


def test_times_in_entries_are_rfc3339_utc(server_cli: Callable[..., Result]) -> None:
    server_cli("create-project", "demo")
    expiry = "2031-05-06T07:08:09Z"
    made = server_cli("create-key", "demo", "--role", "read",
                      "--expire-time", "2031-05-06T09:08:09+02:00")
    assert made.code == 0

    newest = audit_rows(server_cli("audit", "demo"))[0]

    assert newest[2] == "create-key"
    assert newest[-1] == f'role="read" expire_time="{expiry}"'


def test_refused_operator_commands_leave_no_entry(server_cli: Callable[..., Result]) -> None:
    server_cli("create-project", "demo")
    before = audit_rows(server_cli("audit", "demo"))
    read = key_id(server_cli("create-key", "demo", "--role", "read").out.strip().splitlines()[-1])
    server_cli("revoke-key", read)
    listed = audit_rows(server_cli("audit", "demo"))

    assert server_cli("create-project", "demo").code == 1  # already exists
    assert server_cli("revoke-key", read).code == 1  # already revoked
    assert server_cli("create-key", "demo", "--role", "read", "--expires-in", "3x").code == 1

    assert len(listed) == len(before) + 2
    assert audit_rows(server_cli("audit", "demo")) == listed


@pytest.mark.parametrize(("args", "message"), [
    (("--since", "yesterday"), "'yesterday' is not an RFC 3339 time"),
    (("--limit", "0"), "must be a whole number of at least 1"),
])
def test_audit_refuses_bad_arguments(
    server_cli: Callable[..., Result], args: tuple[str, ...], message: str
) -> None:
    server_cli("create-project", "demo")

    result = server_cli("audit", "demo", *args)

    assert result.code == 2
    assert message in result.err


def test_audit_of_an_unknown_project_is_an_error(server_cli: Callable[..., Result]) -> None:
    result = server_cli("audit", "nobody")

    assert result.code == 1
    assert "no project named 'nobody'" in result.err
