"""Code patterns: ``#`` a digit, ``?`` a letter, ``*`` a letter or digit, anything else literal.

Codes are drawn from the operating system's cryptographic random source, so
that no code can be guessed from others. Letters are capitals only: codes
match case-insensitively, so lower-case letters would add no new codes.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from itertools import repeat

from promo_server.domain.errors import Violations
from promo_server.domain.values import CODE

DIGITS = "0123456789"
LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
PLACEHOLDERS = {"#": DIGITS, "?": LETTERS, "*": DIGITS + LETTERS}
# The ErrorInfo reason of a GenerateCodes that finds almost no new code of its pattern.
PATTERN_EXHAUSTED = "PATTERN_EXHAUSTED"
MAX_COUNT = 10_000_000
# A request may use at most this share of the pattern's codes: beyond it,
# random draws mostly collide and generation slows to a crawl.
MAX_SPACE_SHARE = 2


@dataclass(frozen=True)
class Pattern:
    text: str

    @property
    def space(self) -> int:
        """How many different codes the pattern can make."""
        total = 1
        for char in self.text:
            total *= len(PLACEHOLDERS.get(char, "x"))
        return total


def parse(text: str, count: int) -> Pattern:
    """The pattern, if it is well formed and can give ``count`` codes comfortably."""
    out = Violations()
    literal = "".join(char for char in text if char not in PLACEHOLDERS)
    if not 1 <= len(text) <= 64:
        out.add("pattern", "must be 1..64 characters (a code's length)")
    elif literal and not CODE.fullmatch(literal):
        out.add("pattern", "literal characters must be A-Z, a-z, 0-9, '_', '.' or '-'")
    elif len(literal) == len(text):
        out.add("pattern", "needs at least one placeholder: # (digit), ? (letter), * (either)")
    if not 1 <= count <= MAX_COUNT:
        out.add("count", f"must be 1..{MAX_COUNT:,}")
    out.raise_if_any()
    pattern = Pattern(text)
    if count > pattern.space // MAX_SPACE_SHARE:
        out.add(
            "count",
            f"the pattern {text!r} makes only {pattern.space:,} different codes; "
            f"ask for at most {pattern.space // MAX_SPACE_SHARE:,} or use a longer pattern",
        )
    out.raise_if_any()
    return pattern


def generate(
    pattern: Pattern, count: int, random_bytes: Callable[[int], bytes] = os.urandom
) -> list[str]:
    """``count`` random codes of the pattern; they may repeat each other or existing codes."""
    columns = [
        _random_text(PLACEHOLDERS[char], count, random_bytes)
        if char in PLACEHOLDERS
        else repeat(char, count)
        for char in pattern.text
    ]
    return list(map("".join, zip(*columns, strict=True)))


def _random_text(alphabet: str, length: int, random_bytes: Callable[[int], bytes]) -> str:
    """``length`` characters drawn uniformly from ``alphabet``.

    Each random byte below the largest multiple of the alphabet's size maps to
    one character; the bytes above it are dropped so that no character is
    likelier than another.
    """
    size = len(alphabet)
    usable = 256 - 256 % size
    table = bytes(ord(alphabet[value % size]) if value < usable else 0 for value in range(256))
    dropped = bytes(range(usable, 256))
    drawn = b""
    while len(drawn) < length:
        # Ask a little more than needed so that one draw usually suffices.
        wanted = length - len(drawn)
        drawn += random_bytes(wanted + wanted // 8 + 16).translate(table, dropped)
    return drawn[:length].decode("ascii")
