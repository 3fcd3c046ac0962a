"""Page sizes and tokens, API keys, URL redaction and RFC 3339 times, as plain functions."""

from __future__ import annotations

import base64
import json
import string
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from promo_server.config import redact_url
from promo_server.domain import pagination
from promo_server.domain.errors import InvalidArgument
from promo_server.domain.keys import make_key, parse_token, secret_matches
from promo_server.domain.values import parse_rfc3339

QUERY_PARTS = st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=20))
QUERIES = st.lists(QUERY_PARTS, max_size=4).map(tuple)
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=10,
)


def b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode()


def b64_json(value: object) -> str:
    return b64(json.dumps(value).encode())


def refused_field(token: str, query: object) -> str:
    with pytest.raises(InvalidArgument) as raised:
        pagination.decode(token, query)
    (violation,) = raised.value.violations
    return violation.field


def tampered(token: str, after: object) -> str:
    payload = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    return b64_json({**payload, "a": after})


@pytest.mark.parametrize(
    ("requested", "granted"),
    [(0, 50), (1, 1), (50, 50), (999, 999), (1000, 1000), (1001, 1000), (5000, 1000)],
)
def test_page_size_defaults_to_50_and_is_clamped_to_1000(requested: int, granted: int) -> None:
    assert pagination.page_size(requested) == granted


@pytest.mark.parametrize("requested", [-1, -1000])
def test_a_negative_page_size_is_refused(requested: int) -> None:
    with pytest.raises(InvalidArgument) as raised:
        pagination.page_size(requested)

    assert [v.field for v in raised.value.violations] == ["page_size"]


def test_no_token_means_the_first_page() -> None:
    assert pagination.decode("", ("promotions", 1, None)) is None


@given(after=st.integers(), query=QUERIES)
def test_a_token_leads_back_to_where_its_page_ended(after: int, query: tuple[object, ...]) -> None:
    token = pagination.encode(after, query)

    assert token
    assert set(token) <= set(string.ascii_letters + string.digits + "-_")
    assert pagination.decode(token, query) == pagination.Cursor(after)


@given(after=st.integers(), query=QUERIES, other=QUERIES)
def test_a_token_of_another_query_is_refused(
    after: int, query: tuple[object, ...], other: tuple[object, ...]
) -> None:
    assume(query != other)

    assert refused_field(pagination.encode(after, query), other) == "page_token"


def test_a_token_of_another_project_or_filter_is_refused() -> None:
    token = pagination.encode(41, ("promotions", 1, "ACTIVE"))

    assert refused_field(token, ("promotions", 2, "ACTIVE")) == "page_token"
    assert refused_field(token, ("promotions", 1, None)) == "page_token"


@given(
    token=st.one_of(
        st.text(min_size=1),
        st.text(alphabet="!@#$%^&*()[]{} \n\t", min_size=1),
        st.binary(min_size=1).map(b64),
        JSON.map(b64_json),
        st.lists(JSON).map(b64_json),
    ),
    query=QUERIES,
)
def test_a_garbage_token_is_refused_as_an_invalid_argument(
    token: str, query: tuple[object, ...]
) -> None:
    assert refused_field(token, query) == "page_token"


@pytest.mark.parametrize(
    "token",
    [
        "not a token",
        "%%%",
        "é",
        b64(b"\xff\xfe\x00garbage"),
        b64(b"not json"),
        b64_json([1, 2, 3]),
        b64_json([]),
        b64_json("a string"),
        b64_json(7),
        b64_json(None),
        b64_json({"a": True}),
        b64_json({"a": 1}),
        b64_json({"q": "0123456789abcdef"}),
        b64_json({"a": 1, "q": ["not", "a", "fingerprint"]}),
        b64(b'{"a": 1e999, "q": "x"}'),
        b64(b'{"a": NaN}'),
    ],
)
def test_a_malformed_token_is_refused_as_an_invalid_argument(token: str) -> None:
    assert refused_field(token, ("promotions", 1, None)) == "page_token"


@pytest.mark.parametrize("after", [True, "41", 41.0, None, [41], {"a": 41}])
def test_a_token_with_a_tampered_position_is_refused(after: object) -> None:
    query = ("promotions", 1, None)
    token = tampered(pagination.encode(41, query), after)

    assert refused_field(token, query) == "page_token"


@pytest.mark.parametrize("nesting", [b"[" * 100_000, b'{"a":' * 100_000])
def test_a_deeply_nested_token_is_refused_as_an_invalid_argument(nesting: bytes) -> None:
    assert refused_field(b64(nesting), ("promotions", 1, None)) == "page_token"


def test_a_new_key_parses_back_to_its_id_and_secret() -> None:
    key = make_key()

    parsed = parse_token(key.token)

    assert parsed is not None
    key_id, secret = parsed
    assert key_id == key.key_id
    assert key.token == f"promo_{key_id}_{secret}"
    assert secret_matches(key.salt, secret, key.secret_hash)


def test_a_changed_secret_does_not_match() -> None:
    key = make_key()
    parsed = parse_token(key.token)
    assert parsed is not None
    _, secret = parsed
    changed = secret[:-1] + ("A" if secret[-1] != "A" else "B")

    assert not secret_matches(key.salt, changed, key.secret_hash)
    assert not secret_matches(key.salt, secret[:-1], key.secret_hash)
    assert not secret_matches(key.salt, "", key.secret_hash)


def test_a_secret_matches_only_its_own_key() -> None:
    first, second = make_key(), make_key()
    parsed = parse_token(first.token)
    assert parsed is not None
    _, secret = parsed

    assert not secret_matches(second.salt, secret, second.secret_hash)
    assert not secret_matches(second.salt, secret, first.secret_hash)


def test_keys_are_unique_across_1000_calls() -> None:
    keys = [make_key() for _ in range(1000)]

    assert len({k.token for k in keys}) == 1000
    assert len({k.key_id for k in keys}) == 1000
    assert len({k.salt for k in keys}) == 1000
    assert len({k.secret_hash for k in keys}) == 1000


def test_what_is_stored_never_contains_the_secret() -> None:
    for _ in range(100):
        key = make_key()
        parsed = parse_token(key.token)
        assert parsed is not None
        _, secret = parsed

        assert secret not in key.secret_hash
        assert secret not in key.salt
        assert key.token not in key.secret_hash


@given(token=st.text(max_size=65) | st.text(min_size=67))
def test_text_of_any_other_length_is_not_a_key(token: str) -> None:
    assert parse_token(token) is None


@given(token=st.text(min_size=66, max_size=66))
def test_arbitrary_text_is_not_a_key(token: str) -> None:
    assume(not token.startswith("promo_"))

    assert parse_token(token) is None


def _malformed_variants() -> list[str]:
    token = make_key().token
    _, key_id, secret = token.split("_", 2)
    return [
        f"Promo_{key_id}_{secret}",
        f"key_{key_id}_{secret}",
        f"promo_0123456789ABCDEF_{secret}",
        f"promo_{key_id[:-1]}_{secret}",
        f"promo_{key_id}{secret}",
        f"promo_{key_id}_{secret[:-1]}",
        f"promo_{key_id}_{secret}A",
        f"promo_{key_id}_{secret[:-1]}=",
        f"promo_{key_id}_{secret[:-1]}+",
        f"{token}\n",
        f" {token}",
        f"Bearer {token}",
        "",
    ]


@pytest.mark.parametrize("token", _malformed_variants())
def test_a_malformed_key_is_not_a_key(token: str) -> None:
    assert parse_token(token) is None


@pytest.mark.parametrize(
    ("url", "redacted"),
    [
        (
            "postgresql://promo:s3cret@db.example.com:5432/promo",
            "postgresql://promo:***@db.example.com:5432/promo",
        ),
        ("postgres://promo:s3cret@localhost/promo", "postgres://promo:***@localhost/promo"),
        (
            "postgresql+pool://promo:s3cret@db/promo?max_connections=20",
            "postgresql+pool://promo:***@db/promo?max_connections=20",
        ),
        ("postgresql://promo:p@ss:w0rd@db/promo", "postgresql://promo:***@db/promo"),
        ("postgresql://:s3cret@db/promo", "postgresql://:***@db/promo"),
        ("postgresql://promo:p?ss@db/promo", "postgresql://promo:***@db/promo"),
        (
            "postgresql://promo@db/promo?sslmode=require&password=s3cret&a=1",
            "postgresql://promo@db/promo?sslmode=require&password=***&a=1",
        ),
        ("sqlite:///promo.db", "sqlite:///promo.db"),
        (
            "postgresql://promo@db.internal:5432/promo?password=x@Hunter2-Secret",
            "postgresql://promo@db.internal:5432/promo?password=***",
        ),
    ],
)
def test_redact_url_hides_the_password(url: str, redacted: str) -> None:
    assert redact_url(url) == redacted


@given(password=st.text(min_size=1))
def test_redact_url_hides_any_password(password: str) -> None:
    url = f"postgresql://promo:{password}@db.internal:5432/promo"

    assert redact_url(url) == "postgresql://promo:***@db.internal:5432/promo"


@pytest.mark.parametrize(
    "url",
    [
        "sqlite:///promo.db",
        "sqlite:////var/lib/promo/promo.db",
        "sqlite:///:memory:",
        "postgresql://postgres@127.0.0.1:5432/test",
        "postgresql://db.internal/promo",
    ],
)
def test_redact_url_leaves_urls_without_a_password_unchanged(url: str) -> None:
    assert redact_url(url) == url


@pytest.mark.parametrize(
    ("text", "moment"),
    [
        ("2026-01-31T10:00:00Z", datetime(2026, 1, 31, 10, tzinfo=UTC)),
        ("2026-01-31T10:00:00+02:00", datetime(2026, 1, 31, 8, tzinfo=UTC)),
        ("2026-01-31T10:00:00-05:30", datetime(2026, 1, 31, 15, 30, tzinfo=UTC)),
        ("2026-01-31T10:00:00.250Z", datetime(2026, 1, 31, 10, 0, 0, 250_000, tzinfo=UTC)),
        ("2026-01-31t10:00:00z", datetime(2026, 1, 31, 10, tzinfo=UTC)),
    ],
)
def test_parse_rfc3339_reads_a_moment_with_its_offset(text: str, moment: datetime) -> None:
    parsed = parse_rfc3339(text)

    assert parsed == moment
    assert parsed is not None and parsed.utcoffset() is not None


def test_parse_rfc3339_keeps_the_offset() -> None:
    parsed = parse_rfc3339("2026-01-31T10:00:00+02:00")

    assert parsed is not None
    assert parsed.hour == 10
    assert parsed.utcoffset() == timedelta(hours=2)


@pytest.mark.parametrize(
    "text",
    [
        "2026-01-31",
        "2026-01-31T10:00:00",
        "yesterday",
        "",
        "2026-13-01T10:00:00Z",
        "2026-02-30T10:00:00Z",
        "2026-01-31T25:00:00Z",
        "2026-01-31 10:00:00",
        "2026-01-31T10:00Z",
        "20260131T100000Z",
        "2026-01-31T10:00:00+0200",
        "2026-W05-6T10:00:00Z",
    ],
)
def test_parse_rfc3339_refuses_anything_else(text: str) -> None:
    assert parse_rfc3339(text) is None
