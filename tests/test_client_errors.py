"""The client's typed errors, retry config and CLI failure lines, without the real server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator, Sequence
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
import pytest
from click.testing import CliRunner
from google.protobuf import any_pb2, duration_pb2, message
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from promo import errors
from promo.cli import cli
from promo.client import SERVICE_CONFIG, PromoClient
from promo.v1 import code_pb2 as promo_code_pb2
from promo.v1 import profile_pb2, promotion_pb2, promotion_pb2_grpc
from tests.conftest import Running

_SERVICES = {
    service.full_name: service
    for module in (promotion_pb2, promo_code_pb2, profile_pb2)
    for service in module.DESCRIPTOR.services_by_name.values()
}


class _FakeRpcError(grpc.RpcError, grpc.Call):
    """What a failed unary call raises, as grpc builds it from a server's status."""

    def __init__(self, status: grpc.Status) -> None:
        self._status = status

    def code(self) -> grpc.StatusCode:
        return self._status.code

    def details(self) -> str:
        return self._status.details

    def trailing_metadata(self) -> Any:
        return self._status.trailing_metadata

    def initial_metadata(self) -> Any:
        return ()

    def is_active(self) -> bool:
        return False

    def time_remaining(self) -> float | None:
        return None

    def cancel(self) -> bool:
        return False

    def add_callback(self, callback: Callable[[], None]) -> bool:
        return False


class _Status(grpc.Status):
    def __init__(self, code: grpc.StatusCode, details: str, trailing_metadata: Any) -> None:
        self.code = code
        self.details = details
        self.trailing_metadata = trailing_metadata


def _pack(detail: message.Message) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(detail)
    return packed


def _rich_status(code: int, text: str, details: Sequence[message.Message] = ()) -> grpc.Status:
    status = status_pb2.Status(code=code, message=text, details=[_pack(d) for d in details])
    return rpc_status.to_status(status)


def _bad_request(*violations: tuple[str, str]) -> error_details_pb2.BadRequest:
    return error_details_pb2.BadRequest(
        field_violations=[
            error_details_pb2.BadRequest.FieldViolation(field=field, description=why)
            for field, why in violations
        ]
    )


def _error_info(reason: str) -> error_details_pb2.ErrorInfo:
    return error_details_pb2.ErrorInfo(reason=reason, domain="promo.v1")


def test_bad_request_lists_every_field_violation() -> None:
    violations = [
        ("promotion.name", "at least one entry is required"),
        ("promotion.end_time", "must be after start_time"),
    ]
    status = _rich_status(
        code_pb2.INVALID_ARGUMENT,
        "invalid promotion",
        [_bad_request(*violations), _error_info("INVALID_PROMOTION")],
    )

    exc = errors.from_rpc_error(_FakeRpcError(status))

    assert isinstance(exc, errors.InvalidArgument)
    assert exc.code is grpc.StatusCode.INVALID_ARGUMENT
    assert exc.message == "invalid promotion"
    assert exc.reason == "INVALID_PROMOTION"
    assert exc.field_violations == violations
    assert exc.retry_delay is None
    assert str(exc) == (
        "INVALID_ARGUMENT INVALID_PROMOTION: promotion.name: at least one entry is required;"
        " promotion.end_time: must be after start_time"
    )


def test_error_info_reason_leads_the_message() -> None:
    status = _rich_status(
        code_pb2.FAILED_PRECONDITION, "code SALE-1 expired", [_error_info("CODE_EXPIRED")]
    )

    exc = errors.from_rpc_error(_FakeRpcError(status))

    assert type(exc) is errors.FailedPrecondition
    assert exc.reason == "CODE_EXPIRED"
    assert exc.field_violations == []
    assert str(exc) == "FAILED_PRECONDITION CODE_EXPIRED: code SALE-1 expired"


def test_retry_info_gives_the_delay_in_seconds() -> None:
    retry = error_details_pb2.RetryInfo(
        retry_delay=duration_pb2.Duration(seconds=1, nanos=500_000_000)
    )
    status = _rich_status(
        code_pb2.RESOURCE_EXHAUSTED, "pool empty", [_error_info("POOL_EMPTY"), retry]
    )

    exc = errors.from_rpc_error(_FakeRpcError(status))

    assert isinstance(exc, errors.ResourceExhausted)
    assert exc.retry_delay == 1.5


def test_a_plain_status_has_no_details() -> None:
    status = _Status(grpc.StatusCode.NOT_FOUND, "promotion 'x' not found\n", ())

    exc = errors.from_rpc_error(_FakeRpcError(status))

    assert isinstance(exc, errors.NotFound)
    assert (exc.reason, exc.field_violations, exc.retry_delay) == ("", [], None)
    assert str(exc) == "NOT_FOUND: promotion 'x' not found"


def test_details_contradicting_the_status_are_ignored() -> None:
    rich = _rich_status(code_pb2.NOT_FOUND, "gone", [_error_info("CODE_RETIRED")])
    rewritten = _Status(grpc.StatusCode.UNAVAILABLE, "proxy down", rich.trailing_metadata)

    exc = errors.from_rpc_error(_FakeRpcError(rewritten))

    assert isinstance(exc, errors.Unavailable)
    assert exc.reason == ""
    assert str(exc) == "UNAVAILABLE: proxy down"


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        (grpc.StatusCode.ALREADY_EXISTS, errors.AlreadyExists),
        (grpc.StatusCode.PERMISSION_DENIED, errors.PermissionDenied),
        (grpc.StatusCode.UNAUTHENTICATED, errors.Unauthenticated),
        (grpc.StatusCode.ABORTED, errors.Aborted),
        (grpc.StatusCode.DEADLINE_EXCEEDED, errors.DeadlineExceeded),
        (grpc.StatusCode.UNIMPLEMENTED, errors.Unimplemented),
        (grpc.StatusCode.INTERNAL, errors.Internal),
        (grpc.StatusCode.UNKNOWN, errors.Unknown),
        (grpc.StatusCode.CANCELLED, errors.Cancelled),
        (grpc.StatusCode.OUT_OF_RANGE, errors.OutOfRange),
        (grpc.StatusCode.DATA_LOSS, errors.DataLoss),
    ],
)
def test_each_status_has_its_class(
    code: grpc.StatusCode, expected: type[errors.PromoError]
) -> None:
    exc = errors.from_rpc_error(_FakeRpcError(_Status(code, "", ())))

    assert type(exc) is expected
    assert str(exc) == code.name


def test_the_promo_command_shows_one_line_for_a_failed_tls_handshake(
    running: Running,
) -> None:
    done = subprocess.run(
        [sys.executable, "-c", "from promo.entry import main; main()", "--target",
         running.target, "--api-key", "k", "promotions", "get", "p"],
        env={**os.environ, "PROMO_TLS": "1"}, capture_output=True, text=True, timeout=60,
    )

    assert done.returncode == 1
    assert len(done.stderr.splitlines()) == 1, done.stderr
    assert done.stderr.startswith("error: UNAVAILABLE: ")


def _retried_methods() -> list[dict[str, str]]:
    config = json.loads(SERVICE_CONFIG)
    (method_config,) = config["methodConfig"]
    return method_config["name"]


def test_service_config_names_only_existing_methods() -> None:
    for name in _retried_methods():
        service = _SERVICES[name["service"]]
        assert name["method"] in service.methods_by_name, name


def test_service_config_retries_unavailable_with_backoff() -> None:
    (method_config,) = json.loads(SERVICE_CONFIG)["methodConfig"]

    assert method_config["retryPolicy"] == {
        "maxAttempts": 5,
        "initialBackoff": "0.1s",
        "maxBackoff": "2s",
        "backoffMultiplier": 2,
        "retryableStatusCodes": ["UNAVAILABLE"],
    }


def test_service_config_does_not_retry_calls_that_are_not_idempotent() -> None:
    retried = {(name["service"], name["method"]) for name in _retried_methods()}

    for method in ("CreatePromotion", "ImportCodes", "GenerateCodes", "AttachCode"):
        service = next(s for s in _SERVICES.values() if method in s.methods_by_name)
        assert (service.full_name, method) not in retried


class _RefusingPromotions(promotion_pb2_grpc.PromotionServiceServicer):
    """Refuses every GetPromotion and CreatePromotion, and the first two ListPromotions."""

    def __init__(self) -> None:
        self.metadata: list[dict[str, str]] = []
        self.calls = {"CreatePromotion": 0, "ListPromotions": 0}

    def CreatePromotion(
        self, request: promotion_pb2.CreatePromotionRequest, context: grpc.ServicerContext
    ) -> promotion_pb2.Promotion:
        self.calls["CreatePromotion"] += 1
        context.abort(grpc.StatusCode.UNAVAILABLE, "warming up")
        raise AssertionError("abort returns by raising")

    def ListPromotions(
        self, request: promotion_pb2.ListPromotionsRequest, context: grpc.ServicerContext
    ) -> promotion_pb2.ListPromotionsResponse:
        self.calls["ListPromotions"] += 1
        if self.calls["ListPromotions"] <= 2:
            context.abort(grpc.StatusCode.UNAVAILABLE, "warming up")
        return promotion_pb2.ListPromotionsResponse()

    def GetPromotion(
        self, request: promotion_pb2.GetPromotionRequest, context: grpc.ServicerContext
    ) -> promotion_pb2.Promotion:
        self.metadata.append(dict(context.invocation_metadata()))
        status = status_pb2.Status(
            code=code_pb2.FAILED_PRECONDITION,
            message=f"promotion {request.external_id} ended",
            details=[_pack(_error_info("PROMOTION_ENDED"))],
        )
        context.abort_with_status(rpc_status.to_status(status))
        raise AssertionError("abort_with_status returns by raising")


@pytest.fixture
def refusing_server() -> Iterator[tuple[str, _RefusingPromotions]]:
    servicer = _RefusingPromotions()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    promotion_pb2_grpc.add_PromotionServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield f"127.0.0.1:{port}", servicer
    server.stop(grace=None)


def test_client_sends_the_key_and_raises_the_typed_error(
    refusing_server: tuple[str, _RefusingPromotions],
) -> None:
    target, servicer = refusing_server

    with (
        PromoClient(target, "secret-key") as client,
        pytest.raises(errors.FailedPrecondition) as raised,
    ):
        client.get_promotion("summer-sale")

    assert raised.value.reason == "PROMOTION_ENDED"
    assert servicer.metadata[0]["authorization"] == "Bearer secret-key"
    assert "secret-key" not in repr(client)


def test_client_without_a_key_sends_no_authorization(
    refusing_server: tuple[str, _RefusingPromotions], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PROMO_API_KEY", raising=False)
    target, servicer = refusing_server

    with PromoClient(target) as client, pytest.raises(errors.FailedPrecondition):
        client.get_promotion("summer-sale")

    assert "authorization" not in servicer.metadata[0]


def test_client_sends_a_key_without_the_line_break_a_key_file_ends_with(
    refusing_server: tuple[str, _RefusingPromotions],
) -> None:
    target, servicer = refusing_server

    with PromoClient(target, "secret-key\n") as client, pytest.raises(errors.FailedPrecondition):
        client.get_promotion("summer-sale")

    assert servicer.metadata[0]["authorization"] == "Bearer secret-key"


@pytest.mark.parametrize("key", ["ключ", "two words", "a\tb"])
def test_a_key_no_server_could_accept_is_refused_before_any_call(key: str) -> None:
    with pytest.raises(ValueError, match="PROMO_API_KEY"):
        PromoClient("127.0.0.1:1", key)

    result = CliRunner().invoke(cli, ["--target", "127.0.0.1:1", "--api-key", key,
                                      "promotions", "get", "summer-sale"])

    assert result.exit_code == 1
    assert result.stderr.startswith("error: the API key holds a character no key has")
    assert len(result.stderr.splitlines()) == 1


@pytest.mark.parametrize(("closed", "args"), [
    ("stdin", ["promotions", "create", "--file", "-"]),
    ("stdin", ["codes", "import", "-", "--promotion", "p"]),
    ("stdout", ["promotions", "list"]),
    ("stdout", ["codes", "export", "--promotion", "p"]),
])
def test_the_promo_command_names_a_closed_standard_stream(closed: str, args: list[str]) -> None:
    done = subprocess.run(
        [sys.executable, "-c", "from promo.entry import main; main()",
         "--target", "127.0.0.1:1", "--api-key", "k", *args],
        stdin=None if closed == "stdout" else subprocess.DEVNULL,
        capture_output=closed != "stdout", text=True, timeout=60,
        preexec_fn=lambda: os.close(0 if closed == "stdin" else 1),
        **({"stderr": subprocess.PIPE} if closed == "stdout" else {}),
    )

    assert done.returncode == 1
    assert done.stderr.splitlines() == [
        "error: <stdin>: cannot read: standard input is closed" if closed == "stdin" else
        "error: standard output is closed: promo prints its answers there "
        "(redirect it to /dev/null to drop them)"
    ]


def test_client_retries_idempotent_calls_after_unavailable(
    refusing_server: tuple[str, _RefusingPromotions],
) -> None:
    target, servicer = refusing_server

    with PromoClient(target, "k") as client:
        client.list_promotions()

    assert servicer.calls["ListPromotions"] == 3


def test_client_does_not_retry_a_create(
    refusing_server: tuple[str, _RefusingPromotions],
) -> None:
    target, servicer = refusing_server

    with PromoClient(target, "k") as client, pytest.raises(errors.Unavailable):
        client.create_promotion({"externalId": "summer-sale", "name": {"en-US": "Summer"}})

    assert servicer.calls["CreatePromotion"] == 1


def test_cli_prints_one_error_line_for_a_refused_call(
    refusing_server: tuple[str, _RefusingPromotions],
) -> None:
    target, _ = refusing_server

    result = CliRunner().invoke(
        cli, ["--target", target, "--api-key", "k", "promotions", "get", "summer-sale"]
    )

    assert result.exit_code == 1
    assert result.stdout == ""
    assert (
        result.stderr == "error: FAILED_PRECONDITION PROMOTION_ENDED: promotion summer-sale ended\n"
    )


def test_cli_names_a_file_that_cannot_be_read(tmp_path: Path) -> None:
    missing = tmp_path / "missing.json"

    result = CliRunner().invoke(cli, ["promotions", "create", "--file", str(missing)])

    assert result.exit_code == 1
    assert result.stderr == f"error: {missing}: cannot read: No such file or directory\n"


@pytest.mark.parametrize(
    ("content", "complaint"),
    [
        ("{not json", "not valid JSON"),
        ("[]", "expected a JSON object"),
        ('{"discount": {"percent": 10}}', "not a Promotion"),
        ('{"nope": 1}', "not a Promotion"),
    ],
)
def test_cli_names_a_file_that_does_not_parse(tmp_path: Path, content: str, complaint: str) -> None:
    path = tmp_path / "promotion.json"
    path.write_text(content)

    result = CliRunner().invoke(cli, ["promotions", "update", "x", "--file", str(path)])

    assert result.exit_code == 1
    assert result.stderr.startswith(f"error: {path}: ")
    assert complaint in result.stderr
    assert result.stderr.count("\n") == 1


def test_cli_reads_stdin_for_a_dash() -> None:
    result = CliRunner().invoke(cli, ["promotions", "create", "--file", "-"], input="oops")

    assert result.exit_code == 1
    assert result.stderr.startswith("error: <stdin>: not valid JSON")
