"""Code patterns of GenerateCodes, as plain functions: what parse refuses, what generate makes."""

from __future__ import annotations

import itertools
import string
from collections import Counter
from collections.abc import Callable, Iterable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from promo_server.domain import patterns
from promo_server.domain.errors import InvalidArgument

# What each placeholder may become; letters are capitals only.
PLACEHOLDERS = {
    "#": string.digits,
    "?": string.ascii_uppercase,
    "*": string.digits + string.ascii_uppercase,
}
LITERALS = string.ascii_letters + string.digits + "_.-"


def refused(text: str, count: int) -> list[tuple[str, str]]:
    with pytest.raises(InvalidArgument) as raised:
        patterns.parse(text, count)
    return [(violation.field, violation.description) for violation in raised.value.violations]


def byte_source(values: Iterable[int]) -> Callable[[int], bytes]:
    """A stand-in for os.urandom that hands out ``values`` in order, as many as asked."""
    source = iter(values)

    def random_bytes(size: int) -> bytes:
        return bytes(itertools.islice(source, size))

    return random_bytes


def every_byte_value_in_turn() -> Callable[[int], bytes]:
    return byte_source(itertools.cycle(range(256)))


# ---------------------------------------------------------------- parse


@pytest.mark.parametrize(
    ("text", "word"),
    [
        ("", "1..64"),
        ("#" * 65, "1..64"),
        ("A" * 64 + "#", "1..64"),
        ("ABC", "placeholder"),
        ("a-b_c.9", "placeholder"),
        ("AB #", "literal"),
        ("é#", "literal"),
        ("#\n", "literal"),
        ("A/#", "literal"),
        ("A,#", "literal"),
        ('"#"', "literal"),
        ("\uff21#", "literal"),
    ],
)
def test_parse_refuses_a_malformed_pattern(text: str, word: str) -> None:
    ((field, description),) = refused(text, 1)

    assert field == "pattern"
    assert word in description


@pytest.mark.parametrize(
    ("text", "count", "word"),
    [
        ("*" * 10, 0, "1..10,000,000"),
        ("*" * 10, -1, "1..10,000,000"),
        ("*" * 10, 10_000_001, "1..10,000,000"),
        ("#", 6, "at most 5"),
        ("##", 51, "at most 50"),
        ("?", 14, "at most 13"),
        ("AB-#", 6, "10 different codes"),
    ],
)
def test_parse_refuses_a_count_out_of_range_or_over_half_the_pattern(
    text: str, count: int, word: str
) -> None:
    ((field, description),) = refused(text, count)

    assert field == "count"
    assert word in description


def test_parse_reports_a_bad_pattern_and_a_bad_count_together() -> None:
    assert [field for field, _ in refused("", 0)] == ["pattern", "count"]


@pytest.mark.parametrize(
    ("text", "count"),
    [
        ("#", 5),
        ("##", 50),
        ("?", 13),
        ("a-B_c.#", 1),
        ("*" * 64, 10_000_000),
        ("*" * 5, 10_000_000),
    ],
)
def test_parse_accepts_up_to_half_the_pattern_and_ten_million(text: str, count: int) -> None:
    assert patterns.parse(text, count).text == text


@pytest.mark.parametrize(
    ("text", "space"),
    [
        ("#", 10),
        ("##", 100),
        ("?", 26),
        ("*", 36),
        ("AB-#?*", 10 * 26 * 36),
        ("X-####", 10_000),
        ("*" * 64, 36**64),
    ],
)
def test_space_is_the_number_of_codes_a_pattern_can_make(text: str, space: int) -> None:
    assert patterns.parse(text, 1).space == space


# ---------------------------------------------------------------- generate


@st.composite
def pattern_texts(draw: st.DrawFn) -> str:
    chars = draw(st.lists(st.sampled_from("#?*" + LITERALS), max_size=19))
    at = draw(st.integers(0, len(chars)))
    chars.insert(at, draw(st.sampled_from("#?*")))
    return "".join(chars)


@settings(max_examples=200, deadline=None)
@given(text=pattern_texts(), data=st.data())
def test_generated_codes_match_their_pattern_position_by_position(
    text: str, data: st.DataObject
) -> None:
    space = patterns.Pattern(text).space
    count = data.draw(st.integers(1, min(500, space // 2)))

    codes = patterns.generate(patterns.parse(text, count), count)

    assert len(codes) == count
    for code in codes:
        assert len(code) == len(text)
        for char, made in zip(text, code, strict=True):
            assert made in PLACEHOLDERS.get(char, char)


@pytest.mark.parametrize(("text", "count"), [("#", 5000), ("?", 26 * 200), ("*", 36 * 100)])
def test_every_character_is_equally_likely(text: str, count: int) -> None:
    alphabet = PLACEHOLDERS[text]

    codes = patterns.generate(patterns.parse(text, 1), count, every_byte_value_in_turn())

    assert Counter(codes) == dict.fromkeys(alphabet, count // len(alphabet))


@pytest.mark.parametrize(
    ("text", "dropped", "kept"),
    [("#", range(250, 256), 7), ("?", range(234, 256), 2), ("*", range(252, 256), 35)],
)
def test_bytes_that_would_favour_some_characters_are_dropped(
    text: str, dropped: range, kept: int
) -> None:
    random_bytes = byte_source(itertools.chain(dropped, [kept]))

    (code,) = patterns.generate(patterns.parse(text, 1), 1, random_bytes)

    assert code == PLACEHOLDERS[text][kept]


def test_each_placeholder_is_drawn_on_its_own() -> None:
    codes = patterns.generate(patterns.parse("#-#", 1), 10, every_byte_value_in_turn())

    assert len({code[0] for code in codes}) == 10
    assert {code[1] for code in codes} == {"-"}
    assert [code[0] for code in codes] != [code[2] for code in codes]


def test_ten_thousand_codes_of_a_long_pattern_are_distinct() -> None:
    codes = patterns.generate(patterns.parse("********", 10_000), 10_000)

    assert len(set(codes)) == 10_000
