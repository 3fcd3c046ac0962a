"""Domain errors: each names its gRPC-independent kind, reason and details.

The gRPC edge (``promo_server.api.errors``) is the one place that turns these
into a status; business rules raise them and never build a status themselves.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")


class Kind(enum.Enum):
    """The canonical status a domain error is reported with."""

    INVALID_ARGUMENT = "INVALID_ARGUMENT"
    NOT_FOUND = "NOT_FOUND"
    ALREADY_EXISTS = "ALREADY_EXISTS"
    FAILED_PRECONDITION = "FAILED_PRECONDITION"
    RESOURCE_EXHAUSTED = "RESOURCE_EXHAUSTED"
    UNAUTHENTICATED = "UNAUTHENTICATED"
    PERMISSION_DENIED = "PERMISSION_DENIED"
    UNAVAILABLE = "UNAVAILABLE"
    ABORTED = "ABORTED"


@dataclass(frozen=True)
class FieldViolation:
    """One bad field: its path in the request (``promotion.name``) and why."""

    field: str
    description: str


class DomainError(Exception):
    """A refusal the caller can act on."""

    kind: Kind = Kind.FAILED_PRECONDITION

    def __init__(self, message: str, *, reason: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.reason = reason


class InvalidArgument(DomainError):
    kind = Kind.INVALID_ARGUMENT

    def __init__(self, violations: list[FieldViolation]) -> None:
        assert violations, "an InvalidArgument names at least one field"
        super().__init__("; ".join(f"{v.field}: {v.description}" for v in violations))
        self.violations = violations

    @classmethod
    def field(cls, field: str, description: str) -> InvalidArgument:
        return cls([FieldViolation(field, description)])


class NotFound(DomainError):
    kind = Kind.NOT_FOUND


class AlreadyExists(DomainError):
    kind = Kind.ALREADY_EXISTS


class FailedPrecondition(DomainError):
    kind = Kind.FAILED_PRECONDITION


class ResourceExhausted(DomainError):
    kind = Kind.RESOURCE_EXHAUSTED

    def __init__(self, message: str, *, reason: str = "", retry_delay: float | None = None
                 ) -> None:
        super().__init__(message, reason=reason)
        # Seconds until a retry may succeed, when the server knows.
        self.retry_delay = retry_delay


class Unauthenticated(DomainError):
    kind = Kind.UNAUTHENTICATED


class PermissionDenied(DomainError):
    kind = Kind.PERMISSION_DENIED


class Unavailable(DomainError):
    kind = Kind.UNAVAILABLE


class Aborted(DomainError):
    kind = Kind.ABORTED


class Violations:
    """Collects field violations so that every bad field is reported at once."""

    def __init__(self, known: Iterable[FieldViolation] = ()) -> None:
        self.items: list[FieldViolation] = list(known)

    def add(self, field: str, description: str) -> None:
        self.items.append(FieldViolation(field, description))

    def extend(self, items: Iterable[FieldViolation]) -> None:
        self.items.extend(items)

    def check(self, call: Callable[[], T], default: T) -> T:
        """What ``call`` returns; ``default`` if it raised InvalidArgument, whose fields
        join these (``raise_if_any`` then raises before anyone uses the default)."""
        try:
            return call()
        except InvalidArgument as error:
            self.items.extend(error.violations)
            return default

    def __bool__(self) -> bool:
        return bool(self.items)

    def raise_if_any(self) -> None:
        if self.items:
            raise InvalidArgument(list(self.items))
