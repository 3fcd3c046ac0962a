"""Managing API keys: list, revoke, expire, and when each was last used.

The `promo-server` commands run in this process through ``main``; the calls
they affect go to real servers, in-process and in processes of their own.
"""

from __future__ import annotations

import logging
import os
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta

import grpc
import pytest
from peewee import OperationalError

from promo.v1 import promotion_pb2 as pb
from promo.v1 import promotion_pb2_grpc
from promo_server.domain import keys
from promo_server.domain.errors import InvalidArgument
from promo_server.main import main
from promo_server.store import projects
from promo_server.store.db import database, utcnow
from promo_server.store.models import ApiKey
from tests.conftest import Project, Running, bearer, lock_for_writes
from tests.processes import create_project, promo_server, serving
from tests.rpc import error_reason, refused

NOW = datetime(2026, 11, 22, 6, 0, 0)
UNAUTHENTICATED = grpc.StatusCode.UNAUTHENTICATED


@dataclass
class Result:
    code: int
    out: str
    err: str

    @property
    def error(self) -> str:
        """The last line on stderr, after the logs: the command's error."""
        return self.err.strip().splitlines()[-1]


Cli = Callable[..., Result]


@pytest.fixture
def server_cli(db_url: str, capsys: pytest.CaptureFixture[str]) -> Iterator[Cli]:
    """Runs `promo-server ARGS --db <the database under test>`."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level

    def run(*args: str) -> Result:
        code = main([*args, "--db", db_url])
        captured = capsys.readouterr()
        return Result(code, captured.out, captured.err)

    yield run
    # main() points the root logger at this test's captured stderr.
    root.handlers[:] = handlers
    root.setLevel(level)


def key_id(token: str) -> str:
    parsed = keys.parse_token(token)
    assert parsed is not None
    return parsed[0]


def created_key(result: Result) -> str:
    assert result.code == 0, result.err
    return result.out.strip().splitlines()[-1]


def table(result: Result) -> dict[str, dict[str, str]]:
    """The list-keys table: each key id's row by column name."""
    assert result.code == 0, result.err
    header, *rows = result.out.strip().splitlines()
    assert header.split() == ["KEY", "ID", "ROLE", "CREATED", "LAST", "USED", "EXPIRES", "REVOKED"]
    names = ("key_id", "role", "created", "last_used", "expires", "revoked")
    return {cells[0]: dict(zip(names, cells, strict=True))
            for cells in (row.split() for row in rows)}


def list_promotions(channel: grpc.Channel, key: str) -> list[pb.Promotion]:
    stub = promotion_pb2_grpc.PromotionServiceStub(channel)
    return list(stub.ListPromotions(pb.ListPromotionsRequest(), metadata=bearer(key),
                                    timeout=20).promotions)


def stored_keys(project_id: int) -> dict[str, projects.KeyInfo]:
    database.connect(reuse_if_open=True)
    try:
        return {info.key_id: info for info in projects.list_keys(str(project_id))}
    finally:
        database.close()


def wait_for_last_use(project_id: int, token: str) -> datetime:
    """The key's recorded last use, once the server has written it."""
    deadline = time.monotonic() + 10
    while (used := stored_keys(project_id)[key_id(token)].last_used_time) is None:
        assert time.monotonic() < deadline, "the key's use was never recorded"
        time.sleep(0.02)
    return used


def rfc3339(moment: datetime) -> str:
    return f"{moment:%Y-%m-%dT%H:%M:%SZ}"


# Expiry given on the command line.


@pytest.mark.parametrize(
    ("text", "after"),
    [("30d", timedelta(days=30)), ("12h", timedelta(hours=12)), ("90m", timedelta(minutes=90)),
     ("1m", timedelta(minutes=1)), ("999999d", timedelta(days=999999))],
)
def test_expires_in_counts_from_now(text: str, after: timedelta) -> None:
    assert keys.expiry(expires_in=text, expire_time=None, now=NOW) == NOW + after


@pytest.mark.parametrize(
    "text", ["", "30", "d", "0d", "-1d", "1.5h", "10s", "2w", "30D", "30 d", " 30d", "1000000d"]
)
def test_expires_in_must_be_whole_days_hours_or_minutes(text: str) -> None:
    with pytest.raises(InvalidArgument) as raised:
        keys.expiry(expires_in=text, expire_time=None, now=NOW)
    (violation,) = raised.value.violations
    assert violation.field == "--expires-in"
    assert "30d, 12h or 90m" in violation.description


def test_expire_time_is_stored_in_utc() -> None:
    assert keys.expiry(expires_in=None, expire_time="2027-01-31T02:30:00+02:00",
                       now=NOW) == datetime(2027, 1, 31, 0, 30)


@pytest.mark.parametrize(
    ("text", "problem"),
    [("2026-11-22T06:00:00Z", "in the past"), ("2020-01-01T00:00:00Z", "in the past"),
     ("2026-11-22T07:59:59+02:00", "in the past"), ("2027-01-31", "not an RFC 3339 time"),
     ("2027-01-31T00:00:00", "not an RFC 3339 time"), ("tomorrow", "not an RFC 3339 time")],
)
def test_expire_time_must_be_a_future_rfc3339_time(text: str, problem: str) -> None:
    with pytest.raises(InvalidArgument) as raised:
        keys.expiry(expires_in=None, expire_time=text, now=NOW)
    (violation,) = raised.value.violations
    assert violation.field == "--expire-time"
    assert problem in violation.description


def test_no_expiry_means_never() -> None:
    assert keys.expiry(expires_in=None, expire_time=None, now=NOW) is None


# Which uses are recorded.


def test_a_keys_use_is_recorded_once_a_minute_at_most() -> None:
    throttle = keys.UseThrottle(60)

    assert throttle.due("a", 1000.0)
    assert not throttle.due("a", 1000.0)
    assert not throttle.due("a", 1059.9)
    assert throttle.due("b", 1059.9)
    assert throttle.due("a", 1060.0)
    assert not throttle.due("a", 1100.0)
    assert throttle.due("a", 1120.0)


# The commands.


def test_list_keys_shows_every_key_of_the_project_and_no_secret(server_cli: Cli) -> None:
    made = server_cli("create-project", "demo")
    admin = created_key(made)
    before = utcnow().replace(microsecond=0)
    redeem = created_key(server_cli("create-key", "demo", "--role", "redeem",
                                    "--expires-in", "30d"))
    after = utcnow()
    created_key(server_cli("create-project", "other"))

    shown = table(server_cli("list-keys", "demo"))

    assert list(shown) == [key_id(admin), key_id(redeem)]
    assert shown[key_id(admin)] == {
        "key_id": key_id(admin), "role": "admin", "created": shown[key_id(admin)]["created"],
        "last_used": "-", "expires": "-", "revoked": "-",
    }
    assert shown[key_id(redeem)]["role"] == "redeem"
    expires = datetime.strptime(shown[key_id(redeem)]["expires"], "%Y-%m-%dT%H:%M:%SZ")
    assert before + timedelta(days=30) <= expires <= after + timedelta(days=30)
    project_id = made.out.split("(id ")[1].split(")")[0]
    assert table(server_cli("list-keys", project_id)) == shown
    listed = server_cli("list-keys", "demo").out
    for token in (admin, redeem):
        parsed = keys.parse_token(token)
        assert parsed is not None
        assert parsed[1] not in listed  # the secret
    database.connect(reuse_if_open=True)
    for row in ApiKey.select():
        assert row.salt not in listed and row.secret_hash not in listed


def test_a_project_is_found_by_its_name_before_its_id(server_cli: Cli) -> None:
    first = server_cli("create-project", "first")
    first_id = first.out.split("(id ")[1].split(")")[0]
    named_like_it = server_cli("create-project", first_id)  # a name that is the first's id
    own_key = key_id(created_key(named_like_it))

    assert list(table(server_cli("list-keys", first_id))) == [own_key]
    assert list(table(server_cli("list-keys", "first"))) == [key_id(created_key(first))]


def test_list_keys_of_an_unknown_project_is_an_error(server_cli: Cli) -> None:
    result = server_cli("list-keys", "nope")

    assert result.code == 1
    assert result.error == "error: no project named 'nope'"
    assert result.out == ""


def test_create_key_prints_its_expiry(server_cli: Cli) -> None:
    created_key(server_cli("create-project", "demo"))

    made = server_cli("create-key", "demo", "--role", "read",
                      "--expire-time", "2099-01-31T02:30:00+02:00")

    assert "expiring at 2099-01-31T00:30:00Z" in made.out
    token = created_key(made)
    assert table(server_cli("list-keys", "demo"))[key_id(token)]["expires"] == (
        "2099-01-31T00:30:00Z"
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--expires-in", "30s"), "error: --expires-in: '30s' is not a duration: give a whole "
                                  "number of days, hours or minutes, like 30d, 12h or 90m"),
        (("--expire-time", "2020-01-01T00:00:00Z"),
         "error: --expire-time: 2020-01-01T00:00:00Z is in the past"),
        (("--expire-time", "2099-01-31"),
         "error: --expire-time: '2099-01-31' is not an RFC 3339 time with its offset, "
         "like 2027-01-31T00:00:00Z"),
    ],
)
def test_a_bad_expiry_creates_no_key(server_cli: Cli, args: tuple[str, ...], message: str) -> None:
    admin = created_key(server_cli("create-project", "demo"))

    result = server_cli("create-key", "demo", "--role", "read", *args)

    assert result.code == 1
    assert result.error == message
    assert list(table(server_cli("list-keys", "demo"))) == [key_id(admin)]


def test_expires_in_and_expire_time_together_are_refused(server_cli: Cli) -> None:
    created_key(server_cli("create-project", "demo"))

    with pytest.raises(SystemExit) as exited:
        server_cli("create-key", "demo", "--role", "read", "--expires-in", "1d",
                   "--expire-time", "2099-01-01T00:00:00Z")

    assert exited.value.code == 2


def test_revoke_key_once(server_cli: Cli) -> None:
    admin = created_key(server_cli("create-project", "demo"))
    read = created_key(server_cli("create-key", "demo", "--role", "read"))
    before = utcnow().replace(microsecond=0)

    revoked = server_cli("revoke-key", key_id(read))

    assert revoked.code == 0, revoked.err
    assert revoked.out.startswith(f"read key {key_id(read)} revoked at ")
    shown = table(server_cli("list-keys", "demo"))
    assert before <= datetime.strptime(shown[key_id(read)]["revoked"], "%Y-%m-%dT%H:%M:%SZ")
    assert shown[key_id(admin)]["revoked"] == "-"

    again = server_cli("revoke-key", key_id(read))

    assert again.code == 1
    assert again.error == (
        f"error: key {key_id(read)} is already revoked (since {shown[key_id(read)]['revoked']})"
    )
    assert table(server_cli("list-keys", "demo")) == shown


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ("0123456789abcdef", "error: no key with id '0123456789abcdef'"),
        ("demo", "error: key_id: must be a key id: the 16 hex digits after 'promo_' "
                 "that list-keys shows"),
        ("promo_0123456789abcdef_" + "A" * 43, "error: key_id: must be a key id: the 16 hex "
                                                "digits after 'promo_' that list-keys shows"),
    ],
)
def test_revoke_key_of_no_key_is_an_error(server_cli: Cli, given: str, message: str) -> None:
    admin = created_key(server_cli("create-project", "demo"))

    result = server_cli("revoke-key", given)

    assert result.code == 1
    assert result.error == message
    assert table(server_cli("list-keys", "demo"))[key_id(admin)]["revoked"] == "-"


# What the servers do with it.


def operator(db_url: str, *args: str) -> Result:
    """`promo-server ARGS` in a process of its own, as an operator runs it beside a server.

    Not main() in this process: it would open the database anew under the
    in-process server's feet (one database handle per process).
    """
    env = {**os.environ, "PROMO_DATABASE_URL": db_url}
    done = subprocess.run(promo_server(*args), env=env, capture_output=True, text=True,
                          timeout=60)
    return Result(done.returncode, done.stdout, done.stderr)


def test_a_revoked_key_is_refused_at_once(running: Running, project: Project) -> None:
    with running.channel() as channel:
        assert list_promotions(channel, project.read_key) == []

        assert operator(running.db_url, "revoke-key", key_id(project.read_key)).code == 0

        error = refused(lambda: list_promotions(channel, project.read_key), UNAUTHENTICATED)
        assert error.details() == "this API key has been revoked"
        assert error_reason(error) == ("promo.v1", "API_KEY_REVOKED")
        assert list_promotions(channel, project.admin_key) == []


def test_an_expired_key_is_refused_saying_so(running: Running, project: Project) -> None:
    token = created_key(operator(running.db_url, "create-key", str(project.id), "--role", "read",
                                 "--expires-in", "90m"))
    with running.channel() as channel:
        assert list_promotions(channel, token) == []
        # Let the 90 minutes pass.
        expired = (utcnow() - timedelta(seconds=1)).replace(microsecond=0)
        database.connect(reuse_if_open=True)
        ApiKey.update(expire_time=expired).where(ApiKey.key_id == key_id(token)).execute()
        database.close()

        error = refused(lambda: list_promotions(channel, token), UNAUTHENTICATED)
        assert error.details() == f"this API key expired at {rfc3339(expired)}"
        assert error_reason(error) == ("promo.v1", "API_KEY_EXPIRED")
        assert list_promotions(channel, project.admin_key) == []


def test_a_revoked_key_is_refused_by_every_server_process(db_url: str, server_cli: Cli) -> None:
    admin = create_project(db_url)
    read = created_key(server_cli("create-key", "demo", "--role", "read"))
    with serving(db_url) as (_, first), serving(db_url) as (_, second):
        channels = [grpc.insecure_channel(target) for target in (first, second)]
        try:
            for channel in channels:
                assert list_promotions(channel, read) == []

            assert server_cli("revoke-key", key_id(read)).code == 0

            for channel in channels:
                error = refused(lambda c=channel: list_promotions(c, read), UNAUTHENTICATED)
                assert error.details() == "this API key has been revoked"
                assert list_promotions(channel, admin) == []
        finally:
            for channel in channels:
                channel.close()


def test_a_keys_last_use_is_recorded(running: Running, project: Project) -> None:
    assert stored_keys(project.id)[key_id(project.read_key)].last_used_time is None
    before = utcnow()
    with running.channel() as channel:
        list_promotions(channel, project.read_key)
    after = utcnow()

    used = wait_for_last_use(project.id, project.read_key)

    assert before <= used <= after
    unused = stored_keys(project.id)
    assert unused[key_id(project.redeem_key)].last_used_time is None
    assert unused[key_id(project.admin_key)].last_used_time is None


def test_a_call_does_not_wait_for_its_use_to_be_written(
    running: Running, project: Project
) -> None:
    blocker = lock_for_writes(running.db_url, "api_key")
    try:
        with running.channel() as channel:
            assert list_promotions(channel, project.read_key) == []
    finally:
        blocker.rollback()
        blocker.close()

    assert wait_for_last_use(project.id, project.read_key)


def test_a_use_that_cannot_be_written_is_logged_and_the_call_answered(
    running: Running, project: Project, monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    def fail(key_id: str, used: datetime) -> None:
        raise OperationalError("database is locked")

    monkeypatch.setattr(projects, "record_key_use", fail)
    with running.channel() as channel:
        assert list_promotions(channel, project.read_key) == []

    deadline = time.monotonic() + 10
    expected = f"key use not recorded key_id={key_id(project.read_key)} error=database is locked"
    while expected not in caplog.messages:
        assert time.monotonic() < deadline, caplog.messages
        time.sleep(0.02)
    assert stored_keys(project.id)[key_id(project.read_key)].last_used_time is None
